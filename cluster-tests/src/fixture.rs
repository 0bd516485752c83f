//! The common start of a controller scenario: a formed three-replica cluster with the test
//! controller timings, and simulated pageservers that re-attached through a follower and are
//! Active. Fields drop in declaration order, so the simulators stop before the replicas.

use std::time::Duration;

use crate::config::ControllerOptions;
use crate::sims::Sims;
use crate::storage_api::StorageApi;
use crate::{Cluster, ClusterOptions};

pub struct ControllerFixture {
    pub sims: Sims,
    pub cluster: Cluster,
    pub leader: u64,
    /// A replica other than the leader at start; the simulators talk to it.
    pub follower: u64,
}

impl ControllerFixture {
    /// `pageservers` lists (node id, AZ).
    pub async fn start(
        pageservers: &[(u64, &str)],
        settle: Duration,
    ) -> anyhow::Result<ControllerFixture> {
        Self::start_with(
            pageservers,
            settle,
            ClusterOptions::default(),
            ControllerOptions::test_defaults(),
        )
        .await
    }

    /// `start` with other cluster or controller options.
    pub async fn start_with(
        pageservers: &[(u64, &str)],
        settle: Duration,
        opts: ClusterOptions,
        controller: ControllerOptions,
    ) -> anyhow::Result<ControllerFixture> {
        let (cluster, leader) =
            Cluster::start_formed_with_controller(opts, Some(controller)).await?;
        let follower = cluster.live_other_than(leader);
        let sims = Sims::start(&cluster.url(follower), pageservers).await?;
        sims.wait_active(
            &StorageApi::new(cluster.client(follower)),
            &sims.ids(),
            settle,
        )
        .await?;
        Ok(ControllerFixture {
            sims,
            cluster,
            leader,
            follower,
        })
    }
}
