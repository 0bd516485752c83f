//! The CLI's HTTP client: one replica's API (`--api`, any replica: followers forward to the
//! leader), the bearer token, and errors sorted by what the operator should do about them.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::GlobalArgs;

/// Long enough for the routes that wait for reconciles (a split, a migrate: up to 30 s each).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a command failed; each kind has its exit code (see [`CliError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered an error status; `msg` is its `{"msg": ...}`.
    #[error("{method} {path}: {status}: {msg}")]
    Server {
        method: Method,
        path: String,
        status: reqwest::StatusCode,
        msg: String,
    },
    /// No answer: connection refused, DNS, timeout.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Arguments clap cannot check (a missing `--api`, JSON that does not parse).
    #[error("{0}")]
    Usage(String),
    /// The server's answer does not make sense, or an operation being waited for failed.
    #[error("{0}")]
    Failed(String),
    /// `--wait` gave up; the operation may still be running.
    #[error("{0}")]
    TimedOut(String),
}

impl CliError {
    /// 1: the server refused or failed, or an operation failed; 2: bad arguments (as clap);
    /// 3: the server could not be reached; 4: `--wait` timed out.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Server { .. } | CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::TimedOut(_) => 4,
        }
    }
}

/// The client every API subcommand (and `backup`) uses: with `--ca-file`, it trusts that CA
/// only; with `--cert-file` and `--key-file`, it presents that client certificate.
pub fn http_client(args: &GlobalArgs, timeout: Duration) -> Result<reqwest::Client, CliError> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT);
    let identity = match (&args.cert_file, &args.key_file) {
        (Some(cert), Some(key)) => Some(
            storcon_tls::ReloadingIdentity::load(cert, key)
                .map_err(|e| CliError::Usage(format!("client certificate: {e}")))?,
        ),
        (None, None) => None,
        _ => {
            return Err(CliError::Usage(
                "--cert-file and --key-file go together".into(),
            ));
        }
    };
    let builder = match &args.ca_file {
        Some(ca) => {
            let roots = storcon_tls::pem::roots("CA file", ca)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let config = storcon_tls::client::client_config(roots, identity)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            storcon_tls::client::with_tls(builder, config)
        }
        None if identity.is_some() => {
            return Err(CliError::Usage(
                "a client certificate needs --ca-file (the CA the server's certificate is signed by)"
                    .into(),
            ));
        }
        None => builder,
    };
    builder
        .build()
        .map_err(|e| CliError::Failed(format!("cannot build the HTTP client: {e}")))
}

pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(args: &GlobalArgs) -> Result<Api, CliError> {
        let raw = args.api.as_deref().ok_or_else(|| {
            CliError::Usage("no API address: give --api URL or set STORCON_API".into())
        })?;
        let http = http_client(args, REQUEST_TIMEOUT)?;
        Ok(Api {
            base: base_url(raw)?,
            token: args.token.clone(),
            http,
        })
    }

    /// The same token and client against another replica (the leader, for lag).
    pub fn at(&self, addr: &str) -> Result<Api, CliError> {
        let scheme = self.base.split("://").next().unwrap_or("http");
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        Ok(Api {
            base: base_url(&url)?,
            token: self.token.clone(),
            http: self.http.clone(),
        })
    }

    /// One request; the body of a 2xx answer as JSON (`null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        if !status.is_success() {
            return Err(CliError::Server {
                method,
                path: path.to_string(),
                status,
                msg: error_msg(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            CliError::Failed(format!(
                "{method} {path}: the answer is not JSON ({e}): {text}"
            ))
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call(Method::PUT, path, body).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call(Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::DELETE, path, None).await
    }
}

/// `host:port` or a URL, without a trailing slash; `http://` when no scheme is given.
fn base_url(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim().trim_end_matches('/');
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(url),
        _ => Err(CliError::Usage(format!(
            "--api {raw}: not an http(s) URL or host:port"
        ))),
    }
}

/// The server's `msg`, else its body as text.
fn error_msg(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("msg").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let t = text.trim();
            if t.is_empty() {
                "(empty body)".to_string()
            } else {
                t.to_string()
            }
        })
}

/// reqwest's error with its causes (the top level alone says only "error sending request").
fn reason(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
