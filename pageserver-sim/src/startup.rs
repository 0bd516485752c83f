//! Startup re-attach: the simulator serves nothing until the controller has told it which of
//! its local locations it may keep, and in which generation, and that outcome is durable.

use crate::cli::Args;
use crate::history::{Event, History};
use crate::model::SimState;
use crate::store::Store;
use crate::upcall::Controller;
use crate::wire::{NodeRegisterRequest, ReAttachRequest};

pub async fn reattach(
    args: &Args,
    controller: &Controller,
    state: SimState,
    store: &mut Store,
    history: &History,
) -> anyhow::Result<SimState> {
    let host = advertised_host(args);
    let http_port = args.listen.port();
    let request = ReAttachRequest {
        node_id: args.node_id,
        register: Some(NodeRegisterRequest {
            node_id: args.node_id,
            listen_pg_addr: host.clone(),
            listen_pg_port: args.pg_port.unwrap_or(http_port),
            listen_grpc_addr: None,
            listen_grpc_port: None,
            listen_http_addr: host,
            listen_http_port: http_port,
            listen_https_port: args.https_port,
            availability_zone_id: args.az.clone(),
        }),
        empty_local_disk: Some(state.locations.is_empty()),
    };
    tracing::info!(
        "re-attaching node {} with {} local locations",
        args.node_id,
        state.locations.len()
    );
    let response = controller.re_attach(&request).await?;
    let mut next = state;
    let outcomes = next.apply_reattach(&response, &crate::now());
    // A full snapshot: re-attach may touch every location, and it starts the journal afresh.
    store.compact(&next).await?;

    let mut summary = Event::new("reattach", None, None);
    summary.accepted = true;
    summary.reason = Some(format!(
        "response listed {} shards; {} local",
        response.tenants.len(),
        outcomes.len()
    ));
    let mut events = vec![summary];
    for outcome in outcomes {
        tracing::info!("re-attach: {outcome:?}");
        let mut event = Event::new("reattach", Some(outcome.id), None);
        event.mode = Some(outcome.mode);
        event.generation = outcome.generation;
        event.accepted = outcome.accepted;
        event.reason = outcome.reason;
        events.push(event);
    }
    history.append(events).await?;
    Ok(next)
}

/// Loopback when bound to all interfaces: the address must be one the controller can dial.
fn advertised_host(args: &Args) -> String {
    let ip = args.listen.ip();
    if ip.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        ip.to_string()
    }
}
