//! The client for calls from the leader to pageservers.
//!
//! Every call carries the leader's Raft term in `x-storcon-term`, so a pageserver (the simulator,
//! at least) can refuse a deposed leader, and the configured token if there is one. Calls are
//! cancelled with the leader's cancellation token, or with the node's own token (`for_node`),
//! which fires when the node goes Offline or re-attaches. `relay` (and `put_location`, built on
//! it) retries transport errors, timeouts and 503/504/408 with a short backoff, like upstream;
//! any other status is final. Every call is counted in the pageserver (or passthrough)
//! request metrics by node, path template and method; a cancelled call is not.

use std::collections::BTreeMap;
use std::time::Duration;

use state_machine::ids::{Lsn, TenantShardId, TimelineId};
use state_machine::{NodeRecord, Term};
use storcon_api::wire::{
    LocationConfig, LocationConfigListResponse, PageserverUtilization, TenantShardSplitRequest,
    TenantShardSplitResponse,
};
use storcon_http::metrics::{self, PageserverCall};
use tokio_util::sync::CancellationToken;

pub const TERM_HEADER: &str = "x-storcon-term";

/// The path label of every passthrough GET, as the route that receives them is templated.
const PASSTHROUGH_TEMPLATE: &str = "/v1/tenant/{tenant_shard_id}/{*rest}";

#[derive(Debug, thiserror::Error)]
pub enum PsError {
    #[error("pageserver unreachable: {0}")]
    Unreachable(String),
    #[error("pageserver answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad answer from pageserver: {0}")]
    Decode(String),
    #[error("cancelled")]
    Cancelled,
}

/// One request for [`PageserverClient::relay`].
pub struct Relay {
    pub method: reqwest::Method,
    /// From the leading `/`, with any query string.
    pub path_and_query: String,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    pub retries: u32,
    /// Which metrics count it: the controller's own call or a client's passthrough.
    pub kind: PageserverCall,
}

#[derive(Clone)]
pub struct PageserverClient {
    http: reqwest::Client,
    term: Term,
    token: Option<String>,
    cancel: CancellationToken,
}

fn base(node: &NodeRecord) -> String {
    format!("http://{}:{}", node.listen_http_addr, node.listen_http_port)
}

impl PageserverClient {
    pub fn new(
        http: reqwest::Client,
        term: Term,
        token: Option<String>,
        cancel: CancellationToken,
    ) -> Self {
        PageserverClient {
            http,
            term,
            token,
            cancel,
        }
    }

    /// The same client, cancelled by `cancel` instead (a node's token, a child of the leader's).
    pub fn with_cancel(&self, cancel: CancellationToken) -> PageserverClient {
        PageserverClient {
            cancel,
            ..self.clone()
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: String,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(TERM_HEADER, self.term.to_string());
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Sends `req` to `node`, counted under its path's template.
    async fn send(
        &self,
        node: &NodeRecord,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PsError> {
        let (client, req) = req.build_split();
        let req = req.map_err(|e| PsError::Unreachable(e.to_string()))?;
        let method = req.method().clone();
        let template = metrics::path_template(req.url().path());
        let started = std::time::Instant::now();
        let result = self.execute(client, req).await;
        if !matches!(result, Err(PsError::Cancelled)) {
            metrics::pageserver_call(
                PageserverCall::Controller,
                node.id,
                template,
                &method,
                started.elapsed(),
                result.is_ok(),
            );
        }
        result
    }

    async fn execute(
        &self,
        client: reqwest::Client,
        req: reqwest::Request,
    ) -> Result<reqwest::Response, PsError> {
        let resp = tokio::select! {
            _ = self.cancel.cancelled() => return Err(PsError::Cancelled),
            r = client.execute(req) => r.map_err(|e| PsError::Unreachable(e.to_string()))?,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(PsError::Status {
            status: status.as_u16(),
            body,
        })
    }

    pub async fn utilization(&self, node: &NodeRecord) -> Result<PageserverUtilization, PsError> {
        let req = self.request(
            reqwest::Method::GET,
            format!("{}/v1/utilization", base(node)),
            Duration::from_secs(1),
        );
        self.send(node, req)
            .await?
            .json()
            .await
            .map_err(|e| PsError::Decode(e.to_string()))
    }

    /// `POST /v1/top_tenants`: the node's largest tenant shards by the request's order.
    pub async fn top_tenants(
        &self,
        node: &NodeRecord,
        request: &storcon_api::top_tenants::TopTenantShardsRequest,
    ) -> Result<storcon_api::top_tenants::TopTenantShardsResponse, PsError> {
        let req = self
            .request(
                reqwest::Method::POST,
                format!("{}/v1/top_tenants", base(node)),
                Duration::from_secs(5),
            )
            .json(request);
        self.send(node, req)
            .await?
            .json()
            .await
            .map_err(|e| PsError::Decode(e.to_string()))
    }

    pub async fn list_locations(
        &self,
        node: &NodeRecord,
    ) -> Result<Vec<(TenantShardId, Option<LocationConfig>)>, PsError> {
        let req = self.request(
            reqwest::Method::GET,
            format!("{}/v1/location_config", base(node)),
            Duration::from_secs(5),
        );
        let list: LocationConfigListResponse = self
            .send(node, req)
            .await?
            .json()
            .await
            .map_err(|e| PsError::Decode(e.to_string()))?;
        Ok(list.tenant_shards)
    }

    /// `GET /v1/location_config/:id`: `None` when the pageserver has no such location.
    pub async fn get_location(
        &self,
        node: &NodeRecord,
        shard: TenantShardId,
    ) -> Result<Option<LocationConfig>, PsError> {
        let req = self.request(
            reqwest::Method::GET,
            format!("{}/v1/location_config/{shard}", base(node)),
            Duration::from_secs(5),
        );
        match self.send(node, req).await {
            Ok(resp) => resp
                .json()
                .await
                .map_err(|e| PsError::Decode(e.to_string())),
            Err(PsError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put_location(
        &self,
        node: &NodeRecord,
        shard: TenantShardId,
        conf: &LocationConfig,
    ) -> Result<(), PsError> {
        let body = serde_json::to_vec(conf).map_err(|e| PsError::Decode(e.to_string()))?;
        let call = Relay {
            method: reqwest::Method::PUT,
            path_and_query: format!("/v1/tenant/{shard}/location_config?lazy=true"),
            body: Some(body),
            timeout: Duration::from_secs(25),
            retries: 2,
            kind: PageserverCall::Controller,
        };
        let answer = self.relay(node, &call).await?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        Err(PsError::Status {
            status: answer.status,
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        })
    }

    /// Sends one request and answers whatever status the pageserver gave, with its body, for
    /// the caller to interpret (timeline calls, passthroughs). Transport errors, timeouts and
    /// 503/504/408 are retried `retries` times with a short backoff.
    pub async fn relay(
        &self,
        node: &NodeRecord,
        call: &Relay,
    ) -> Result<storcon_api::timeline::Relayed, PsError> {
        let started = std::time::Instant::now();
        let result = self.relay_attempts(node, call).await;
        if !matches!(result, Err(PsError::Cancelled)) {
            let template = match call.kind {
                PageserverCall::Controller => metrics::path_template(&call.path_and_query),
                // A client chose the path: one label for all of them keeps the set bounded.
                PageserverCall::Passthrough => PASSTHROUGH_TEMPLATE.to_owned(),
            };
            let ok = result
                .as_ref()
                .is_ok_and(|r| (200..300).contains(&r.status));
            metrics::pageserver_call(
                call.kind,
                node.id,
                template,
                &call.method,
                started.elapsed(),
                ok,
            );
        }
        result
    }

    async fn relay_attempts(
        &self,
        node: &NodeRecord,
        call: &Relay,
    ) -> Result<storcon_api::timeline::Relayed, PsError> {
        let url = format!("{}{}", base(node), call.path_and_query);
        let mut attempt = 0u32;
        loop {
            let mut req = self.request(call.method.clone(), url.clone(), call.timeout);
            if let Some(body) = &call.body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let outcome = tokio::select! {
                _ = self.cancel.cancelled() => return Err(PsError::Cancelled),
                r = req.send() => r,
            };
            match outcome {
                Ok(resp)
                    if !(matches!(resp.status().as_u16(), 503 | 504 | 408)
                        && attempt < call.retries) =>
                {
                    let status = resp.status().as_u16();
                    let body = tokio::select! {
                        _ = self.cancel.cancelled() => return Err(PsError::Cancelled),
                        b = resp.bytes() => b.map_err(|e| PsError::Unreachable(e.to_string()))?,
                    };
                    return Ok(storcon_api::timeline::Relayed {
                        status,
                        body: body.to_vec(),
                    });
                }
                Ok(resp) => tracing::debug!(status = %resp.status(), "pageserver busy; retrying"),
                Err(e) if attempt < call.retries => {
                    tracing::debug!(error = %e, "pageserver call failed; retrying");
                }
                Err(e) => return Err(PsError::Unreachable(e.to_string())),
            }
            attempt += 1;
            let backoff = Duration::from_millis(100 * u64::from(attempt.min(10)));
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(PsError::Cancelled),
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// `GET /v1/tenant/:shard/timeline`: each timeline's `last_record_lsn`, as the origin of a
    /// live migration reports it.
    pub async fn timeline_lsns(
        &self,
        node: &NodeRecord,
        shard: TenantShardId,
    ) -> Result<BTreeMap<TimelineId, Lsn>, PsError> {
        let req = self.request(
            reqwest::Method::GET,
            format!("{}/v1/tenant/{shard}/timeline", base(node)),
            Duration::from_secs(10),
        );
        let infos: Vec<serde_json::Value> = self
            .send(node, req)
            .await?
            .json()
            .await
            .map_err(|e| PsError::Decode(e.to_string()))?;
        infos
            .iter()
            .map(|info| {
                let field = |name: &str| {
                    info.get(name)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| PsError::Decode(format!("timeline without {name}: {info}")))
                };
                let id = field("timeline_id")?
                    .parse::<TimelineId>()
                    .map_err(|e| PsError::Decode(e.to_string()))?;
                let lsn = field("last_record_lsn")?
                    .parse::<Lsn>()
                    .map_err(|e| PsError::Decode(e.to_string()))?;
                Ok((id, lsn))
            })
            .collect()
    }

    /// `POST /v1/tenant/:shard/wait_lsn` (upstream's `TenantWaitLsnRequest`): `true` when the
    /// timelines are caught up (200, or 404: none of them is there to wait for), `false` when
    /// not yet (202).
    pub async fn wait_lsn(
        &self,
        node: &NodeRecord,
        shard: TenantShardId,
        lsns: &BTreeMap<TimelineId, Lsn>,
        wait: Duration,
    ) -> Result<bool, PsError> {
        let mut body = serde_json::Map::new();
        for (id, lsn) in lsns {
            body.insert(id.to_string(), serde_json::Value::String(lsn.to_string()));
        }
        body.insert(
            "timeout".into(),
            serde_json::json!({"secs": wait.as_secs(), "nanos": wait.subsec_nanos()}),
        );
        let req = self
            .request(
                reqwest::Method::POST,
                format!("{}/v1/tenant/{shard}/wait_lsn", base(node)),
                wait + Duration::from_secs(5),
            )
            .json(&body);
        match self.send(node, req).await {
            Ok(resp) => Ok(resp.status() != reqwest::StatusCode::ACCEPTED),
            Err(PsError::Status { status: 404, .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/tenant/:parent/shard_split`: the pageserver creates the parent's children,
    /// attached in its generation. Not retried: the caller aborts the split on any error.
    pub async fn split(
        &self,
        node: &NodeRecord,
        parent: TenantShardId,
        request: &TenantShardSplitRequest,
        timeout: Duration,
    ) -> Result<Vec<TenantShardId>, PsError> {
        let req = self
            .request(
                reqwest::Method::PUT,
                format!("{}/v1/tenant/{parent}/shard_split", base(node)),
                timeout,
            )
            .json(request);
        let answer: TenantShardSplitResponse = self
            .send(node, req)
            .await?
            .json()
            .await
            .map_err(|e| PsError::Decode(e.to_string()))?;
        Ok(answer.new_shards)
    }
}
