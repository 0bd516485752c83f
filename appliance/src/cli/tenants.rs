//! Tenants: `tenants` (all, or one node's shards), `tenant-describe`, `tenant-create`,
//! `tenant-delete`, `tenant-policy`, `set-tenant-config`, `patch-tenant-config`,
//! `tenant-set-preferred-az`, `tenant-drop`.

use std::collections::BTreeMap;

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{Api, CliError};
use super::json_object;
use super::output::{Out, cell, placement, table};

/// Upstream's page size for the tenant list.
const PAGE: usize = 1000;

#[derive(Subcommand, Debug)]
pub enum TenantsCmd {
    /// List tenants (paged GET /control/v1/tenant), or with --node-id that node's shards.
    Tenants {
        #[arg(long)]
        node_id: Option<u64>,
    },
    /// One tenant's shards, where each is attached and its secondaries.
    TenantDescribe {
        #[arg(long)]
        tenant_id: String,
    },
    /// Create a tenant (POST /v1/tenant).
    TenantCreate {
        #[arg(long)]
        tenant_id: String,
        /// 0: unsharded.
        #[arg(long, default_value_t = 0)]
        shard_count: u8,
        #[arg(long, default_value_t = storcon_api::types::DEFAULT_STRIPE_SIZE)]
        stripe_size: u32,
        /// `attached:N` (N secondaries), `secondary` or `detached`.
        #[arg(long, default_value = "attached:1", value_parser = parse_placement)]
        placement: Value,
    },
    /// Delete a tenant (DELETE /v1/tenant/:id).
    TenantDelete {
        #[arg(long)]
        tenant_id: String,
    },
    /// Set a tenant's placement or scheduling policy (PUT /control/v1/tenant/:id/policy).
    TenantPolicy {
        #[arg(long)]
        tenant_id: String,
        /// `attached:N` (N secondaries), `secondary` or `detached`.
        #[arg(long, value_parser = parse_placement)]
        placement: Option<Value>,
        #[arg(long)]
        scheduling: Option<ShardScheduling>,
    },
    /// Replace a tenant's config (PUT /v1/tenant/config).
    SetTenantConfig {
        #[arg(long)]
        tenant_id: String,
        /// The config as a JSON object, e.g. '{"gc_period": "1h"}'.
        #[arg(long)]
        config: String,
    },
    /// Change some keys of a tenant's config; `null` removes one (PATCH /v1/tenant/config).
    PatchTenantConfig {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        config: String,
    },
    /// Set every shard's preferred AZ: the one given, else the AZ of the node it is attached on
    /// (PUT /control/v1/preferred_azs).
    TenantSetPreferredAz {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        preferred_az: Option<String>,
    },
    /// Forget a tenant in the controller, calling no pageserver (POST /debug/v1/tenant/:id/drop).
    TenantDrop {
        #[arg(long)]
        tenant_id: String,
        /// Required: this is no delete; the pageservers keep the tenant.
        #[arg(long, required = true)]
        unclean: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ShardScheduling {
    Active,
    Essential,
    Pause,
    Stop,
}

impl ShardScheduling {
    fn wire(self) -> &'static str {
        match self {
            ShardScheduling::Active => "Active",
            ShardScheduling::Essential => "Essential",
            ShardScheduling::Pause => "Pause",
            ShardScheduling::Stop => "Stop",
        }
    }
}

/// Upstream's placement syntax: `attached:N`, `secondary`, `detached`.
fn parse_placement(raw: &str) -> Result<Value, String> {
    match raw.to_ascii_lowercase().as_str() {
        "secondary" => Ok(json!("Secondary")),
        "detached" => Ok(json!("Detached")),
        other => other
            .strip_prefix("attached:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| json!({ "Attached": n }))
            .ok_or_else(|| format!("{raw}: expected attached:N, secondary or detached")),
    }
}

pub async fn run(cmd: TenantsCmd, api: &Api, out: Out) -> Result<(), CliError> {
    match cmd {
        TenantsCmd::Tenants {
            node_id: Some(node),
        } => {
            let shards = api.get(&format!("/control/v1/node/{node}/shards")).await?;
            out.print(&shards, || node_shards_table(&shards));
        }
        TenantsCmd::Tenants { node_id: None } => {
            let tenants = list_all(api).await?;
            out.print(&tenants, || tenants_table(&tenants));
        }
        TenantsCmd::TenantDescribe { tenant_id } => {
            let tenant = api.get(&format!("/control/v1/tenant/{tenant_id}")).await?;
            let nodes = if out.json {
                Value::Null
            } else {
                api.get("/control/v1/node").await?
            };
            out.print(&tenant, || describe(&tenant, &nodes));
        }
        TenantsCmd::TenantCreate {
            tenant_id,
            shard_count,
            stripe_size,
            placement,
        } => {
            let body = json!({
                "new_tenant_id": tenant_id,
                "shard_parameters": {"count": shard_count, "stripe_size": stripe_size},
                "placement_policy": placement,
            });
            let created = api.post("/v1/tenant", Some(&body)).await?;
            out.print(&created, || {
                let rows = created["shards"].as_array().into_iter().flatten().map(|s| {
                    vec![
                        cell(s.get("shard_id")),
                        cell(s.get("node_id")),
                        cell(s.get("generation")),
                    ]
                });
                table(&["Shard", "Node", "Generation"], rows)
            });
        }
        TenantsCmd::TenantDelete { tenant_id } => {
            let answer = api.delete(&format!("/v1/tenant/{tenant_id}")).await?;
            out.print(&answer, || format!("tenant {tenant_id} deleted"));
        }
        TenantsCmd::TenantPolicy {
            tenant_id,
            placement,
            scheduling,
        } => {
            if placement.is_none() && scheduling.is_none() {
                return Err(CliError::Usage(
                    "tenant-policy: give --placement or --scheduling".into(),
                ));
            }
            let mut body = serde_json::Map::new();
            if let Some(p) = placement {
                body.insert("placement".into(), p);
            }
            if let Some(s) = scheduling {
                body.insert("scheduling".into(), json!(s.wire()));
            }
            let answer = api
                .put(
                    &format!("/control/v1/tenant/{tenant_id}/policy"),
                    Some(&Value::Object(body)),
                )
                .await?;
            out.print(&answer, || format!("policy of tenant {tenant_id} set"));
        }
        TenantsCmd::SetTenantConfig { tenant_id, config } => {
            let body = config_body(&tenant_id, &config)?;
            let answer = api.put("/v1/tenant/config", Some(&body)).await?;
            out.print(&answer, || format!("config of tenant {tenant_id} set"));
        }
        TenantsCmd::PatchTenantConfig { tenant_id, config } => {
            let body = config_body(&tenant_id, &config)?;
            let answer = api
                .call(reqwest::Method::PATCH, "/v1/tenant/config", Some(&body))
                .await?;
            out.print(&answer, || format!("config of tenant {tenant_id} patched"));
        }
        TenantsCmd::TenantSetPreferredAz {
            tenant_id,
            preferred_az,
        } => {
            let body = preferred_azs(api, &tenant_id, preferred_az).await?;
            let answer = api.put("/control/v1/preferred_azs", Some(&body)).await?;
            out.print(&answer, || {
                let rows = answer["updated"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| vec![cell(Some(s)), cell(body.get(s.as_str().unwrap_or("")))]);
                table(&["Shard", "Preferred AZ"], rows)
            });
        }
        TenantsCmd::TenantDrop { tenant_id, unclean } => {
            debug_assert!(unclean, "clap requires --unclean");
            let answer = api
                .post(&format!("/debug/v1/tenant/{tenant_id}/drop"), None)
                .await?;
            out.print(&answer, || format!("tenant {tenant_id} dropped"));
        }
    }
    Ok(())
}

/// Every tenant, page by page, as one array.
async fn list_all(api: &Api) -> Result<Value, CliError> {
    let mut all = Vec::new();
    let mut start_after: Option<String> = None;
    loop {
        let mut path = format!("/control/v1/tenant?limit={PAGE}");
        if let Some(after) = &start_after {
            path.push_str(&format!("&start_after={after}"));
        }
        let page = api.get(&path).await?;
        let page = page.as_array().cloned().unwrap_or_default();
        let n = page.len();
        start_after = page
            .last()
            .and_then(|t| t["tenant_id"].as_str())
            .map(str::to_string);
        all.extend(page);
        if n < PAGE || start_after.is_none() {
            return Ok(Value::Array(all));
        }
    }
}

/// `{"tenant_id": ..., <config keys>}`.
fn config_body(tenant_id: &str, config: &str) -> Result<Value, CliError> {
    let mut body = json_object("--config", config)?;
    body.insert("tenant_id".into(), json!(tenant_id));
    Ok(Value::Object(body))
}

async fn preferred_azs(api: &Api, tenant_id: &str, az: Option<String>) -> Result<Value, CliError> {
    let tenant = api.get(&format!("/control/v1/tenant/{tenant_id}")).await?;
    let node_az = if az.is_none() {
        node_azs(api).await?
    } else {
        BTreeMap::new()
    };
    let mut body = serde_json::Map::new();
    for s in tenant["shards"].as_array().into_iter().flatten() {
        let id = cell(s.get("tenant_shard_id"));
        let chosen = match &az {
            Some(az) => Some(az.clone()),
            None => s["node_attached"]
                .as_u64()
                .and_then(|n| node_az.get(&n).cloned()),
        };
        let Some(chosen) = chosen else {
            return Err(CliError::Failed(format!(
                "{id} is not attached: give --preferred-az"
            )));
        };
        body.insert(id, json!(chosen));
    }
    Ok(Value::Object(body))
}

async fn node_azs(api: &Api) -> Result<BTreeMap<u64, String>, CliError> {
    let nodes = api.get("/control/v1/node").await?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_u64()?, cell(n.get("availability_zone_id")))))
        .collect())
}

fn tenants_table(tenants: &Value) -> String {
    let rows = tenants.as_array().into_iter().flatten().map(|t| {
        let shards = t["shards"].as_array().map_or(0, Vec::len);
        let scheduling = t["shards"]
            .get(0)
            .map_or("-".to_string(), |s| cell(s.get("scheduling_policy")));
        vec![
            cell(t.get("tenant_id")),
            shards.to_string(),
            cell(t.get("stripe_size")),
            placement(&t["policy"]),
            scheduling,
        ]
    });
    table(
        &[
            "TenantId",
            "ShardCount",
            "StripeSize",
            "Placement",
            "Scheduling",
        ],
        rows,
    )
}

fn node_shards_table(r: &Value) -> String {
    let role = |v: &Value| match v.as_bool() {
        Some(true) => "secondary",
        Some(false) => "attached",
        None => "-",
    };
    let rows = r["shards"].as_array().into_iter().flatten().map(|s| {
        vec![
            cell(s.get("tenant_shard_id")),
            role(&s["is_intended_secondary"]).to_string(),
            role(&s["is_observed_secondary"]).to_string(),
        ]
    });
    table(&["Shard", "Intended", "Observed"], rows)
}

fn describe(tenant: &Value, nodes: &Value) -> String {
    let az: BTreeMap<u64, String> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_u64()?, cell(n.get("availability_zone_id")))))
        .collect();
    let rows = tenant["shards"].as_array().into_iter().flatten().map(|s| {
        let attached = s["node_attached"].as_u64();
        let status = if s["is_splitting"] == json!(true) {
            "splitting"
        } else if s["is_reconciling"] == json!(true) {
            "reconciling"
        } else {
            "ok"
        };
        let last_error = match s["last_error"].as_str() {
            Some("") | None => "-".to_string(),
            Some(e) => e.to_string(),
        };
        vec![
            cell(s.get("tenant_shard_id")),
            cell(s.get("node_attached")),
            attached
                .and_then(|n| az.get(&n).cloned())
                .unwrap_or_else(|| "-".into()),
            cell(s.get("node_secondary")),
            cell(s.get("preferred_az_id")),
            cell(s.get("scheduling_policy")),
            status.to_string(),
            last_error,
        ]
    });
    format!(
        "Tenant {}\nPolicy: {}\nStripe size: {}\nConfig: {}\n{}",
        cell(tenant.get("tenant_id")),
        placement(&tenant["policy"]),
        cell(tenant.get("stripe_size")),
        tenant["config"],
        table(
            &[
                "Shard",
                "Attached",
                "Attached AZ",
                "Secondary",
                "Preferred AZ",
                "Scheduling",
                "Status",
                "Last error"
            ],
            rows
        )
    )
}
