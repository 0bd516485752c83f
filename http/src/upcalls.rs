//! `/upcall/v1`: calls from pageservers.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | /upcall/v1/re-attach | `{"tenants":[{"id","gen","mode","stripe_size"}]}`: AttachedSingle with a new generation for every shard whose generation was issued to the node, Secondary (gen null) for its secondary intents |
//! | POST | /upcall/v1/validate | `{"tenants":[{"id","valid"}]}` after a ReadIndex check; unknown shards omitted |

use axum::Json;
use axum::extract::State;
use state_machine::wire::{
    LocationConfigMode, ReAttachRequest, ReAttachResponse, ReAttachResponseTenant, ValidateRequest,
    ValidateResponse, ValidateResponseTenant,
};
use state_machine::{Command, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::propose::{propose, read_linearizable};

pub async fn re_attach(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ReAttachRequest>,
) -> Result<Json<ReAttachResponse>, ApiError> {
    let services = app.leader.get()?;
    if let Some(register) = req.register {
        if register.node_id != req.node_id {
            return Err(ApiError::BadRequest(format!(
                "register.node_id {} differs from node_id {}",
                register.node_id, req.node_id
            )));
        }
        register.validate()?;
        propose(&app, Command::RegisterNode(register)).await?;
    }
    let issued = match propose(
        &app,
        Command::ReAttach {
            node_id: req.node_id,
        },
    )
    .await?
    {
        Response::ReAttached(issued) => issued,
        other => return Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    };
    services.node_re_attached(req.node_id, &issued);
    let state = app.state.read();
    let mut tenants: Vec<ReAttachResponseTenant> = issued
        .iter()
        .filter_map(|(id, generation)| {
            state.shard(id).map(|s| ReAttachResponseTenant {
                id: *id,
                r#gen: Some(*generation),
                mode: LocationConfigMode::AttachedSingle,
                stripe_size: s.stripe_size,
            })
        })
        .collect();
    tenants.extend(
        state
            .shards()
            .filter(|s| s.intent.secondaries.contains(&req.node_id))
            .filter(|s| !issued.iter().any(|(id, _)| *id == s.id))
            .map(|s| ReAttachResponseTenant {
                id: s.id,
                r#gen: None,
                mode: LocationConfigMode::Secondary,
                stripe_size: s.stripe_size,
            }),
    );
    tracing::info!(
        node = req.node_id,
        attached = issued.len(),
        total = tenants.len(),
        "re-attach"
    );
    Ok(Json(ReAttachResponse { tenants }))
}

pub async fn validate(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let tenants = read_linearizable(&app, |state| {
        req.tenants
            .iter()
            .filter_map(|t| {
                state.shard(&t.id).map(|s| ValidateResponseTenant {
                    id: t.id,
                    valid: s.generation == Some(t.r#gen),
                })
            })
            .collect()
    })
    .await?;
    Ok(Json(ValidateResponse { tenants }))
}
