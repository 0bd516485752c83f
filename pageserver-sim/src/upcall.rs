//! Calls from the simulated pageserver to the controller (`/upcall/v1/re-attach`, `/validate`).
//!
//! Re-attach is retried forever while the controller is unreachable or answers 5xx (it may be
//! electing a leader), like a real pageserver; a 4xx is a configuration error and ends startup.
//! Validate is retried only until a deadline: the caller then keeps the data it meant to delete.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::TenantShardId;
use crate::wire::{
    ReAttachRequest, ReAttachResponse, ValidateRequest, ValidateRequestTenant, ValidateResponse,
};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum UpcallError {
    /// No answer, a 5xx, 408 or 429: the controller may answer later.
    Unavailable(String),
    /// Any other non-2xx answer.
    Refused { status: u16, body: String },
    /// A 2xx answer that does not match the contract.
    Decode(String),
}

impl fmt::Display for UpcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpcallError::Unavailable(why) => write!(f, "controller unavailable: {why}"),
            UpcallError::Refused { status, body } => {
                write!(f, "controller answered {status}: {body}")
            }
            UpcallError::Decode(why) => write!(f, "unexpected controller answer: {why}"),
        }
    }
}

impl std::error::Error for UpcallError {}

pub struct Controller {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Controller {
    /// `base` is the controller's root URL; a trailing `/upcall/v1` (the pageserver's
    /// `control_plane_api` convention) is accepted too.
    /// With `tls` (the controller's CA, and our certificate if the controller asks for one),
    /// an `https://` controller is verified against that CA only.
    pub fn new(
        base: &str,
        token: Option<String>,
        tls: Option<storcon_tls::rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/upcall/v1").unwrap_or(base).to_owned();
        // No proxy: the controller is on loopback in every setup the simulator is used in.
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(tls) = tls {
            builder = storcon_tls::client::with_tls(builder, tls);
        }
        let http = builder.build()?;
        Ok(Controller { base, token, http })
    }

    /// Retries until the controller answers, with capped exponential backoff.
    pub async fn re_attach(
        &self,
        request: &ReAttachRequest,
    ) -> Result<ReAttachResponse, UpcallError> {
        let mut backoff = BACKOFF_MIN;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self.post("re-attach", request, ATTEMPT_TIMEOUT).await {
                Err(UpcallError::Unavailable(why)) => {
                    tracing::warn!(
                        "re-attach attempt {attempt} failed ({why}); retrying in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                other => return other,
            }
        }
    }

    /// Asks which of `shards` still hold the latest generation. Shards the controller omits are
    /// absent from the map. Retries while unavailable, until `deadline` has passed.
    pub async fn validate(
        &self,
        shards: &[(TenantShardId, u32)],
        deadline: Duration,
    ) -> Result<BTreeMap<TenantShardId, bool>, UpcallError> {
        let request = ValidateRequest {
            tenants: shards
                .iter()
                .map(|&(id, r#gen)| ValidateRequestTenant { id, r#gen })
                .collect(),
        };
        let start = Instant::now();
        let mut backoff = BACKOFF_MIN;
        loop {
            let remaining = deadline.saturating_sub(start.elapsed());
            let attempt_timeout = remaining.clamp(BACKOFF_MIN, ATTEMPT_TIMEOUT);
            match self
                .post::<_, ValidateResponse>("validate", &request, attempt_timeout)
                .await
            {
                Ok(response) => {
                    return Ok(response
                        .tenants
                        .into_iter()
                        .map(|t| (t.id, t.valid))
                        .collect());
                }
                Err(UpcallError::Unavailable(why)) if start.elapsed() + backoff < deadline => {
                    tracing::warn!("validate failed ({why}); retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        call: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, UpcallError> {
        let url = format!("{}/upcall/v1/{call}", self.base);
        let mut request = self.http.post(&url).json(body).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| UpcallError::Unavailable(format!("{url}: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| UpcallError::Unavailable(format!("{url}: reading body: {e}")))?;
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            return Err(UpcallError::Unavailable(format!("{url}: {code} {text}")));
        }
        if !status.is_success() {
            return Err(UpcallError::Refused {
                status: code,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| UpcallError::Decode(format!("{url}: {e}: {text}")))
    }
}
