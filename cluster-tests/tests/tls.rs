//! TLS (`[tls]`, `use_https_pageserver_api`), with certificates made at run time:
//!
//! 1. A three-replica cluster forms over HTTPS with client certificates required, elects a
//!    leader, and serves a tenant create through a follower (forwarded over TLS) to simulators
//!    that re-attached over HTTPS; plain HTTP, and HTTPS without a client certificate, get no
//!    answer; the operator CLI (`cluster status`, `backup`) works with `--ca-file` and a client
//!    certificate and exits 3 without the CA.
//! 2. A certificate replaced on disk is served to the next connection, without a restart; a
//!    broken replacement keeps the last good one and is logged.
//! 3. A replica whose certificate is signed by another CA is refused by its peers: its Raft
//!    RPCs fail, it never gets a vote or an entry, and the peers' logs say why.
//! 4. A member serving plain HTTP in an HTTPS cluster: the cluster does not form, and the
//!    forming replica's log names the peer and the failed handshake.
//! 5. With `use_https_pageserver_api` the controller calls simulators over HTTPS, verified
//!    against `pageserver_ca_file`: a simulator with a certificate from another CA never
//!    becomes Active, and a node registering without `listen_https_port` is refused (400).
//!
//! The tests start clusters of their own; they take turns (`SERIAL`), as the machine is small.

use std::path::Path;
use std::time::Duration;

use cluster_tests::certs::{CertFiles, TestCa, replace_file, trusting};
use cluster_tests::cli_run::run_storcon;
use cluster_tests::config::TlsOptions;
use cluster_tests::sims::SimTls;
use cluster_tests::storage_api::{tenant_create_body, tenant_id};
use cluster_tests::{
    Client, Cluster, ClusterOptions, ControllerOptions, NodeRegisterRequest, ReadMode, Sims,
    StorageApi, deadline, wait_until,
};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TAG: u32 = 0x715;
const SETTLE: Duration = Duration::from_secs(60);

/// A client trusting `ca` (only), presenting `identity` if given; no pooled connections, so
/// every request makes a new TLS connection.
fn tls_client(ca: &Path, identity: Option<&CertFiles>) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .tls_info(true);
    trusting(builder, ca, identity)
        .expect("TLS client settings")
        .build()
        .expect("a reqwest client")
}

/// The DER certificate `url` presents on a new connection of a new client: a client that
/// resumed an earlier TLS session would report that session's certificate.
async fn served_certificate(
    ca: &Path,
    identity: Option<&CertFiles>,
    url: &str,
) -> anyhow::Result<Vec<u8>> {
    let resp = tls_client(ca, identity)
        .get(format!("{url}/status"))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .ok_or_else(|| anyhow::anyhow!("no TLS info: not an HTTPS connection"))?;
    info.peer_certificate()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| anyhow::anyhow!("no peer certificate"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_forms_and_forwards_with_client_certs() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ca").expect("CA");
    let tls = TlsOptions::issued_by(&ca, dir.path(), 3, true).expect("certificates");
    let opts = ClusterOptions {
        tls: Some(tls.clone()),
        ..ClusterOptions::default()
    };
    let (cluster, leader) =
        Cluster::start_formed_with_controller(opts, Some(ControllerOptions::test_defaults()))
            .await
            .expect("a cluster formed over HTTPS");
    let follower = cluster.live_other_than(leader);
    assert!(cluster.url(follower).starts_with("https://"));

    // Every replica knows all three members and the leader, whose URL is https.
    for id in cluster.ids() {
        let status = cluster
            .status_of(id)
            .await
            .expect("cluster status over HTTPS");
        assert_eq!(status.leader_id, Some(leader), "replica {id}: {status:?}");
        assert_eq!(status.members.len(), 3, "replica {id}: {status:?}");
    }
    let client = cluster.client(follower);
    let info = wait_until(
        "the follower to name the leader",
        deadline::CONVERGE,
        async || {
            client
                .leader(ReadMode::Forwarded)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no leader yet"))
        },
    )
    .await
    .expect("leader info");
    assert_eq!(info.address, format!("https://{}/", cluster.addr(leader)));

    // Simulators re-attach through the follower over HTTPS with their own client certificate
    // (the follower forwards to the leader over TLS), and become Active.
    let sim_tls = SimTls {
        identity: ca.issue(dir.path(), "sims", 3000).expect("sim certificate"),
        ca_file: ca.ca_file.clone(),
    };
    let sims = Sims::start_with_https(
        &cluster.url(follower),
        &[(1, "az-a"), (2, "az-b")],
        Some(&sim_tls),
    )
    .await
    .expect("simulators re-attached over HTTPS");
    let via_follower = StorageApi::new(cluster.client(follower));
    sims.wait_active(&via_follower, &sims.ids(), SETTLE)
        .await
        .expect("simulators Active");

    // A tenant create through the follower: forwarded to the leader over TLS.
    let tenant = tenant_id(TAG, 1);
    let created = via_follower
        .create_tenant_with_retry(&tenant_create_body(&tenant, 2, 1), deadline::WRITE)
        .await
        .expect("tenant create through the follower");
    assert_eq!(created.shards.len(), 2, "{created:?}");
    let described = StorageApi::new(cluster.client(leader))
        .describe_tenant(&tenant)
        .await
        .expect("the leader describes the new tenant");
    assert_eq!(described.shards.len(), 2, "{described:?}");
    let view = wait_until("the simulators to hold both shards", SETTLE, async || {
        let view = sims.view().await?;
        anyhow::ensure!(view.len() == 2, "{view:?}");
        Ok(view)
    })
    .await
    .expect("shards attached on the simulators");
    assert!(
        view.keys().all(|shard| shard.starts_with(&tenant)),
        "{view:?}"
    );

    // Plain HTTP to the listener gets no HTTP answer at all.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let answer = plain
        .get(format!("http://{}/status", cluster.addr(follower)))
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP must not be served: {answer:?}");
    // HTTPS without a client certificate is refused too.
    let anonymous = tls_client(&ca.ca_file, None);
    let answer = anonymous
        .get(format!("{}/status", cluster.url(follower)))
        .send()
        .await;
    assert!(
        answer.is_err(),
        "a client without a certificate must be refused: {answer:?}"
    );
    // With our client certificate it is served.
    served_certificate(
        &ca.ca_file,
        tls.client_identity.as_ref(),
        &cluster.url(follower),
    )
    .await
    .expect("served with a client certificate");
    // The operator CLI, through the follower: the CA and a client certificate from its
    // options, the same for `backup`; without the CA it refuses the server's certificate.
    let operator = ca
        .issue(dir.path(), "operator", 4000)
        .expect("operator certificate");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let tls_args = vec![
        "--api".to_owned(),
        cluster.url(follower),
        "--ca-file".to_owned(),
        path(&ca.ca_file),
        "--cert-file".to_owned(),
        path(&operator.cert),
        "--key-file".to_owned(),
        path(&operator.key),
    ];
    let with = |more: &[&str]| {
        let mut args = tls_args.clone();
        args.extend(more.iter().map(|a| a.to_string()));
        args
    };
    let status = run_storcon(with(&["--json", "cluster", "status"]), &[])
        .await
        .ok()
        .json();
    assert_eq!(status["leader_id"], leader, "{status}");
    let backup = dir.path().join("over-https.backup");
    let run = run_storcon(with(&["backup", "--out", &path(&backup)]), &[])
        .await
        .ok();
    assert!(run.stdout.contains("1 tenants, 2 shards"), "{run}");
    let run = run_storcon(
        vec![
            "--api".to_owned(),
            cluster.url(follower),
            "cluster".to_owned(),
            "status".to_owned(),
        ],
        &[],
    )
    .await
    .fails(3, &["UnknownIssuer"]);
    drop(run);

    let follower_log = cluster.log_since_last_start(follower);
    assert!(
        follower_log.contains("TLS handshake refused"),
        "the refused handshakes are logged"
    );
    sims.check_no_crashes().expect("no simulator crashed");
    cluster.check_no_crashes().expect("no replica crashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_replaced_on_disk_is_served_without_restart() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ca").expect("CA");
    let tls = TlsOptions::issued_by(&ca, dir.path(), 1, true).expect("certificates");
    let first = tls.identities[&1].clone();
    let opts = ClusterOptions {
        replicas: 1,
        tls: Some(tls.clone()),
        ..ClusterOptions::default()
    };
    let (cluster, leader) = Cluster::start_formed(opts)
        .await
        .expect("a one-replica cluster over HTTPS");
    let pid = cluster.pid(leader).expect("running");
    let url = cluster.url(leader);
    let client_cert = tls.client_identity.as_ref();
    assert_eq!(
        served_certificate(&ca.ca_file, client_cert, &url)
            .await
            .expect("served"),
        first.der,
        "the configured certificate (serial 1) is served"
    );

    // A new certificate and key (serial 77) replace the files.
    let second = ca
        .issue(dir.path(), "replica-1", 77)
        .expect("new certificate");
    assert_eq!(second.cert, first.cert, "same file names");
    assert_ne!(second.der, first.der);
    wait_until(
        "a new connection to see serial 77",
        deadline::CONVERGE,
        async || {
            let served = served_certificate(&ca.ca_file, client_cert, &url).await?;
            anyhow::ensure!(served == second.der, "still the old certificate");
            Ok(())
        },
    )
    .await
    .expect("the replaced certificate is served");
    assert_eq!(cluster.pid(leader), Some(pid), "no restart");

    // A broken replacement keeps the last good certificate, and says so.
    replace_file(&second.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    let log = wait_until(
        "the bad certificate to be logged",
        deadline::CONVERGE,
        async || {
            // Each new handshake looks at the files.
            let served = served_certificate(&ca.ca_file, client_cert, &url).await?;
            anyhow::ensure!(
                served == second.der,
                "a certificate other than serial 77 was served"
            );
            let log = cluster.log_since_last_start(leader);
            anyhow::ensure!(log.contains("do not load"), "not logged yet");
            Ok(log)
        },
    )
    .await
    .expect("the last good certificate stays in use");
    assert!(
        log.contains("TLS certificate reloaded"),
        "the good reload was logged"
    );
    assert_eq!(
        served_certificate(&ca.ca_file, client_cert, &url)
            .await
            .expect("served"),
        second.der
    );
    assert_eq!(cluster.pid(leader), Some(pid), "no restart");
    cluster.check_no_crashes().expect("no crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peer_with_a_certificate_from_another_ca_is_refused() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ca").expect("CA");
    let other_ca = TestCa::new(dir.path(), "other-ca").expect("another CA");
    let tls = TlsOptions::issued_by(&ca, dir.path(), 3, true).expect("certificates");
    let opts = ClusterOptions {
        tls: Some(tls.clone()),
        ..ClusterOptions::default()
    };
    let (cluster, _) = Cluster::start_formed(opts).await.expect("a formed cluster");

    // Replica 3 comes back with a certificate (server and client) signed by another CA.
    cluster.kill(3);
    let (leader, term) = wait_until("a leader among 1 and 2", deadline::ELECTION, async || {
        let status = cluster.status_of(1).await?;
        match status.leader_id {
            Some(l) if l != 3 => Ok((l, status.term)),
            other => anyhow::bail!("leader {other:?}"),
        }
    })
    .await
    .expect("replicas 1 and 2 keep a leader");
    other_ca
        .issue(dir.path(), "replica-3", 33)
        .expect("the foreign certificate");
    cluster.restart(3).expect("restart replica 3");

    // The test's client trusts the original CA only; replica 3 is asked with one that trusts
    // the other CA (and presents the test's client certificate, which replica 3 accepts).
    let outcast = Client::new(
        tls_client(&other_ca.ca_file, tls.client_identity.as_ref()),
        cluster.url(3),
    );
    // Replica 3 campaigns (its term rises past the leader's), but no vote request reaches a
    // peer: the leader keeps its term.
    let outcast_status = wait_until("replica 3 to campaign", deadline::CONVERGE, async || {
        let status = outcast.cluster().await?;
        anyhow::ensure!(status.term > term, "replica 3 at term {}", status.term);
        Ok(status)
    })
    .await
    .expect("replica 3 runs and campaigns");
    assert_ne!(outcast_status.leader_id, Some(3), "{outcast_status:?}");

    // A write commits without replica 3 and never reaches it.
    cluster
        .register_with_retry(
            leader,
            &NodeRegisterRequest::fake(1),
            deadline::WRITE,
            Duration::from_millis(100),
        )
        .await
        .expect("a write commits on replicas 1 and 2");
    let leader_status = cluster.status_of(leader).await.expect("leader status");
    assert_eq!(leader_status.term, term, "no vote of replica 3 was heard");
    assert_eq!(leader_status.leader_id, Some(leader));
    let outcast_status = outcast.cluster().await.expect("replica 3 status");
    assert!(
        outcast_status.last_applied < leader_status.last_applied,
        "replica 3 got no entries: {outcast_status:?} vs {leader_status:?}"
    );
    let nodes = outcast
        .list_nodes(ReadMode::Local)
        .await
        .expect("replica 3's own view");
    assert!(nodes.is_empty(), "replica 3 applied the write: {nodes:?}");

    // The peers' logs say why: replica 3's certificate has an unknown issuer.
    let log = wait_until("the refusal to be logged", deadline::CONVERGE, async || {
        let log = cluster.log_since_last_start(leader);
        anyhow::ensure!(
            log.lines()
                .any(|l| l.contains("TLS handshake refused") && l.contains("UnknownIssuer")),
            "not yet"
        );
        Ok(log)
    })
    .await
    .expect("the leader logs the refused certificate");
    assert!(log.contains("invalid peer certificate"));
    cluster.check_no_crashes().expect("no crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peer_serving_plain_http_is_named_and_not_joined() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ca").expect("CA");
    let mut tls = TlsOptions::issued_by(&ca, dir.path(), 3, false).expect("certificates");
    // Replica 3 is configured without [tls]: it serves plain HTTP.
    tls.identities.remove(&3);
    let opts = ClusterOptions {
        tls: Some(tls),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(opts).expect("replicas started");
    let line = wait_until(
        "replica 1 to name the plain-HTTP peer",
        deadline::CONVERGE,
        async || {
            let log = cluster.log_since_last_start(1);
            log.lines()
                .find(|l| l.contains("TLS handshake with peer failed") && l.contains("peer=3"))
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("not yet"))
        },
    )
    .await
    .expect("the failed handshake with replica 3 is logged");
    // rustls's reason for a plain-HTTP answer to its ClientHello.
    assert!(line.contains("InvalidContentType"), "{line}");
    // Without replica 3 the cluster cannot form (every member must answer first).
    let status = cluster
        .status_of(1)
        .await
        .expect("replica 1 answers over HTTPS");
    assert_eq!(status.leader_id, None, "{status:?}");
    assert!(
        !cluster
            .log_since_last_start(1)
            .contains("formed a new cluster"),
        "formed without replica 3"
    );
    cluster.check_no_crashes().expect("no crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_pageservers_are_called_over_https_when_required() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ca").expect("CA");
    let other_ca = TestCa::new(dir.path(), "other-ca").expect("another CA");
    let controller = ControllerOptions {
        use_https_pageserver_api: Some(true),
        pageserver_ca_file: Some(ca.ca_file.clone()),
        ..ControllerOptions::test_defaults()
    };
    let opts = ClusterOptions {
        replicas: 1,
        ..ClusterOptions::default()
    };
    let (cluster, leader) = Cluster::start_formed_with_controller(opts, Some(controller))
        .await
        .expect("a cluster");
    let api = StorageApi::new(cluster.client(leader));

    // Simulators serving HTTPS with certificates from the configured CA become Active and get
    // the tenant's locations: heartbeats, activation and attaches went over HTTPS.
    let good = Sims::start_with_https(
        &cluster.url(leader),
        &[(1, "az-a"), (2, "az-b")],
        Some(&SimTls {
            identity: ca
                .issue(dir.path(), "good-sims", 4000)
                .expect("certificate"),
            ca_file: ca.ca_file.clone(),
        }),
    )
    .await
    .expect("simulators");
    good.wait_active(&api, &good.ids(), SETTLE)
        .await
        .expect("simulators Active over HTTPS");
    let tenant = tenant_id(TAG, 4);
    api.create_tenant_with_retry(&tenant_create_body(&tenant, 1, 1), deadline::WRITE)
        .await
        .expect("create");
    wait_until("the attachment on a simulator", SETTLE, async || {
        let view = good.view().await?;
        anyhow::ensure!(
            view.values()
                .any(|by_node| by_node.values().any(|l| l.mode.starts_with("Attached"))),
            "{view:?}"
        );
        Ok(())
    })
    .await
    .expect("attached over HTTPS");

    // A registration without listen_https_port is refused with 400 and says why; nothing is
    // registered.
    let refused = cluster
        .client(leader)
        .register_node(&NodeRegisterRequest::fake(9))
        .await
        .expect_err("a node without an HTTPS port is refused");
    assert_eq!(refused.status(), Some(400), "{refused}");
    let msg = refused.msg().expect("a msg body");
    assert!(msg.contains("listen_https_port"), "{msg}");
    let nodes = api.nodes().await.expect("nodes");
    assert!(nodes.iter().all(|n| n.id != 9), "{nodes:?}");

    // A simulator whose certificate is signed by another CA registers (its upcalls are plain
    // HTTP here) but is never Active: the controller does not fall back to HTTP, and its log
    // names the certificate problem.
    let foreign = Sims::start_with_https(
        &cluster.url(leader),
        &[(3, "az-c")],
        Some(&SimTls {
            identity: other_ca
                .issue(dir.path(), "foreign-sim", 5000)
                .expect("cert"),
            ca_file: ca.ca_file.clone(),
        }),
    )
    .await
    .expect("the foreign simulator re-attaches");
    wait_until("the failed heartbeats to be logged", SETTLE, async || {
        let log = cluster.log_since_last_start(leader);
        anyhow::ensure!(
            log.lines().any(|l| l.contains("heartbeat failed")
                && l.contains("node=3")
                && l.contains("UnknownIssuer")),
            "not yet"
        );
        Ok(())
    })
    .await
    .expect("the heartbeat failure names the certificate");
    let node3 = cluster
        .client(leader)
        .get_node(3, ReadMode::Forwarded)
        .await
        .expect("node 3 is registered");
    assert_ne!(node3.availability, "Active", "{node3:?}");
    foreign.check_no_crashes().expect("no crash");
    good.check_no_crashes().expect("no crash");
    cluster.check_no_crashes().expect("no crash");
}
