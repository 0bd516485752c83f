//! `[tls]` and the controller's CA files in the config: `storcon check-config` loads every file
//! and refuses, naming the problem, a missing or bad file, a key that does not match its
//! certificate, members mixing HTTP and HTTPS, and schemes that disagree with `[tls]`.

use std::path::Path;
use std::process::Command;

use cluster_tests::certs::{CertFiles, TestCa};

const BIN: &str = env!("CARGO_BIN_EXE_storcon");

const BASE: &str = r#"
node_id = 1
listen_addr = "127.0.0.1:1"
data_dir = "DATA"
insecure_no_auth = true

[cluster]
members = [{ id = 1, addr = "MEMBER1" }, { id = 2, addr = "MEMBER2" }]
"#;

struct Files {
    _dir: tempfile::TempDir,
    ca: TestCa,
    leaf: CertFiles,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new(dir.path(), "ca").expect("CA");
        let leaf = ca.issue(dir.path(), "replica-1", 1).expect("certificate");
        Files {
            _dir: dir,
            ca,
            leaf,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// A `[tls]` section with the given extra lines (paths of this fixture).
    fn tls(&self, extra: &str) -> String {
        format!(
            "\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}\n",
            self.leaf.cert, self.leaf.key
        )
    }

    fn ca_line(&self, key: &str) -> String {
        format!("{key} = {:?}", self.ca.ca_file)
    }
}

fn config(members: (&str, &str), rest: &str) -> String {
    BASE.replace("MEMBER1", members.0)
        .replace("MEMBER2", members.1)
        + rest
}

const PLAIN: (&str, &str) = ("127.0.0.1:1", "127.0.0.1:2");

/// (success, stdout, stderr) of `storcon check-config` on `config`.
fn check(dir: &Path, config: &str) -> (bool, String, String) {
    let path = dir.join("check.toml");
    std::fs::write(
        &path,
        config.replace("DATA", &dir.join("data").display().to_string()),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run storcon");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(dir: &Path, config: &str) -> String {
    let (ok, stdout, stderr) = check(dir, config);
    assert!(!ok, "accepted: {stdout}");
    stderr
}

#[test]
fn tls_section_with_real_files_is_accepted() {
    let f = Files::new();
    let both = format!("{}\n{}", f.ca_line("ca_file"), f.ca_line("client_ca_file"));
    let (ok, stdout, stderr) = check(f.dir(), &config(PLAIN, &f.tls(&both)));
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("HTTPS, client certificates required"),
        "{stdout}"
    );
    // Members may say https:// when [tls] is set.
    let https = ("https://127.0.0.1:1", "https://127.0.0.1:2");
    let (ok, stdout, stderr) = check(f.dir(), &config(https, &f.tls(&f.ca_line("ca_file"))));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("(HTTPS)"), "{stdout}");
    // And without [tls] it is plain HTTP.
    let (ok, stdout, stderr) = check(f.dir(), &config(PLAIN, ""));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("(plain HTTP)"), "{stdout}");
}

#[test]
fn members_mixing_http_and_https_are_refused() {
    let f = Files::new();
    let tls = f.tls(&f.ca_line("ca_file"));
    let err = refused(
        f.dir(),
        &config(("https://127.0.0.1:1", "http://127.0.0.1:2"), &tls),
    );
    assert!(err.contains("mixes HTTP and HTTPS"), "{err}");
    let err = refused(
        f.dir(),
        &config(("https://127.0.0.1:1", "http://127.0.0.1:2"), ""),
    );
    assert!(err.contains("mixes HTTP and HTTPS"), "{err}");
    // http:// members with [tls], https:// members without it.
    let err = refused(
        f.dir(),
        &config(("http://127.0.0.1:1", "http://127.0.0.1:2"), &tls),
    );
    assert!(
        err.contains("member 1 is http:// but [tls] is set"),
        "{err}"
    );
    let err = refused(
        f.dir(),
        &config(("https://127.0.0.1:1", "https://127.0.0.1:2"), ""),
    );
    assert!(err.contains("no [tls] section"), "{err}");
    let err = refused(f.dir(), &config(("ftp://127.0.0.1:1", "127.0.0.1:2"), ""));
    assert!(err.contains("scheme \"ftp\""), "{err}");
}

#[test]
fn missing_or_bad_tls_files_are_refused_naming_them() {
    let f = Files::new();
    let missing = f.dir().join("nope.crt");
    let with_cert = |cert: &Path| {
        format!(
            "\n[tls]\ncert_file = {cert:?}\nkey_file = {:?}\n{}\n",
            f.leaf.key,
            f.ca_line("ca_file")
        )
    };
    let err = refused(f.dir(), &config(PLAIN, &with_cert(&missing)));
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("cannot read certificate"), "{err}");

    let garbage = f.dir().join("garbage.crt");
    std::fs::write(&garbage, "hello").expect("write");
    let err = refused(f.dir(), &config(PLAIN, &with_cert(&garbage)));
    assert!(err.contains("garbage.crt"), "{err}");
    assert!(err.contains("no PEM CERTIFICATE"), "{err}");

    // Another certificate's key.
    let other =
        f.ca.issue(f.dir(), "other", 2)
            .expect("another certificate");
    let err = refused(f.dir(), &config(PLAIN, &with_cert(&other.cert)));
    assert!(err.contains("does not match the private key"), "{err}");

    // A missing CA file is named with its key.
    let missing_ca = format!("ca_file = {:?}", f.dir().join("no-ca.pem"));
    let err = refused(f.dir(), &config(PLAIN, &f.tls(&missing_ca)));
    assert!(err.contains("[tls] ca_file"), "{err}");
    assert!(err.contains("no-ca.pem"), "{err}");

    // With two members the peers' CA is required.
    let err = refused(f.dir(), &config(PLAIN, &f.tls("")));
    assert!(err.contains("[tls] needs ca_file"), "{err}");
}

#[test]
fn pageserver_and_compute_hook_ca_files_are_checked() {
    let f = Files::new();
    let controller = |lines: &str| format!("\n[controller]\n{lines}\n");
    let ok_lines = format!(
        "use_https_pageserver_api = true\n{}\ncompute_hook_url = \"https://127.0.0.1:9/\"\n{}",
        f.ca_line("pageserver_ca_file"),
        f.ca_line("compute_hook_ca_file")
    );
    let (ok, _, stderr) = check(f.dir(), &config(PLAIN, &controller(&ok_lines)));
    assert!(ok, "{stderr}");

    let missing = f.dir().join("missing-ca.pem");
    let err = refused(
        f.dir(),
        &config(
            PLAIN,
            &controller(&format!(
                "use_https_pageserver_api = true\npageserver_ca_file = {missing:?}"
            )),
        ),
    );
    assert!(err.contains("[controller] pageserver_ca_file"), "{err}");
    assert!(err.contains("missing-ca.pem"), "{err}");

    let err = refused(
        f.dir(),
        &config(PLAIN, &controller(&f.ca_line("pageserver_ca_file"))),
    );
    assert!(err.contains("use_https_pageserver_api is not"), "{err}");

    let err = refused(
        f.dir(),
        &config(
            PLAIN,
            &controller(&format!(
                "compute_hook_url = \"http://127.0.0.1:9/\"\n{}",
                f.ca_line("compute_hook_ca_file")
            )),
        ),
    );
    assert!(err.contains("compute_hook_url is not https"), "{err}");
}
