//! Property tests: apply is deterministic, and the rows it emits rebuild the same state.

use std::collections::BTreeMap;

use proptest::prelude::*;
use state_machine::{Command, NodeRegisterRequest, State};

fn command() -> impl Strategy<Value = Command> {
    let register = (
        0u64..6,
        0u16..3,
        0u16..3,
        prop::option::of(0u16..2),
        prop::bool::ANY,
        prop::sample::select(vec!["az-a", "az-b"]),
    )
        .prop_map(|(id, http, pg, https, grpc, az)| {
            Command::RegisterNode(NodeRegisterRequest {
                node_id: id,
                listen_pg_addr: format!("ps{id}"),
                listen_pg_port: pg,
                listen_grpc_addr: grpc.then(|| format!("ps{id}")),
                listen_grpc_port: if grpc && http != 2 { Some(1) } else { None },
                listen_http_addr: format!("ps{id}"),
                listen_http_port: http,
                listen_https_port: https,
                availability_zone_id: az.to_string(),
                node_ip_addr: None,
            })
        });
    let leader = (1u64..4, 0u64..10).prop_map(|(node_id, term)| Command::RecordLeader {
        node_id,
        term,
        address: format!("http://127.0.0.1:{node_id}/"),
        started_at: format!("t{term}"),
    });
    prop_oneof![4 => register, 1 => leader]
}

proptest! {
    #[test]
    fn same_commands_same_state(cmds in prop::collection::vec(command(), 0..60)) {
        let mut a = State::default();
        let mut b = State::default();
        for c in &cmds {
            let ra = a.apply(c);
            let rb = b.apply(c);
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a, b);
    }

    #[test]
    fn rows_rebuild_the_same_state(cmds in prop::collection::vec(command(), 0..60)) {
        let mut state = State::default();
        let mut table: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for c in &cmds {
            let (_, muts) = state.apply(c);
            for m in muts {
                match m.value {
                    Some(v) => { table.insert(m.key, v); }
                    None => { table.remove(&m.key); }
                }
            }
        }
        let rebuilt = State::from_rows(table.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .expect("rows decode");
        prop_assert_eq!(rebuilt, state);
    }
}
