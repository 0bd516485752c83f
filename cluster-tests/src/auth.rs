//! Test-only JWTs, signed with the TEST-ONLY keys in `cluster-tests/fixtures/auth/` (key "a" is
//! the one the clusters trust, "b" is not trusted).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::AuthOptions;

/// The file `name` in `cluster-tests/fixtures/auth/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/auth")
        .join(name)
}

/// Seconds since the Unix epoch, for `exp` and `nbf` claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A token with `claims`, signed with the test-only key `key` ("a" is trusted, "b" is not).
pub fn sign_with(key: &str, claims: Value) -> String {
    let pem = std::fs::read(fixture(&format!("test-only-ed25519-{key}.private.pem")))
        .expect("test private key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("ed25519 pem");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &key,
    )
    .expect("sign")
}

/// A token with `claims`, signed with the trusted test-only key.
pub fn sign(claims: Value) -> String {
    sign_with("a", claims)
}

/// A token with `scope`, signed with the trusted test-only key.
pub fn token(scope: &str) -> String {
    sign(json!({ "scope": scope }))
}

/// `[auth]` trusting the test-only key "a": a `controller_peer` token written to `peer.jwt` in
/// `dir`, an `admin` client token, no pageserver token.
pub fn test_auth(dir: &Path) -> AuthOptions {
    let peer_token_file = dir.join("peer.jwt");
    std::fs::write(&peer_token_file, format!("{}\n", token("controller_peer")))
        .expect("write the peer token");
    AuthOptions {
        public_key_file: fixture("test-only-ed25519-a.public.pem"),
        peer_token_file: Some(peer_token_file),
        pageserver_token_file: None,
        client_token: token("admin"),
    }
}
