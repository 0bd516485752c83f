//! What the store's integration tests share.

use state_machine::{Command, NodeId, NodeRegisterRequest};

/// A registration of pageserver `id` listening on `port`.
pub fn register_on(id: u64, port: u16) -> Command {
    Command::RegisterNode(NodeRegisterRequest {
        node_id: NodeId(id),
        listen_pg_addr: "ps".into(),
        listen_pg_port: 1,
        listen_grpc_addr: None,
        listen_grpc_port: None,
        listen_http_addr: "ps".into(),
        listen_http_port: port,
        listen_https_port: None,
        availability_zone_id: "az".into(),
        node_ip_addr: None,
    })
}

/// A registration of pageserver `id` on a port of its own.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn register(id: u64) -> Command {
    register_on(id, u16::try_from(id).expect("small ids"))
}
