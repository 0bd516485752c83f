//! Compute notifications: tell the control plane where each shard of a tenant is attached
//! (`PUT {compute_hook_url}/notify-attach`), so computes connect to the right pageservers.
//!
//! Per tenant the hook remembers the last body the control plane accepted and skips identical
//! sends. A body is only sent when every shard has an attached location. A failed send leaves
//! the tenant pending; the background pass retries pending tenants. Sends for one tenant are
//! serialized so an older body never overtakes a newer one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use state_machine::ids::TenantId;
use state_machine::{NodeId, State};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use super::lock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyShard {
    pub node_id: NodeId,
    pub shard_number: u8,
}

/// Upstream `ComputeHookNotifyRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyBody {
    pub tenant_id: TenantId,
    pub preferred_az: Option<String>,
    /// `null` for unsharded and single-shard tenants.
    pub stripe_size: Option<u32>,
    pub shards: Vec<NotifyShard>,
}

/// The body for a tenant's current intents, or `None` while some shard has no attachment.
pub fn body_for(state: &State, tenant: TenantId) -> Option<NotifyBody> {
    let shards: Vec<_> = state.tenant_shards(tenant).collect();
    let first = shards.first()?;
    let notify = shards
        .iter()
        .map(|s| {
            s.intent.attached.map(|node_id| NotifyShard {
                node_id,
                shard_number: s.id.shard_number,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(NotifyBody {
        tenant_id: tenant,
        preferred_az: first.preferred_az.clone(),
        stripe_size: (first.id.shard_count.count() > 1).then_some(first.stripe_size),
        shards: notify,
    })
}

/// Per tenant: the pending flag is readable while a send holds the lock on `applied`.
#[derive(Default)]
struct TenantHook {
    pending: AtomicBool,
    applied: AsyncMutex<Option<NotifyBody>>,
}

pub struct ComputeHook {
    url: Option<String>,
    token: Option<String>,
    http: reqwest::Client,
    cancel: CancellationToken,
    tenants: std::sync::Mutex<BTreeMap<TenantId, Arc<TenantHook>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("control plane answered {0}")]
    Status(u16),
    #[error("control plane unreachable: {0}")]
    Unreachable(String),
    /// A TLS failure (certificate not signed by `compute_hook_ca_file`, plain HTTP): not
    /// retried here, as retrying will not fix it; the background pass tries again later.
    #[error("TLS with the control plane failed: {0}")]
    Tls(String),
    #[error("cancelled")]
    Cancelled,
}

const ATTEMPTS: u32 = 10;

impl ComputeHook {
    pub fn new(
        url: Option<String>,
        token: Option<String>,
        http: reqwest::Client,
        cancel: CancellationToken,
    ) -> Self {
        ComputeHook {
            url,
            token,
            http,
            cancel,
            tenants: Default::default(),
        }
    }

    fn slot(&self, tenant: TenantId) -> Arc<TenantHook> {
        lock(&self.tenants).entry(tenant).or_default().clone()
    }

    pub fn is_pending(&self, tenant: TenantId) -> bool {
        lock(&self.tenants)
            .get(&tenant)
            .is_some_and(|t| t.pending.load(Ordering::SeqCst))
    }

    /// Marks a tenant as owing the control plane a notification (its shards changed without a
    /// new attachment, as in a split); reconciles and the background pass then send it.
    pub fn mark_pending(&self, tenant: TenantId) {
        if self.url.is_some() {
            self.slot(tenant).pending.store(true, Ordering::SeqCst);
        }
    }

    pub fn pending_tenants(&self) -> Vec<TenantId> {
        lock(&self.tenants)
            .iter()
            .filter(|(_, t)| t.pending.load(Ordering::SeqCst))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn forget(&self, tenant: TenantId) {
        lock(&self.tenants).remove(&tenant);
    }

    /// Sends `body` unless the control plane already has it. Without a hook URL this is a no-op.
    pub async fn notify(&self, body: NotifyBody) -> Result<(), NotifyError> {
        let Some(url) = &self.url else { return Ok(()) };
        let slot = self.slot(body.tenant_id);
        let mut applied = slot.applied.lock().await;
        if applied.as_ref() == Some(&body) {
            slot.pending.store(false, Ordering::SeqCst);
            return Ok(());
        }
        slot.pending.store(true, Ordering::SeqCst);
        self.send(url, &body).await?;
        tracing::info!(tenant = %body.tenant_id, shards = body.shards.len(), "compute notified");
        *applied = Some(body);
        slot.pending.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn send(&self, url: &str, body: &NotifyBody) -> Result<(), NotifyError> {
        let mut last = NotifyError::Unreachable("not tried".into());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // 429 asks for a longer pause, as upstream waits 5 s.
                let pause = match last {
                    NotifyError::Status(429) => Duration::from_secs(5),
                    _ => Duration::from_millis(100 * u64::from(attempt).pow(2))
                        .min(Duration::from_secs(3)),
                };
                tokio::select! {
                    _ = self.cancel.cancelled() => return Err(NotifyError::Cancelled),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            let mut req = self
                .http
                .put(format!("{}/notify-attach", url.trim_end_matches('/')))
                .timeout(Duration::from_secs(10))
                .json(body);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return Err(NotifyError::Cancelled),
                r = req.send() => r,
            };
            match result {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    last = NotifyError::Status(status);
                    if !matches!(status, 429 | 502 | 503 | 504) {
                        return Err(last);
                    }
                }
                Err(e) if storcon_tls::client::is_tls_error(&e) => {
                    return Err(NotifyError::Tls(storcon_tls::client::error_chain(&e)));
                }
                Err(e) => last = NotifyError::Unreachable(storcon_tls::client::error_chain(&e)),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_machine::{Command, CreateTenant, Intent, PlacementPolicy};

    #[test]
    fn body_waits_for_every_shard_and_nulls_stripe_for_one_shard() {
        let tenant: TenantId = "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id");
        let mut state = State::default();
        // SetIntents only keeps intents naming registered nodes.
        for node_id in [NodeId(10), NodeId(11)] {
            state.apply(&Command::RegisterNode(state_machine::NodeRegisterRequest {
                node_id,
                listen_pg_addr: "ps".into(),
                listen_pg_port: 1,
                listen_grpc_addr: None,
                listen_grpc_port: None,
                listen_http_addr: "ps".into(),
                listen_http_port: 1,
                listen_https_port: None,
                availability_zone_id: "az-a".into(),
                node_ip_addr: None,
            }));
        }
        for (count, expect_stripe) in [(2u8, Some(2048)), (0u8, None)] {
            state.apply(&Command::DeleteTenant { tenant_id: tenant });
            state.apply(&Command::CreateTenant(CreateTenant {
                tenant_id: tenant,
                shard_count: count,
                stripe_size: 2048,
                placement: PlacementPolicy::Attached(0),
                config: serde_json::json!({}),
                preferred_az: Some("az-a".into()),
                generation: None,
            }));
            assert_eq!(body_for(&state, tenant), None, "no shard attached yet");
            let ids: Vec<_> = state.tenant_shards(tenant).map(|s| s.id).collect();
            let intents = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    (
                        *id,
                        Intent {
                            attached: Some(NodeId(10 + i as u64)),
                            secondaries: vec![],
                        },
                    )
                })
                .collect();
            state.apply(&Command::SetIntents(intents));
            let body = body_for(&state, tenant).expect("all attached");
            assert_eq!(body.stripe_size, expect_stripe);
            assert_eq!(body.shards.len(), ids.len());
            assert_eq!(
                body.shards[0],
                NotifyShard {
                    node_id: NodeId(10),
                    shard_number: 0
                }
            );
        }
    }

    /// An `https` hook URL is verified against `compute_hook_ca_file`: notified with the right
    /// CA, refused (a TLS error, not retried) with another.
    #[tokio::test]
    async fn https_hook_is_verified_against_its_ca() {
        use cluster_tests::certs::TestCa;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new(dir.path(), "hook-ca").expect("CA");
        let other = TestCa::new(dir.path(), "other-ca").expect("CA");
        let cert = ca
            .issue(dir.path(), "control-plane", 7)
            .expect("certificate");

        let received = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
        let router = axum::Router::new().route(
            "/notify-attach",
            axum::routing::put({
                let received = received.clone();
                move |axum::Json(body): axum::Json<serde_json::Value>| async move {
                    lock(&received).push(body);
                }
            }),
        );
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", tcp.local_addr().expect("addr"));
        let identity =
            storcon_tls::ReloadingIdentity::load(&cert.cert, &cert.key).expect("identity");
        let listener = storcon_tls::server::TlsListener::new(
            tcp,
            storcon_tls::server::server_config(identity, None).expect("server config"),
        )
        .expect("listener");
        tokio::spawn(async move { axum::serve(listener, router).await });

        let hook_with = |ca_file: &std::path::Path| {
            let cfg = crate::config::ControllerConfig {
                compute_hook_url: Some(url.clone()),
                compute_hook_ca_file: Some(ca_file.to_owned()),
                ..Default::default()
            };
            let tls = crate::tls::LoadedTls::load(None, &cfg, 1).expect("CA file loads");
            let http = crate::tls::with_tls(reqwest::Client::builder(), tls.compute_hook.as_ref())
                .build()
                .expect("client");
            ComputeHook::new(cfg.compute_hook_url, None, http, CancellationToken::new())
        };
        let tenant: TenantId = "1f359dd625e519a1a4e8d7509690f6fc".parse().expect("id");
        let body = NotifyBody {
            tenant_id: tenant,
            preferred_az: None,
            stripe_size: None,
            shards: vec![NotifyShard {
                node_id: NodeId(1),
                shard_number: 0,
            }],
        };

        hook_with(&ca.ca_file)
            .notify(body.clone())
            .await
            .expect("notified over HTTPS");
        assert_eq!(lock(&received).len(), 1);
        assert_eq!(lock(&received)[0]["tenant_id"], tenant.to_string());

        let refused = hook_with(&other.ca_file)
            .notify(body)
            .await
            .expect_err("a certificate from another CA is refused");
        assert!(matches!(refused, NotifyError::Tls(_)), "{refused}");
        assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
        assert_eq!(
            lock(&received).len(),
            1,
            "nothing sent to the untrusted server"
        );
    }
}
