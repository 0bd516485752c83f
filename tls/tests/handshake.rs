//! The library against itself on 127.0.0.1: a served certificate verified by the client's CA,
//! client certificates required, a wrong CA and a plain-HTTP server told apart as TLS errors,
//! and a certificate reloaded from disk.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType, SerialNumber,
};
use storcon_tls::rustls::RootCertStore;
use storcon_tls::{ReloadingIdentity, client, pem, server};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    file: std::path::PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let file = dir.join(format!("{name}.pem"));
    std::fs::write(&file, issuer.pem()).unwrap();
    Ca { issuer, file }
}

/// Writes `name.crt` / `name.key` (by rename) and returns the certificate's DER.
fn leaf(ca: &Ca, dir: &Path, name: &str, serial: u64) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    for (ext, text) in [("key", key.serialize_pem()), ("crt", cert.pem())] {
        let tmp = dir.join(format!("{name}.{ext}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, dir.join(format!("{name}.{ext}"))).unwrap();
    }
    cert.der().to_vec()
}

fn identity(dir: &Path, name: &str) -> Arc<ReloadingIdentity> {
    ReloadingIdentity::load(
        &dir.join(format!("{name}.crt")),
        &dir.join(format!("{name}.key")),
    )
    .unwrap()
}

/// Serves `GET /` answering "ok" over TLS (or plain HTTP without a config); returns the URL
/// base without scheme.
async fn serve(config: Option<Arc<storcon_tls::rustls::ServerConfig>>) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    match config {
        Some(config) => {
            let listener = server::TlsListener::new(tcp, config).unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
        None => {
            tokio::spawn(async move { axum::serve(tcp, router).await });
        }
    }
    addr.to_string()
}

fn reqwest_client(
    roots: Arc<RootCertStore>,
    id: Option<Arc<ReloadingIdentity>>,
) -> reqwest::Client {
    client::with_tls(
        reqwest::Client::builder().no_proxy().tls_info(true),
        client::client_config(roots, id).unwrap(),
    )
    .build()
    .unwrap()
}

async fn get(c: &reqwest::Client, url: &str) -> Result<Vec<u8>, reqwest::Error> {
    let resp = c.get(url).send().await?.error_for_status()?;
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    assert_eq!(resp.text().await?, "ok");
    Ok(der)
}

#[tokio::test]
async fn handshakes_verify_both_sides_and_errors_are_tls_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = ca(d, "good");
    let other = ca(d, "other");
    let server_der = leaf(&good, d, "server", 1);
    leaf(&good, d, "client", 2);
    leaf(&other, d, "stranger", 3);
    let roots = pem::roots("ca", &good.file).unwrap();
    let other_roots = pem::roots("ca", &other.file).unwrap();

    let addr = serve(Some(
        server::server_config(identity(d, "server"), Some(roots.clone())).unwrap(),
    ))
    .await;
    let url = format!("https://{addr}/");

    // The right CA and a client certificate: served, with the server's certificate.
    let der = get(
        &reqwest_client(roots.clone(), Some(identity(d, "client"))),
        &url,
    )
    .await
    .unwrap();
    assert_eq!(der, server_der);

    // No client certificate, or one from another CA: refused, and it is a TLS error.
    for who in [None, Some(identity(d, "stranger"))] {
        let e = get(&reqwest_client(roots.clone(), who), &url)
            .await
            .expect_err("refused");
        assert!(client::is_tls_error(&e), "{}", client::error_chain(&e));
    }
    // The client does not trust the server's CA.
    let e = get(
        &reqwest_client(other_roots, Some(identity(d, "client"))),
        &url,
    )
    .await
    .expect_err("untrusted server");
    assert!(client::is_tls_error(&e), "{e:?}");
    assert!(
        client::error_chain(&e).contains("invalid peer certificate"),
        "{}",
        client::error_chain(&e)
    );

    // A plain-HTTP server answered by an HTTPS client: a TLS error, not "unreachable".
    let plain = serve(None).await;
    let e = get(
        &reqwest_client(roots.clone(), None),
        &format!("https://{plain}/"),
    )
    .await
    .expect_err("plain HTTP is not TLS");
    assert!(client::is_tls_error(&e), "{}", client::error_chain(&e));
    // Nothing listening is not a TLS error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let e = get(
        &reqwest_client(roots, None),
        &format!("https://{closed_addr}/"),
    )
    .await
    .expect_err("nothing listens");
    assert!(!client::is_tls_error(&e), "{}", client::error_chain(&e));
}

#[test]
fn identity_follows_its_files_and_keeps_the_last_good_pair() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = ca(d, "good");
    let first = leaf(&good, d, "server", 1);
    let id = identity(d, "server");
    assert_eq!(id.leaf().unwrap().as_ref(), first.as_slice());

    let second = leaf(&good, d, "server", 2);
    assert_eq!(id.leaf().unwrap().as_ref(), second.as_slice(), "reloaded");

    // A certificate that does not match the key: the previous pair stays.
    let other_key = KeyPair::generate().unwrap();
    std::fs::write(d.join("server.key"), other_key.serialize_pem()).unwrap();
    assert_eq!(id.leaf().unwrap().as_ref(), second.as_slice(), "kept");
    // Garbage: still kept.
    std::fs::write(d.join("server.crt"), "not a certificate").unwrap();
    assert_eq!(id.leaf().unwrap().as_ref(), second.as_slice(), "kept");
    // A good pair again.
    let third = leaf(&good, d, "server", 3);
    assert_eq!(
        id.leaf().unwrap().as_ref(),
        third.as_slice(),
        "reloaded again"
    );

    // A missing file at start is an error naming it.
    let e = ReloadingIdentity::load(&d.join("missing.crt"), &d.join("server.key")).unwrap_err();
    assert!(e.to_string().contains("missing.crt"), "{e}");
}
