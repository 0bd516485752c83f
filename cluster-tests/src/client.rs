//! A small typed HTTP client for one storcon replica.
//!
//! Every call is one HTTP request: no retries here, so a test sees exactly what the server answered.
//! Retrying belongs to the caller (see [`crate::Cluster::register_with_retry`]), which decides
//! which failures are expected.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ClusterStatus, ErrorBody, LeaderInfo, NodeDescribeResponse, NodeRegisterRequest};

/// Header asking a replica to answer a GET from its own applied state instead of forwarding it.
pub const READ_LOCAL_HEADER: &str = "x-storcon-read-local";

/// Where a read is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// The normal path: a follower forwards the request to the leader.
    Forwarded,
    /// `x-storcon-read-local: true`: the replica asked answers from its own applied state.
    Local,
}

/// What went wrong with one request.
#[derive(Debug)]
pub enum ClientError {
    /// No HTTP response: connection refused or reset, timeout, ...
    Transport { url: String, source: reqwest::Error },
    /// The server answered with a non-2xx status.
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// A 2xx answer whose body does not match the contract.
    Decode {
        url: String,
        status: u16,
        body: String,
        error: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Transport { .. } => None,
            ClientError::Status { status, .. } | ClientError::Decode { status, .. } => {
                Some(*status)
            }
        }
    }

    /// The `msg` of an error body, when the server answered with one.
    pub fn msg(&self) -> Option<String> {
        match self {
            ClientError::Status { body, .. } => error_msg(body),
            _ => None,
        }
    }

    /// Failures a client should retry while the cluster elects a leader or a replica restarts:
    /// no response at all, or a 5xx (503 is what the contract promises while no leader is known;
    /// a follower whose proxied request hits a dead leader may answer another 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => *status >= 500,
            ClientError::Decode { .. } => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Transport { url, source } => {
                write!(f, "{url}: no response: {source}")?;
                let mut cause = std::error::Error::source(source);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            ClientError::Status { url, status, body } => write!(f, "{url}: HTTP {status}: {body}"),
            ClientError::Decode {
                url,
                status,
                body,
                error,
            } => {
                write!(
                    f,
                    "{url}: HTTP {status} with a body that does not decode ({error}): {body}"
                )
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// The `msg` field of a JSON error body, if the body is one.
pub fn error_msg(body: &str) -> Option<String> {
    serde_json::from_str::<ErrorBody>(body).ok().map(|b| b.msg)
}

/// A response read in full, for tests that look at status and body themselves.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: String,
}

impl RawResponse {
    /// The `msg` of a `{"msg": "..."}` body.
    pub fn msg(&self) -> Option<String> {
        error_msg(&self.body)
    }
}

/// Client for one replica, e.g. `http://127.0.0.1:7001`.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// Builds the shared reqwest client: no proxy (tests talk to 127.0.0.1 only), bounded timeouts.
pub fn http_client(request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(request_timeout)
        .build()
        .expect("building a reqwest client with static settings cannot fail")
}

impl Client {
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        let base = base.into().trim_end_matches('/').to_owned();
        Client { http, base }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the whole body. Only fails when there is no response.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some((content_type, body)) = body {
            if !content_type.is_empty() {
                req = req.header(reqwest::header::CONTENT_TYPE, content_type);
            }
            req = req.body(body);
        }
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(transport)?;
        Ok(RawResponse { status, body })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: Option<&impl Serialize>,
        mode: ReadMode,
    ) -> Result<T, ClientError> {
        let body = json.map(|j| {
            let text = serde_json::to_string(j).expect("request types always serialize");
            ("application/json", text)
        });
        let headers: &[(&str, &str)] = match mode {
            ReadMode::Forwarded => &[],
            ReadMode::Local => &[(READ_LOCAL_HEADER, "true")],
        };
        let raw = self.raw(method, path, body, headers).await?;
        let url = format!("{}{}", self.base, path);
        if !(200..300).contains(&raw.status) {
            return Err(ClientError::Status {
                url,
                status: raw.status,
                body: raw.body,
            });
        }
        serde_json::from_str(&raw.body).map_err(|error| ClientError::Decode {
            url,
            status: raw.status,
            body: raw.body,
            error,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, mode: ReadMode) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>, mode).await
    }

    /// `GET /status`: 200 `null` while the process serves HTTP.
    pub async fn status(&self) -> Result<(), ClientError> {
        self.get("/status", ReadMode::Forwarded).await
    }

    /// Status code of a probe such as `/live` or `/ready`; fails only without a response.
    pub async fn probe(&self, path: &str) -> Result<u16, ClientError> {
        Ok(self.raw(Method::GET, path, None, &[]).await?.status)
    }

    /// `GET /control/v1/cluster`, always answered by this replica itself.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/control/v1/cluster", ReadMode::Forwarded).await
    }

    /// `GET /control/v1/leader`: `None` when no leader is known.
    pub async fn leader(&self, mode: ReadMode) -> Result<Option<LeaderInfo>, ClientError> {
        self.get("/control/v1/leader", mode).await
    }

    /// `POST /control/v1/node`; the contract's success body is `null`.
    pub async fn register_node(&self, req: &NodeRegisterRequest) -> Result<(), ClientError> {
        self.call(
            Method::POST,
            "/control/v1/node",
            Some(req),
            ReadMode::Forwarded,
        )
        .await
    }

    /// `GET /control/v1/node`.
    pub async fn list_nodes(
        &self,
        mode: ReadMode,
    ) -> Result<Vec<NodeDescribeResponse>, ClientError> {
        self.get("/control/v1/node", mode).await
    }

    /// `GET /control/v1/node/:id`.
    pub async fn get_node(
        &self,
        id: u64,
        mode: ReadMode,
    ) -> Result<NodeDescribeResponse, ClientError> {
        self.get(&format!("/control/v1/node/{id}"), mode).await
    }
}
