//! Test certificates, made at run time with rcgen: a CA, and leaf certificates it signs for
//! `127.0.0.1` and `localhost`, usable both as a server and as a client certificate. Each leaf
//! gets the serial number the test asks for, so a test can tell two certificates apart.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER-encoded (what a TLS peer presents).
    pub der: Vec<u8>,
}

/// A CA whose certificate is written to [`TestCa::ca_file`].
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("storcon test CA {name}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().context("generating a CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key).context("signing the CA")?;
        let ca_file = dir.join(format!("{name}.pem"));
        std::fs::write(&ca_file, issuer.pem())
            .with_context(|| format!("writing {}", ca_file.display()))?;
        Ok(TestCa { issuer, ca_file })
    }

    /// A leaf certificate for 127.0.0.1 and localhost with `serial`, written to
    /// `dir/<name>.crt` and `dir/<name>.key` (each replaced by rename, so a process reading
    /// them never sees half a file).
    pub fn issue(&self, dir: &Path, name: &str, serial: u64) -> anyhow::Result<CertFiles> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])
            .context("leaf certificate parameters")?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().context("generating a leaf key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing a leaf certificate")?;
        let files = CertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        replace_file(&files.key, key.serialize_pem().as_bytes())?;
        replace_file(&files.cert, cert.pem().as_bytes())?;
        Ok(files)
    }
}

/// Writes `path` by writing a sibling file and renaming it over `path`.
pub fn replace_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// A reqwest client builder that speaks HTTPS trusting only `ca_file` (not the system's roots)
/// and, with `identity`, presents it as its client certificate.
pub fn trusting(
    builder: reqwest::ClientBuilder,
    ca_file: &Path,
    identity: Option<&CertFiles>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let ca = std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
    let ca = reqwest::Certificate::from_pem(&ca).context("the CA file is not PEM")?;
    let mut builder = builder.tls_certs_only([ca]);
    if let Some(identity) = identity {
        let mut pem = std::fs::read(&identity.cert)
            .with_context(|| format!("reading {}", identity.cert.display()))?;
        pem.extend(
            std::fs::read(&identity.key)
                .with_context(|| format!("reading {}", identity.key.display()))?,
        );
        builder = builder.identity(
            reqwest::Identity::from_pem(&pem).context("the client certificate is not PEM")?,
        );
    }
    Ok(builder)
}
