//! Bearer-JWT authentication, as upstream: `Authorization: Bearer <JWT>` signed with EdDSA
//! (Ed25519), whose `scope` claim must fit the route.
//!
//! One table, [`required_access`], maps a method and path to what a caller must present; one
//! middleware, [`require_token`], applies it to every request before routing, so before a
//! follower forwards anything to the leader (the forwarded request keeps its `Authorization`
//! header, and the leader checks it again).
//!
//! - No verifier configured: nothing is checked (the operator chose `insecure_no_auth`).
//! - Missing or garbled `Authorization` header: 401 `Unauthorized: ...`.
//! - Bad signature, expired, undecodable claims or a scope that does not fit: 403 `Forbidden: ...`.
//! - `admin` passes everywhere. Unknown routes need `admin`, so a 404 tells a caller without a
//!   token nothing about which routes exist.
//!
//! Replicas call each other (Raft RPCs, the formation probe, a follower's `/ready` question to the
//! leader) with their own `controller_peer` token, a [`BearerToken`] read from a file.

use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::{Deserialize, Serialize};

/// The `scope` claim, lowercase on the wire (upstream's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Tenant,
    TenantEndpoint,
    PageServerApi,
    SafekeeperData,
    #[serde(rename = "generations_api")]
    GenerationsApi,
    Admin,
    Infra,
    Scrubber,
    #[serde(rename = "controller_peer")]
    ControllerPeer,
}

impl Scope {
    /// The wire name, as in a token's `scope` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Tenant => "tenant",
            Scope::TenantEndpoint => "tenantendpoint",
            Scope::PageServerApi => "pageserverapi",
            Scope::SafekeeperData => "safekeeperdata",
            Scope::GenerationsApi => "generations_api",
            Scope::Admin => "admin",
            Scope::Infra => "infra",
            Scope::Scrubber => "scrubber",
            Scope::ControllerPeer => "controller_peer",
        }
    }

    /// Whether a token of this scope may call a route that requires `required`.
    pub fn grants(self, required: Scope) -> bool {
        self == required || self == Scope::Admin
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (the probes).
    Public,
    /// Any valid token, whatever its scope (upstream's secondary download).
    AnyToken,
    /// A valid token of this scope, or `admin`.
    Scope(Scope),
    /// A valid token of exactly this scope, not even `admin`: the Raft RPCs, which only peers
    /// send, so a leaked operator token cannot forge a leader.
    Only(Scope),
}

/// The auth table: what `method path` requires, with the sections of the reference it follows.
/// `HEAD` is treated as `GET`, which is how the router serves it.
pub fn required_access(method: &Method, path: &str) -> Access {
    use Access::{AnyToken, Public};
    use Scope::*;
    let scope = Access::Scope;
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match (method, segments.as_slice()) {
        // 2.1 probes, answered without a token.
        (_, ["status" | "live" | "ready" | "metrics"]) => Public,
        (_, ["profile", "cpu" | "heap"]) => Public,

        // 2.2 upcalls from pageservers.
        (_, ["upcall", "v1", ..]) => scope(GenerationsApi),

        // 2.5 the virtual pageserver API.
        ("POST", ["v1", "tenant", _, "secondary", "download"]) => AnyToken,
        (_, ["v1", ..]) => scope(PageServerApi),

        // 2.3 nodes.
        ("POST" | "GET", ["control", "v1", "node"]) => scope(Infra),
        ("GET", ["control", "v1", "node", _]) => scope(Infra),
        ("DELETE", ["control", "v1", "node", _]) => scope(Admin),
        ("PUT", ["control", "v1", "node", _, "config"]) => scope(Admin),
        ("GET", ["control", "v1", "node", _, "shards"]) => scope(Admin),
        ("PUT" | "DELETE", ["control", "v1", "node", _, "drain" | "fill"]) => scope(Infra),
        ("PUT", ["control", "v1", "node", _, "delete"]) => scope(Admin),
        ("DELETE", ["control", "v1", "node", _, "delete"]) => scope(Infra),
        ("GET", ["control", "v1", "leader"]) => scope(Admin),
        ("PUT", ["control", "v1", "step_down"]) => scope(ControllerPeer),

        // 2.4 tenants and shards.
        ("GET", ["control", "v1", "tenant"]) => scope(Admin),
        ("GET", ["control", "v1", "tenant", _]) => scope(Scrubber),
        ("GET", ["control", "v1", "tenant", _, "timeline", _]) => scope(Scrubber),
        (
            "PUT",
            [
                "control",
                "v1",
                "tenant",
                _,
                "policy" | "migrate" | "migrate_secondary" | "cancel_reconcile" | "shard_split",
            ],
        ) => scope(Admin),
        ("PUT", ["control", "v1", "preferred_azs"]) => scope(Admin),
        ("POST", ["control", "v1", "metadata_health", "update"]) => scope(Scrubber),
        ("GET", ["control", "v1", "metadata_health", "unhealthy"]) => scope(Admin),
        ("POST", ["control", "v1", "metadata_health", "outdated"]) => scope(Admin),

        // 2.6 debug: admin, except the tenant hooks a control plane calls.
        ("POST", ["debug", "v1", "tenant", _, "drop" | "import"]) => scope(PageServerApi),
        (_, ["debug", "v1", ..]) => scope(Admin),

        // storcon's own routes. Cluster status: operators read it with `admin`, and a follower
        // asks its leader with its peer token. Raft RPCs and the formation probe: peers only.
        ("GET", ["control", "v1", "cluster"]) => scope(ControllerPeer),
        // The whole state: operators only.
        ("GET", ["control", "v1", "backup"]) => scope(Admin),
        ("POST", ["control", "v1", "members"]) => scope(Admin),
        ("DELETE", ["control", "v1", "members", _]) => scope(Admin),
        (_, ["raft", ..]) => Access::Only(ControllerPeer),

        // Anything else, including unknown routes.
        _ => scope(Admin),
    }
}

/// The claims storcon reads. `tenant_id` is accepted and never checked, as upstream; other
/// claims (`exp` is checked by the verifier when present) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// Why a public key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 public key in PEM form (\"-----BEGIN PUBLIC KEY-----\"): {0}")]
    Pem(jsonwebtoken::errors::Error),
    #[error("the PEM holds a {0}-byte key; an Ed25519 public key has 32 bytes")]
    Length(usize),
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token holds characters not allowed in an HTTP header (whitespace, non-ASCII)")]
    Characters,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf lies in the future)")]
    NotYetValid,
    #[error("{0}")]
    Invalid(jsonwebtoken::errors::Error),
}

/// Verifies EdDSA-signed tokens with one public key.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier(EdDSA)")
    }
}

impl JwtVerifier {
    /// From an Ed25519 public key in PEM (SubjectPublicKeyInfo) form.
    pub fn from_pem(pem: &[u8]) -> Result<JwtVerifier, KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(KeyError::Pem)?;
        match key.kind() {
            DecodingKeyKind::SecretOrDer(raw) if raw.len() != 32 => {
                return Err(KeyError::Length(raw.len()));
            }
            _ => {}
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Upstream tokens carry no `exp`; an `exp` that is present is still checked.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        // A token not valid yet is refused like an expired one.
        validation.validate_nbf = true;
        validation.leeway = 0;
        Ok(JwtVerifier { key, validation })
    }

    /// Checks the signature (and `exp`, when present) and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(e) if matches!(e.kind(), ErrorKind::ImmatureSignature) => {
                Err(TokenError::NotYetValid)
            }
            Err(e) => Err(TokenError::Invalid(e)),
        }
    }
}

/// A token this replica presents (to peers or pageservers), read from a file. Its `Debug` never
/// shows the token, and its header value is marked sensitive.
#[derive(Clone)]
pub struct BearerToken {
    token: Arc<str>,
    header: HeaderValue,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// From a token file's contents; surrounding whitespace (a trailing newline) is dropped.
    pub fn parse(text: &str) -> Result<BearerToken, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(TokenError::Characters);
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| TokenError::Characters)?;
        header.set_sensitive(true);
        Ok(BearerToken {
            token: token.into(),
            header,
        })
    }

    /// The token itself, without the `Bearer ` prefix.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `Bearer <token>`, for an `Authorization` header.
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }
}

/// This replica's auth settings, shared by the HTTP handlers.
#[derive(Clone, Debug, Default)]
pub struct HttpAuth {
    verifier: Option<Arc<JwtVerifier>>,
    peer_token: Option<BearerToken>,
}

impl HttpAuth {
    /// No checks, no token to peers (`insecure_no_auth`).
    pub fn disabled() -> HttpAuth {
        HttpAuth::default()
    }

    /// Verify incoming tokens with `verifier`; present `peer_token` to other replicas.
    pub fn new(verifier: JwtVerifier, peer_token: Option<BearerToken>) -> HttpAuth {
        HttpAuth {
            verifier: Some(Arc::new(verifier)),
            peer_token,
        }
    }

    pub fn verifier(&self) -> Option<&JwtVerifier> {
        self.verifier.as_deref()
    }

    /// The `controller_peer` token for calls to other replicas, if configured.
    pub fn peer_token(&self) -> Option<&BearerToken> {
        self.peer_token.as_ref()
    }
}

/// A refused request: 401 or 403 with a `{"msg": ...}` body, like every other API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Unauthorized(String),
    Forbidden(String),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unauthorized(m) => write!(f, "Unauthorized: {m}"),
            Rejection::Forbidden(m) => write!(f, "Forbidden: {m}"),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, Json(serde_json::json!({ "msg": self.to_string() }))).into_response()
    }
}

/// The bearer token of `headers`: 401 when the header is missing or not `Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| Rejection::Unauthorized("missing authorization header".into()))?;
    let malformed = || Rejection::Unauthorized("malformed authorization header".into());
    let text = value.to_str().map_err(|_| malformed())?;
    let (kind, token) = text.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !kind.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// Decides one request. `Ok(None)`: a public route; `Ok(Some(claims))`: a token that fits.
pub fn authorize(
    verifier: &JwtVerifier,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<Claims>, Rejection> {
    // (scope, whether `admin` passes too)
    let required = match required_access(method, path) {
        Access::Public => return Ok(None),
        Access::AnyToken => None,
        Access::Scope(scope) => Some((scope, true)),
        Access::Only(scope) => Some((scope, false)),
    };
    let token = bearer(headers)?;
    let claims = verifier.verify(token).map_err(|e| {
        tracing::info!(%method, path, error = %e, "JWT refused");
        match e {
            TokenError::Expired => Rejection::Forbidden("JWT authentication error: expired".into()),
            TokenError::NotYetValid => {
                Rejection::Forbidden("JWT authentication error: not valid yet (nbf)".into())
            }
            _ => Rejection::Forbidden("JWT authentication error".into()),
        }
    })?;
    match required {
        Some((scope, admin_passes))
            if !(claims.scope == scope || (admin_passes && claims.scope.grants(scope))) =>
        {
            tracing::info!(%method, path, have = %claims.scope, need = %scope, "JWT scope refused");
            let alternatives = if admin_passes { " or 'admin'" } else { " only" };
            Err(Rejection::Forbidden(format!(
                "JWT scope '{}' does not grant {method} {path} (requires '{scope}'{alternatives})",
                claims.scope
            )))
        }
        _ => Ok(Some(claims)),
    }
}

/// The middleware: checks every request against [`required_access`] when a verifier is set.
/// Accepted claims are left in the request's extensions for handlers that want them.
pub async fn require_token(State(auth): State<HttpAuth>, mut req: Request, next: Next) -> Response {
    let Some(verifier) = auth.verifier() else {
        return next.run(req).await;
    };
    match authorize(verifier, req.method(), req.uri().path(), req.headers()) {
        Ok(Some(claims)) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(rejection) => rejection.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post, put};
    use jsonwebtoken::{EncodingKey, Header};
    use tower::ServiceExt;

    // Test-only keypairs (see cluster-tests/fixtures/auth/README.md); never use them anywhere else.
    const TEST_PUBLIC_A: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster-tests/fixtures/auth/test-only-ed25519-a.public.pem"
    ));
    const TEST_PRIVATE_A: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster-tests/fixtures/auth/test-only-ed25519-a.private.pem"
    ));
    const TEST_PUBLIC_B: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster-tests/fixtures/auth/test-only-ed25519-b.public.pem"
    ));
    const TEST_PRIVATE_B: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster-tests/fixtures/auth/test-only-ed25519-b.private.pem"
    ));

    fn sign(private_pem: &str, claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("test private key");
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).expect("sign")
    }

    fn token(scope: &str) -> String {
        sign(TEST_PRIVATE_A, &serde_json::json!({ "scope": scope }))
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::from_pem(TEST_PUBLIC_A.as_bytes()).expect("test public key")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    }

    fn access(method: Method, path: &str) -> Access {
        required_access(&method, path)
    }

    #[test]
    fn scope_wire_names_round_trip() {
        for (scope, name) in [
            (Scope::Tenant, "tenant"),
            (Scope::TenantEndpoint, "tenantendpoint"),
            (Scope::PageServerApi, "pageserverapi"),
            (Scope::SafekeeperData, "safekeeperdata"),
            (Scope::GenerationsApi, "generations_api"),
            (Scope::Admin, "admin"),
            (Scope::Infra, "infra"),
            (Scope::Scrubber, "scrubber"),
            (Scope::ControllerPeer, "controller_peer"),
        ] {
            assert_eq!(scope.as_str(), name);
            assert_eq!(
                serde_json::to_value(scope).expect("serialize"),
                serde_json::json!(name)
            );
            let back: Scope = serde_json::from_value(serde_json::json!(name)).expect("parse");
            assert_eq!(back, scope);
        }
        assert!(serde_json::from_value::<Scope>(serde_json::json!("Admin")).is_err());
    }

    #[test]
    fn admin_grants_everything_others_only_themselves() {
        assert!(Scope::Admin.grants(Scope::Infra));
        assert!(Scope::Admin.grants(Scope::ControllerPeer));
        assert!(Scope::Infra.grants(Scope::Infra));
        assert!(!Scope::Infra.grants(Scope::Admin));
        assert!(!Scope::ControllerPeer.grants(Scope::Admin));
        assert!(!Scope::PageServerApi.grants(Scope::GenerationsApi));
    }

    #[test]
    fn the_scope_table() {
        use Access::{AnyToken, Only, Public, Scope as S};
        use Scope::*;
        let cases = [
            // probes
            (Method::GET, "/status", Public),
            (Method::GET, "/live", Public),
            (Method::GET, "/ready", Public),
            (Method::HEAD, "/ready", Public),
            (Method::GET, "/metrics", Public),
            (Method::GET, "/profile/cpu", Public),
            // upcalls
            (Method::POST, "/upcall/v1/re-attach", S(GenerationsApi)),
            (Method::POST, "/upcall/v1/validate", S(GenerationsApi)),
            (Method::GET, "/upcall/v1/anything/else", S(GenerationsApi)),
            // virtual pageserver
            (Method::POST, "/v1/tenant", S(PageServerApi)),
            (Method::DELETE, "/v1/tenant/abc", S(PageServerApi)),
            (Method::PUT, "/v1/tenant/config", S(PageServerApi)),
            (
                Method::PUT,
                "/v1/tenant/abc/location_config",
                S(PageServerApi),
            ),
            (Method::GET, "/v1/tenant/abc/timeline", S(PageServerApi)),
            (Method::POST, "/v1/tenant/abc/secondary/download", AnyToken),
            (
                Method::GET,
                "/v1/tenant/abc/secondary/download",
                S(PageServerApi),
            ),
            // nodes
            (Method::POST, "/control/v1/node", S(Infra)),
            (Method::GET, "/control/v1/node", S(Infra)),
            (Method::DELETE, "/control/v1/node", S(Admin)),
            (Method::GET, "/control/v1/node/1", S(Infra)),
            (Method::HEAD, "/control/v1/node/1", S(Infra)),
            (Method::DELETE, "/control/v1/node/1", S(Admin)),
            (Method::PUT, "/control/v1/node/1/config", S(Admin)),
            (Method::GET, "/control/v1/node/1/config", S(Admin)),
            (Method::GET, "/control/v1/node/1/shards", S(Admin)),
            (Method::PUT, "/control/v1/node/1/drain", S(Infra)),
            (Method::DELETE, "/control/v1/node/1/fill", S(Infra)),
            (Method::PUT, "/control/v1/node/1/delete", S(Admin)),
            (Method::DELETE, "/control/v1/node/1/delete", S(Infra)),
            (Method::GET, "/control/v1/leader", S(Admin)),
            (Method::PUT, "/control/v1/step_down", S(ControllerPeer)),
            // tenants
            (Method::GET, "/control/v1/tenant", S(Admin)),
            (Method::GET, "/control/v1/tenant/abc", S(Scrubber)),
            (Method::DELETE, "/control/v1/tenant/abc", S(Admin)),
            (Method::PUT, "/control/v1/tenant/abc/policy", S(Admin)),
            (Method::PUT, "/control/v1/tenant/abc-0102/migrate", S(Admin)),
            (Method::PUT, "/control/v1/tenant/abc/shard_split", S(Admin)),
            (
                Method::GET,
                "/control/v1/tenant/abc/timeline/def",
                S(Scrubber),
            ),
            (Method::PUT, "/control/v1/preferred_azs", S(Admin)),
            (
                Method::POST,
                "/control/v1/metadata_health/update",
                S(Scrubber),
            ),
            (
                Method::GET,
                "/control/v1/metadata_health/unhealthy",
                S(Admin),
            ),
            // debug
            (Method::POST, "/debug/v1/reconcile_all", S(Admin)),
            (Method::POST, "/debug/v1/consistency_check", S(Admin)),
            (Method::POST, "/debug/v1/attach-hook", S(Admin)),
            (Method::POST, "/debug/v1/tenant/abc/drop", S(PageServerApi)),
            (
                Method::POST,
                "/debug/v1/tenant/abc/import",
                S(PageServerApi),
            ),
            (Method::GET, "/debug/v1/tenant/abc/locate", S(Admin)),
            (Method::GET, "/debug/v1/tenant", S(Admin)),
            (Method::GET, "/debug/v1/scheduler", S(Admin)),
            (Method::POST, "/debug/v1/node/7/drop", S(Admin)),
            // storcon's own
            (Method::GET, "/control/v1/cluster", S(ControllerPeer)),
            (Method::GET, "/control/v1/backup", S(Admin)),
            (Method::POST, "/raft/append", Only(ControllerPeer)),
            (Method::POST, "/raft/vote", Only(ControllerPeer)),
            (Method::POST, "/raft/snapshot", Only(ControllerPeer)),
            (Method::POST, "/raft/elect", Only(ControllerPeer)),
            (Method::POST, "/control/v1/members", S(Admin)),
            (Method::DELETE, "/control/v1/members/4", S(Admin)),
            (
                Method::GET,
                raft_store::FORMATION_PATH,
                Only(ControllerPeer),
            ),
            // unknown routes and odd spellings fall to admin
            (Method::GET, "/", S(Admin)),
            (Method::GET, "/nope", S(Admin)),
            (Method::GET, "/status/", S(Admin)),
            (Method::GET, "/status/x", S(Admin)),
            (Method::GET, "/control/v2/node", S(Admin)),
            (Method::GET, "/control/v1/cluster/", S(Admin)),
            (Method::GET, "/v1", S(PageServerApi)),
        ];
        for (method, path, want) in cases {
            assert_eq!(access(method.clone(), path), want, "{method} {path}");
        }
    }

    #[test]
    fn verifier_accepts_own_tokens_and_ignores_tenant_id() {
        let v = verifier();
        let claims = v.verify(&token("infra")).expect("valid");
        assert_eq!(claims.scope, Scope::Infra);
        let t = sign(
            TEST_PRIVATE_A,
            &serde_json::json!({"scope": "pageserverapi", "tenant_id": "0123", "exp": now() + 600}),
        );
        let claims = v.verify(&t).expect("valid with exp in the future");
        assert_eq!(claims.scope, Scope::PageServerApi);
        assert_eq!(claims.tenant_id.as_deref(), Some("0123"));
    }

    #[test]
    fn verifier_refuses_bad_tokens() {
        let v = verifier();
        // Signed by another key.
        let other = sign(TEST_PRIVATE_B, &serde_json::json!({"scope": "admin"}));
        assert!(matches!(v.verify(&other), Err(TokenError::Invalid(_))));
        // ... which that key's verifier accepts.
        let vb = JwtVerifier::from_pem(TEST_PUBLIC_B.as_bytes()).expect("key b");
        assert!(vb.verify(&other).is_ok());
        // Expired.
        let expired = sign(
            TEST_PRIVATE_A,
            &serde_json::json!({"scope": "admin", "exp": now() - 10}),
        );
        assert!(matches!(v.verify(&expired), Err(TokenError::Expired)));
        // Not valid yet: an `nbf` in the future is refused, one in the past accepted.
        let early = sign(
            TEST_PRIVATE_A,
            &serde_json::json!({"scope": "admin", "nbf": now() + 600}),
        );
        assert!(matches!(v.verify(&early), Err(TokenError::NotYetValid)));
        let started = sign(
            TEST_PRIVATE_A,
            &serde_json::json!({"scope": "admin", "nbf": now() - 10}),
        );
        assert!(v.verify(&started).is_ok());
        // Unknown scope, missing scope, garbage.
        assert!(v.verify(&token("superuser")).is_err());
        assert!(
            v.verify(&sign(
                TEST_PRIVATE_A,
                &serde_json::json!({"tenant_id": "x"})
            ))
            .is_err()
        );
        assert!(v.verify("not.a.jwt").is_err());
        assert!(v.verify("").is_err());
        // A tampered payload no longer matches the signature.
        let good = token("infra");
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin_payload = token("admin");
        let admin_parts: Vec<&str> = admin_payload.split('.').collect();
        parts[1] = admin_parts[1];
        assert!(v.verify(&parts.join(".")).is_err());
        // HS256 with the public key as the secret (algorithm confusion) is refused.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"scope": "admin"}),
            &EncodingKey::from_secret(TEST_PUBLIC_A.as_bytes()),
        )
        .expect("sign hs256");
        assert!(v.verify(&hs).is_err());
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(JwtVerifier::from_pem(b"").is_err());
        assert!(JwtVerifier::from_pem(b"hello").is_err());
        assert!(JwtVerifier::from_pem(TEST_PRIVATE_A.as_bytes()).is_err());
    }

    #[test]
    fn bearer_token_files() {
        let t = BearerToken::parse("  abc.def.ghi\n").expect("token");
        assert_eq!(t.token(), "abc.def.ghi");
        assert_eq!(t.header_value(), "Bearer abc.def.ghi");
        assert!(t.header_value().is_sensitive());
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
        assert!(matches!(BearerToken::parse(" \n"), Err(TokenError::Empty)));
        assert!(matches!(
            BearerToken::parse("a b"),
            Err(TokenError::Characters)
        ));
        assert!(matches!(
            BearerToken::parse("é"),
            Err(TokenError::Characters)
        ));
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn authorize_decides_401_403_and_ok() {
        let v = verifier();
        let check = |method: Method, path: &str, auth: Option<String>| {
            authorize(&v, &method, path, &headers(auth.as_deref()))
        };
        let bearer = |scope: &str| Some(format!("Bearer {}", token(scope)));

        assert_eq!(check(Method::GET, "/ready", None), Ok(None));
        assert_eq!(
            check(Method::GET, "/ready", Some("garbage".into())),
            Ok(None),
            "probes ignore the header"
        );
        let missing = check(Method::GET, "/control/v1/node", None).unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.to_string(),
            "Unauthorized: missing authorization header"
        );
        for garbled in ["Basic abc", "Bearer", "Bearer   ", "token-without-kind"] {
            let r = check(Method::GET, "/control/v1/node", Some(garbled.into())).unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{garbled}");
        }
        let forged = check(
            Method::GET,
            "/control/v1/node",
            Some("Bearer not.a.jwt".into()),
        )
        .unwrap_err();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        assert_eq!(forged.to_string(), "Forbidden: JWT authentication error");

        let wrong = check(Method::GET, "/control/v1/node", bearer("scrubber")).unwrap_err();
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert!(wrong.to_string().contains("'scrubber'"), "{wrong}");
        assert!(wrong.to_string().contains("'infra'"), "{wrong}");

        let ok = check(Method::GET, "/control/v1/node", bearer("infra")).expect("infra");
        assert_eq!(ok.map(|c| c.scope), Some(Scope::Infra));
        assert!(check(Method::GET, "/control/v1/node", bearer("admin")).is_ok());
        assert!(check(Method::POST, "/raft/vote", bearer("controller_peer")).is_ok());
        assert!(check(Method::POST, "/raft/vote", bearer("infra")).is_err());
        // An operator's token cannot forge Raft RPCs (issue 8), though it passes elsewhere.
        for path in ["/raft/append", "/raft/vote", "/raft/snapshot"] {
            let refused = check(Method::POST, path, bearer("admin")).expect_err(path);
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
            assert!(refused.to_string().contains("only"), "{refused}");
        }
        assert!(check(Method::GET, "/control/v1/cluster", bearer("admin")).is_ok());
        assert!(check(Method::GET, "/control/v1/cluster", bearer("infra")).is_err());
        // Any valid token for the secondary download, but still a valid one.
        assert!(
            check(
                Method::POST,
                "/v1/tenant/abc/secondary/download",
                bearer("tenant")
            )
            .is_ok()
        );
        let unsigned = check(Method::POST, "/v1/tenant/abc/secondary/download", None);
        assert_eq!(
            unsigned.map_err(|r| r.status()),
            Err(StatusCode::UNAUTHORIZED)
        );
        // Unknown routes need admin.
        assert_eq!(
            check(Method::GET, "/nope", bearer("infra")).map_err(|r| r.status()),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(check(Method::GET, "/nope", bearer("admin")).is_ok());
    }

    async fn call(
        router: &Router,
        method: Method,
        path: &str,
        auth: Option<String>,
    ) -> (u16, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = router
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn test_router(auth: HttpAuth) -> Router {
        Router::new()
            .route("/ready", get(|| async { "ready" }))
            .route("/control/v1/node", post(|| async { "registered" }))
            .route(
                "/control/v1/node/{id}/config",
                put(|| async { "configured" }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "no such route") })
            .layer(axum::middleware::from_fn_with_state(auth, require_token))
    }

    #[tokio::test]
    async fn middleware_guards_routes_and_fallback() {
        let router = test_router(HttpAuth::new(verifier(), None));
        let bearer = |scope: &str| Some(format!("Bearer {}", token(scope)));

        assert_eq!(call(&router, Method::GET, "/ready", None).await.0, 200);
        let (status, body) = call(&router, Method::POST, "/control/v1/node", None).await;
        assert_eq!(status, 401);
        let body: serde_json::Value = serde_json::from_str(&body).expect("json body");
        assert_eq!(
            body,
            serde_json::json!({"msg": "Unauthorized: missing authorization header"})
        );
        let (status, body) = call(
            &router,
            Method::POST,
            "/control/v1/node",
            bearer("pageserverapi"),
        )
        .await;
        assert_eq!(status, 403);
        assert!(body.contains("\"msg\":\"Forbidden: "), "{body}");
        let (status, body) = call(&router, Method::POST, "/control/v1/node", bearer("infra")).await;
        assert_eq!((status, body.as_str()), (200, "registered"));
        assert_eq!(
            call(
                &router,
                Method::PUT,
                "/control/v1/node/1/config",
                bearer("infra")
            )
            .await
            .0,
            403
        );
        assert_eq!(
            call(
                &router,
                Method::PUT,
                "/control/v1/node/1/config",
                bearer("admin")
            )
            .await
            .0,
            200
        );
        // The fallback is guarded too: no token, no 404.
        assert_eq!(call(&router, Method::GET, "/nope", None).await.0, 401);
        assert_eq!(
            call(&router, Method::GET, "/nope", bearer("admin")).await.0,
            404
        );
    }

    #[tokio::test]
    async fn middleware_without_verifier_lets_everything_through() {
        let router = test_router(HttpAuth::disabled());
        assert_eq!(
            call(&router, Method::POST, "/control/v1/node", None)
                .await
                .0,
            200
        );
        assert_eq!(call(&router, Method::GET, "/nope", None).await.0, 404);
    }
}
