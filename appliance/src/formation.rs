//! How a replica decides, at start, whether it may take part in Raft.
//!
//! - A replica with Raft state on disk is admitted at once and never initializes anything.
//! - A pristine replica asks its peers (`GET /raft/formation`). When every peer answers pristine,
//!   the lowest configured id initializes the cluster with all members. Before a pristine replica
//!   answers the lowest id, it writes a durable formation marker.
//! - A pristine replica that finds a peer already in a formed cluster joins only if its marker
//!   shows it took part in that formation. Otherwise its disk was wiped or replaced after the
//!   cluster formed, and joining with an empty log under the same id could lose committed
//!   entries and double-vote: it refuses and explains.
//!
//! - A replica started in join mode (`[cluster] join = true`: a new replica id with an empty data
//!   dir, to be added with `POST /control/v1/members`) never initializes and never takes part in
//!   formation. It asks its configured peers, and enters Raft (serving RPCs, holding no
//!   membership, so it never campaigns) once a majority of them answer that they belong to a
//!   formed cluster and none of them knows its id as a voter or as a removed replica: a voter or
//!   removed id with an empty disk is the wiped-disk case above, refused the same way. An id the
//!   peers know as a learner is let in: a learner neither votes nor counts towards commits, so an
//!   empty log under its id loses nothing (a replica whose disk was wiped while it was being
//!   added rejoins this way).
//!
//! The rules above are [`decide`], a pure function of what this replica knows ([`Local`]) and
//! what its peers answered ([`PeerAnswer`]). [`enter_raft`] is only the I/O around it: it asks
//! the peers, calls `decide` each round, and carries out the [`Decision`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use raft_store::{FORMATION_PATH, FormationMarker, FormationStatus, PeerScheme, Raft, SharedState};
use state_machine::ReplicaId;
use storcon_http::{BearerToken, FROM_NODE_HEADER, FormationProbe};

/// What this replica knows about itself when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub node_id: ReplicaId,
    /// Every configured member, this replica included.
    pub members: BTreeSet<ReplicaId>,
    /// Holds Raft state on disk (or has already been admitted).
    pub has_raft_state: bool,
    /// The durable formation marker exists: this replica reported pristine to the forming node.
    pub marker: bool,
    /// Started in join mode (`[cluster] join = true`): a new replica, added by the operator.
    pub join: bool,
}

impl Local {
    /// The member that initializes a pristine cluster.
    pub fn forming_node(&self) -> ReplicaId {
        self.members.first().copied().unwrap_or(self.node_id)
    }
}

/// One peer's answer to the formation probe in this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAnswer {
    /// No usable answer: unreachable, an error, a bad body, or an answer for another node id.
    /// A peer missing from the answers counts the same.
    Silent,
    /// Answered 401/403: its key or our peer token is wrong.
    AuthRefused,
    /// Its [`FormationStatus`], and what its membership says about the asking replica.
    Status {
        pristine: bool,
        initialized: bool,
        me: Standing,
    },
}

/// What a peer's Raft knows about the asking replica's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not in its membership, not removed.
    Stranger,
    Learner,
    Voter,
    Removed,
}

impl PeerAnswer {
    /// The answer `s` gives to replica `asker`.
    pub fn from_status(s: &FormationStatus, asker: ReplicaId) -> Self {
        let me = if s.removed.contains(&asker) {
            Standing::Removed
        } else if s.voters.contains(&asker) {
            Standing::Voter
        } else if s.learners.contains(&asker) {
            Standing::Learner
        } else {
            Standing::Stranger
        };
        PeerAnswer::Status {
            pristine: s.pristine,
            initialized: s.initialized,
            me,
        }
    }
}

/// What a starting replica does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It holds Raft state: take part in Raft now, initialize nothing.
    Admit,
    /// Every member is pristine and this is the forming node: take part and initialize the
    /// cluster with these members.
    Initialize { members: BTreeSet<ReplicaId> },
    /// Peers belong to a formed cluster and the marker shows this replica took part in forming
    /// it: take part.
    Join { formed_peers: BTreeSet<ReplicaId> },
    /// Join mode: a majority of the peers belong to a formed cluster that does not know this id
    /// as a voter or a removed replica: serve Raft and wait to be added as a learner.
    JoinAsNew { formed_peers: BTreeSet<ReplicaId> },
    /// Not yet: ask again. `answered` gave a status, `auth_refused` answered 401/403.
    Wait {
        answered: BTreeSet<ReplicaId>,
        auth_refused: BTreeSet<ReplicaId>,
    },
    /// Must not take part; the replica exits.
    Refuse { reason: RefuseReason },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefuseReason {
    /// Pristine, no formation marker, and these peers already belong to a formed cluster: the
    /// data dir was wiped or replaced after the cluster formed.
    WipedAfterFormation { formed_peers: BTreeSet<ReplicaId> },
    /// Join mode, but these peers know this id as a voter: a member's disk was wiped.
    JoinAsVoter { peers: BTreeSet<ReplicaId> },
    /// Join mode, but these peers know this id as removed: ids are never reused.
    JoinAsRemoved { peers: BTreeSet<ReplicaId> },
}

impl RefuseReason {
    /// The operator's explanation.
    pub fn explain(&self, node_id: ReplicaId, data_dir: &Path) -> String {
        match self {
            RefuseReason::WipedAfterFormation { formed_peers } => format!(
                "refusing to bootstrap: node {} has no Raft state in {}, but peer(s) {:?} already \
                 belong to a formed cluster that includes this node. Its data dir was probably \
                 wiped or replaced after the cluster formed; rejoining with an empty log under \
                 the same node id could lose committed entries or vote twice in one term. \
                 Restore the data dir from a backup, or replace this replica with a new node id.",
                node_id,
                data_dir.display(),
                formed_peers
            ),
            RefuseReason::JoinAsVoter { peers } => format!(
                "refusing to join: node {} has no Raft state in {}, but peer(s) {:?} know node {} \
                 as a voter. A voter's data dir was wiped or replaced; joining with an empty log \
                 under its id could lose committed entries or vote twice in one term. Remove \
                 node {} (DELETE /control/v1/members/{}) and add this replica under a new id.",
                node_id,
                data_dir.display(),
                peers,
                node_id,
                node_id,
                node_id
            ),
            RefuseReason::JoinAsRemoved { peers } => format!(
                "refusing to join: peer(s) {:?} record node {} as removed from the cluster; a \
                 removed id is never reused. Start this replica under a new id.",
                peers, node_id
            ),
        }
    }
}

/// The formation rules (see the module docs). Pure: no I/O, no clock, no randomness. `peers`
/// holds this round's answers by node id; configured peers without an entry count as
/// [`PeerAnswer::Silent`], and entries for this node or for non-members are ignored.
pub fn decide(own: &Local, peers: &BTreeMap<ReplicaId, PeerAnswer>) -> Decision {
    if own.has_raft_state {
        return Decision::Admit;
    }
    let answers: Vec<(ReplicaId, PeerAnswer)> = own
        .members
        .iter()
        .filter(|id| **id != own.node_id)
        .map(|id| (*id, peers.get(id).copied().unwrap_or(PeerAnswer::Silent)))
        .collect();
    if own.join {
        return decide_join(&answers);
    }
    let formed_peers: BTreeSet<ReplicaId> = answers
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                PeerAnswer::Status {
                    initialized: true,
                    ..
                }
            )
        })
        .map(|(id, _)| *id)
        .collect();
    if !formed_peers.is_empty() {
        return if own.marker {
            Decision::Join { formed_peers }
        } else {
            Decision::Refuse {
                reason: RefuseReason::WipedAfterFormation { formed_peers },
            }
        };
    }
    let all_pristine = answers
        .iter()
        .all(|(_, a)| matches!(a, PeerAnswer::Status { pristine: true, .. }));
    if own.node_id == own.forming_node() && all_pristine {
        return Decision::Initialize {
            members: own.members.clone(),
        };
    }
    let with = |want: fn(&PeerAnswer) -> bool| -> BTreeSet<ReplicaId> {
        answers
            .iter()
            .filter(|(_, a)| want(a))
            .map(|(id, _)| *id)
            .collect()
    };
    Decision::Wait {
        answered: with(|a| matches!(a, PeerAnswer::Status { .. })),
        auth_refused: with(|a| matches!(a, PeerAnswer::AuthRefused)),
    }
}

/// [`decide`] for a pristine replica in join mode: never initialize, never join by marker.
fn decide_join(answers: &[(ReplicaId, PeerAnswer)]) -> Decision {
    let with = |want: &dyn Fn(&PeerAnswer) -> bool| -> BTreeSet<ReplicaId> {
        answers
            .iter()
            .filter(|(_, a)| want(a))
            .map(|(id, _)| *id)
            .collect()
    };
    let standing =
        |s: Standing| move |a: &PeerAnswer| matches!(a, PeerAnswer::Status { me, .. } if *me == s);
    let removed = with(&standing(Standing::Removed));
    if !removed.is_empty() {
        return Decision::Refuse {
            reason: RefuseReason::JoinAsRemoved { peers: removed },
        };
    }
    let voter = with(&standing(Standing::Voter));
    if !voter.is_empty() {
        return Decision::Refuse {
            reason: RefuseReason::JoinAsVoter { peers: voter },
        };
    }
    let formed_peers = with(&|a| {
        matches!(
            a,
            PeerAnswer::Status {
                initialized: true,
                ..
            }
        )
    });
    // A majority of the configured peers: any quorum that made this id a voter or removed it
    // overlaps them, so one of them would have said so.
    if !answers.is_empty() && formed_peers.len() * 2 > answers.len() {
        return Decision::JoinAsNew { formed_peers };
    }
    Decision::Wait {
        answered: with(&|a| matches!(a, PeerAnswer::Status { .. })),
        auth_refused: with(&|a| matches!(a, PeerAnswer::AuthRefused)),
    }
}

/// This replica's side of formation: what it answers peers.
pub struct Formation {
    node_id: ReplicaId,
    members: BTreeSet<ReplicaId>,
    lowest_id: ReplicaId,
    /// Pristine at start and not yet admitted to Raft.
    pristine: AtomicBool,
    marker: FormationMarker,
    join: bool,
    /// Raft and the applied state, for the membership this replica reports once admitted.
    raft: Raft,
    state: SharedState,
}

impl Formation {
    pub fn new(
        node_id: ReplicaId,
        members: &BTreeMap<ReplicaId, String>,
        pristine: bool,
        marker: FormationMarker,
        join: bool,
        raft: Raft,
        state: SharedState,
    ) -> Self {
        Formation {
            node_id,
            members: members.keys().copied().collect(),
            lowest_id: members.keys().next().copied().unwrap_or(node_id),
            pristine: AtomicBool::new(pristine),
            marker,
            join,
            raft,
            state,
        }
    }

    fn admitted(&self) {
        self.pristine.store(false, Ordering::SeqCst);
    }

    /// What `decide` needs to know about this replica now. Reads the marker afresh: answering
    /// the forming node's probe may have written it since the last round.
    fn local(&self) -> Local {
        Local {
            node_id: self.node_id,
            members: self.members.clone(),
            has_raft_state: !self.pristine.load(Ordering::SeqCst),
            marker: self.marker.exists(),
            join: self.join,
        }
    }
}

impl FormationProbe for Formation {
    fn status(&self, asker: Option<ReplicaId>) -> FormationStatus {
        let mut pristine = self.pristine.load(Ordering::SeqCst);
        // A replica in join mode is never part of a formation: it never answers pristine to the
        // forming node (and so never writes the marker).
        if pristine && !self.join && asker == Some(self.lowest_id) && asker != Some(self.node_id) {
            // The forming node must not count us as pristine unless we will remember it.
            if let Err(e) = self.marker.write(self.lowest_id) {
                tracing::error!(error = %e, "cannot write formation marker; not reporting pristine");
                pristine = false;
            }
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        FormationStatus {
            node_id: self.node_id,
            pristine: pristine && !self.join,
            initialized: !self.pristine.load(Ordering::SeqCst),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            removed: self
                .state
                .read()
                .removed_replicas()
                .keys()
                .copied()
                .collect(),
        }
    }
}

/// How this replica calls its peers: the client (with the peers' CA under `[tls]`), the
/// `controller_peer` token (with auth) and the scheme.
#[derive(Clone, Copy)]
pub struct PeerCalls<'a> {
    pub client: &'a reqwest::Client,
    pub token: Option<&'a BearerToken>,
    pub scheme: PeerScheme,
}

/// Start-up refused, with the explanation for the operator.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}

const POLL_INTERVAL: Duration = Duration::from_millis(300);
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Decides how this replica enters Raft; returns once it is admitted (and, for the forming
/// node, once the cluster is initialized). `admit` opens the Raft RPC endpoints. Peers are asked
/// as `calls` says.
///
/// Each round calls [`decide`]; the first round decides before asking anyone, so a replica
/// with Raft state (or a single-member cluster) never waits on the network.
pub async fn enter_raft(
    formation: &Formation,
    raft: &Raft,
    members: &BTreeMap<ReplicaId, String>,
    calls: PeerCalls<'_>,
    data_dir: &Path,
    admit: impl Fn(),
) -> Result<(), Refused> {
    let peers: BTreeMap<ReplicaId, String> = members
        .iter()
        .filter(|(id, _)| **id != formation.node_id)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let mut last_log = Instant::now() - Duration::from_secs(60);
    // Nothing asked yet: every peer is silent.
    let mut answers: Option<BTreeMap<ReplicaId, PeerAnswer>> = None;
    let mut tls_failed = BTreeMap::new();
    loop {
        let local = formation.local();
        match decide(&local, answers.as_ref().unwrap_or(&BTreeMap::new())) {
            Decision::Admit => {
                formation.admitted();
                admit();
                return Ok(());
            }
            Decision::Join { formed_peers } => {
                tracing::info!(initialized = ?formed_peers, "cluster formed by peers; joining it");
                formation.admitted();
                admit();
                return Ok(());
            }
            Decision::JoinAsNew { formed_peers } => {
                tracing::info!(
                    peers = ?formed_peers,
                    "join mode: serving raft; waiting to be added (POST /control/v1/members)"
                );
                formation.admitted();
                admit();
                return Ok(());
            }
            Decision::Initialize { members: ids } => {
                formation.admitted();
                admit();
                let nodes: BTreeMap<ReplicaId, openraft::BasicNode> = members
                    .iter()
                    .filter(|(id, _)| ids.contains(id))
                    .map(|(id, a)| (*id, openraft::BasicNode::new(a)))
                    .collect();
                match raft.initialize(nodes).await {
                    Ok(()) => {
                        tracing::info!(members = ?ids.iter().collect::<Vec<_>>(), "formed a new cluster")
                    }
                    Err(e) => tracing::warn!(error = %e, "initialize refused; joining as is"),
                }
                return Ok(());
            }
            Decision::Refuse { reason } => {
                return Err(Refused(reason.explain(formation.node_id, data_dir)));
            }
            Decision::Wait {
                answered,
                auth_refused,
            } => {
                // Before the first question there is nothing to report or wait for.
                if answers.is_some() {
                    if last_log.elapsed() > WAIT_LOG_INTERVAL {
                        last_log = Instant::now();
                        for (peer, error) in &tls_failed {
                            tracing::warn!(
                                %peer,
                                %error,
                                "TLS handshake with peer failed: with [tls] every member must \
                                 serve HTTPS (a peer serving plain HTTP is refused) with a \
                                 certificate signed by [tls] ca_file, and accept ours"
                            );
                        }
                        if !auth_refused.is_empty() {
                            tracing::warn!(
                                peers = ?auth_refused,
                                "peers refused our formation probe (401/403): check [auth] \
                                 peer_token_file here and public_key_file there"
                            );
                        }
                        tracing::info!(
                            answered = ?answered.iter().collect::<Vec<_>>(),
                            forming_node = %local.forming_node(),
                            "pristine; waiting for all members to answer before the cluster forms"
                        );
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
        let asked = ask_peers(formation.node_id, &peers, calls).await;
        tls_failed = asked.tls_failed;
        answers = Some(asked.answers);
    }
}

/// One round of questions: every peer's answer, and the transport errors that were TLS
/// failures (named in the log, as they are a misconfiguration rather than a peer that is down).
struct Asked {
    answers: BTreeMap<ReplicaId, PeerAnswer>,
    tls_failed: BTreeMap<ReplicaId, String>,
}

/// Asks every peer once, concurrently; one answer per peer.
async fn ask_peers(
    node_id: ReplicaId,
    peers: &BTreeMap<ReplicaId, String>,
    calls: PeerCalls<'_>,
) -> Asked {
    let asks = peers.iter().map(|(id, addr)| async move {
        let mut ask = calls
            .client
            .get(format!("{}{FORMATION_PATH}", calls.scheme.base(addr)))
            .header(FROM_NODE_HEADER, node_id.to_string())
            .timeout(ASK_TIMEOUT);
        if let Some(token) = calls.token {
            ask = ask.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        let mut tls_error = None;
        let answer = async {
            let resp = match ask.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    if storcon_tls::client::is_tls_error(&e) {
                        tls_error = Some(storcon_tls::client::error_chain(&e));
                    }
                    return None;
                }
            };
            if matches!(resp.status().as_u16(), 401 | 403) {
                return Some(PeerAnswer::AuthRefused);
            }
            let resp = resp.error_for_status().ok()?;
            let status: FormationStatus = resp.json().await.ok()?;
            // A peer answering for another id is mis-wired; ignore it rather than trust it.
            (status.node_id == *id).then(|| PeerAnswer::from_status(&status, node_id))
        }
        .await;
        (*id, answer.unwrap_or(PeerAnswer::Silent), tls_error)
    });
    let mut asked = Asked {
        answers: BTreeMap::new(),
        tls_failed: BTreeMap::new(),
    };
    for (id, answer, tls_error) in futures::future::join_all(asks).await {
        asked.answers.insert(id, answer);
        if let Some(e) = tls_error {
            asked.tls_failed.insert(id, e);
        }
    }
    asked
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerAnswer::{AuthRefused, Silent};

    const PRISTINE: PeerAnswer = PeerAnswer::Status {
        pristine: true,
        initialized: false,
        me: Standing::Stranger,
    };
    const FORMED: PeerAnswer = formed(Standing::Stranger);
    /// Pristine, but could not write its marker for the forming node, so it does not say so.
    const UNMARKED: PeerAnswer = PeerAnswer::Status {
        pristine: false,
        initialized: false,
        me: Standing::Stranger,
    };

    /// A peer in a formed cluster, and what its membership says about the asker.
    const fn formed(me: Standing) -> PeerAnswer {
        PeerAnswer::Status {
            pristine: false,
            initialized: true,
            me,
        }
    }

    fn ids(v: &[u64]) -> BTreeSet<ReplicaId> {
        v.iter().copied().map(ReplicaId).collect()
    }

    fn answers_by_id(answers: Vec<(u64, PeerAnswer)>) -> BTreeMap<ReplicaId, PeerAnswer> {
        answers
            .into_iter()
            .map(|(id, a)| (ReplicaId(id), a))
            .collect()
    }

    fn local(node_id: u64, members: &[u64], has_raft_state: bool, marker: bool) -> Local {
        Local {
            node_id: ReplicaId(node_id),
            members: ids(members),
            has_raft_state,
            marker,
            join: false,
        }
    }

    fn joining(node_id: u64, members: &[u64]) -> Local {
        Local {
            join: true,
            ..local(node_id, members, false, false)
        }
    }

    fn wait(answered: &[u64], auth_refused: &[u64]) -> Decision {
        Decision::Wait {
            answered: ids(answered),
            auth_refused: ids(auth_refused),
        }
    }

    fn wiped(formed: &[u64]) -> Decision {
        Decision::Refuse {
            reason: RefuseReason::WipedAfterFormation {
                formed_peers: ids(formed),
            },
        }
    }

    /// (what the case is, this replica, the peers' answers, the decision).
    type Case = (&'static str, Local, Vec<(u64, PeerAnswer)>, Decision);

    #[test]
    fn formation_decide_table() {
        let m3 = [1, 2, 3];
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("raft state on disk: admitted before anyone is asked",
             local(2, &m3, true, false), vec![], Decision::Admit),
            ("raft state on disk wins over any answers, even formed peers and no marker",
             local(1, &m3, true, false), vec![(2, FORMED), (3, PRISTINE)], Decision::Admit),
            ("raft state on disk and a stale marker: still just admitted",
             local(3, &m3, true, true), vec![(1, PRISTINE), (2, PRISTINE)], Decision::Admit),
            ("all pristine and we are lowest: initialize with every member",
             local(1, &m3, false, false), vec![(2, PRISTINE), (3, PRISTINE)],
             Decision::Initialize { members: ids(&m3) }),
            ("all pristine and we are not lowest: wait for the lowest to form",
             local(2, &m3, false, true), vec![(1, PRISTINE), (3, PRISTINE)], wait(&[1, 3], &[])),
            ("lowest, nothing asked yet: wait",
             local(1, &m3, false, false), vec![], wait(&[], &[])),
            ("lowest, one peer unreachable: wait, never form without everyone",
             local(1, &m3, false, false), vec![(2, PRISTINE), (3, Silent)], wait(&[2], &[])),
            ("lowest, a peer missing from the answers counts as silent",
             local(1, &m3, false, false), vec![(2, PRISTINE)], wait(&[2], &[])),
            ("lowest, one peer refuses our token: wait and name it",
             local(1, &m3, false, false), vec![(2, AuthRefused), (3, PRISTINE)], wait(&[3], &[2])),
            ("lowest, a peer could not write its marker: it is not counted as pristine",
             local(1, &m3, false, false), vec![(2, PRISTINE), (3, UNMARKED)], wait(&[2, 3], &[])),
            ("formed peer and our marker: join",
             local(2, &m3, false, true), vec![(1, FORMED), (3, PRISTINE)],
             Decision::Join { formed_peers: ids(&[1]) }),
            ("formed peers and our marker, others silent: join",
             local(3, &m3, false, true), vec![(1, FORMED), (2, FORMED)],
             Decision::Join { formed_peers: ids(&[1, 2]) }),
            ("formed peer and no marker (wiped disk): refuse",
             local(2, &m3, false, false), vec![(1, FORMED), (3, FORMED)], wiped(&[1, 3])),
            ("wiped lowest node: refuse, never re-initialize",
             local(1, &m3, false, false), vec![(2, FORMED), (3, FORMED)], wiped(&[2, 3])),
            ("wiped node with one formed peer and the rest silent: refuse at once",
             local(3, &m3, false, false), vec![(1, Silent), (2, FORMED)], wiped(&[2])),
            ("mixed answers, one formed, no marker: the formed peer decides, refuse",
             local(1, &m3, false, false), vec![(2, FORMED), (3, PRISTINE)], wiped(&[2])),
            ("mixed answers without a formed peer: wait",
             local(3, &m3, false, false), vec![(1, AuthRefused), (2, Silent)], wait(&[], &[1])),
            ("single-member cluster, pristine: initialize alone",
             local(7, &[7], false, false), vec![], Decision::Initialize { members: ids(&[7]) }),
            ("single-member cluster with state: admit",
             local(7, &[7], true, false), vec![], Decision::Admit),
            ("answers for ourselves or non-members are ignored",
             local(1, &m3, false, false),
             vec![(1, FORMED), (9, FORMED), (2, PRISTINE), (3, PRISTINE)],
             Decision::Initialize { members: ids(&m3) }),
            ("five members, lowest hears all four pristine: initialize",
             local(10, &[10, 20, 30, 40, 50], false, false),
             vec![(20, PRISTINE), (30, PRISTINE), (40, PRISTINE), (50, PRISTINE)],
             Decision::Initialize { members: ids(&[10, 20, 30, 40, 50]) }),
            ("lowest by id, not by order of configuration or answers",
             local(5, &[9, 5, 7], false, false), vec![(9, PRISTINE), (7, PRISTINE)],
             Decision::Initialize { members: ids(&[5, 7, 9]) }),
        ];
        for (name, own, answers, want) in cases {
            let answers = answers_by_id(answers);
            assert_eq!(decide(&own, &answers), want, "{name}");
        }
    }

    #[test]
    fn join_mode_decide_table() {
        use Standing::{Learner, Removed, Voter};
        // A new replica 4 whose config lists the three members and itself.
        let m4 = [1, 2, 3, 4];
        let refuse = |reason| Decision::Refuse { reason };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("join mode with raft state: admitted like any replica",
             Local { has_raft_state: true, ..joining(4, &m4) }, vec![], Decision::Admit),
            ("a majority formed and none knows us: join as new",
             joining(4, &m4), vec![(1, FORMED), (2, FORMED), (3, Silent)],
             Decision::JoinAsNew { formed_peers: ids(&[1, 2]) }),
            ("already added as a learner (add before start): join as new",
             joining(4, &m4), vec![(1, formed(Learner)), (2, FORMED), (3, formed(Learner))],
             Decision::JoinAsNew { formed_peers: ids(&[1, 2, 3]) }),
            ("only one of three peers formed: wait for a majority",
             joining(4, &m4), vec![(1, FORMED), (2, Silent), (3, AuthRefused)], wait(&[1], &[3])),
            ("nothing asked yet: wait",
             joining(4, &m4), vec![], wait(&[], &[])),
            ("every peer pristine: never initialize, never take part in formation",
             joining(1, &[1, 2, 3]), vec![(2, PRISTINE), (3, PRISTINE)], wait(&[2, 3], &[])),
            ("alone in its config: never initializes a cluster of one",
             joining(7, &[7]), vec![], wait(&[], &[])),
            ("a peer knows our id as a voter: a wiped member, refuse",
             joining(4, &m4), vec![(1, FORMED), (2, formed(Voter)), (3, FORMED)],
             refuse(RefuseReason::JoinAsVoter { peers: ids(&[2]) })),
            ("a single peer that knows us as a voter is enough to refuse",
             joining(4, &m4), vec![(1, formed(Voter)), (2, Silent), (3, Silent)],
             refuse(RefuseReason::JoinAsVoter { peers: ids(&[1]) })),
            ("an existing member id in join mode with a wiped disk: refuse",
             joining(2, &[1, 2, 3]), vec![(1, formed(Voter)), (3, formed(Voter))],
             refuse(RefuseReason::JoinAsVoter { peers: ids(&[1, 3]) })),
            ("a removed id: refuse, even where others know it as a voter",
             joining(3, &[1, 2, 3]), vec![(1, formed(Removed)), (2, formed(Voter))],
             refuse(RefuseReason::JoinAsRemoved { peers: ids(&[1]) })),
            ("five members, two of four peers formed: not a majority, wait",
             joining(6, &[1, 2, 3, 4, 6]), vec![(1, FORMED), (2, FORMED)], wait(&[1, 2], &[])),
            ("five members, three of four peers formed: join",
             joining(6, &[1, 2, 3, 4, 6]), vec![(1, FORMED), (2, FORMED), (3, FORMED)],
             Decision::JoinAsNew { formed_peers: ids(&[1, 2, 3]) }),
        ];
        for (name, own, answers, want) in cases {
            let answers = answers_by_id(answers);
            assert_eq!(decide(&own, &answers), want, "{name}");
        }
    }

    #[test]
    fn without_join_mode_a_new_id_beside_a_formed_cluster_is_refused() {
        // The wiped-disk protection is unchanged: a pristine replica without the marker and
        // without join mode never enters a formed cluster.
        let own = local(4, &[1, 2, 3, 4], false, false);
        let answers = answers_by_id(vec![(1, FORMED), (2, FORMED), (3, FORMED)]);
        assert_eq!(decide(&own, &answers), wiped(&[1, 2, 3]));
    }

    #[test]
    fn join_refusals_explain_themselves() {
        let msg =
            RefuseReason::JoinAsVoter { peers: ids(&[1]) }.explain(ReplicaId(2), Path::new("/d"));
        assert!(msg.contains("as a voter"), "{msg}");
        assert!(msg.contains("new id"), "{msg}");
        let msg =
            RefuseReason::JoinAsRemoved { peers: ids(&[1]) }.explain(ReplicaId(2), Path::new("/d"));
        assert!(msg.contains("removed"), "{msg}");
    }

    #[test]
    fn formation_decide_is_repeatable_round_by_round() {
        // The node that is not lowest, through a formation: wait, then (marker written when the
        // lowest asked) join once the lowest has formed.
        let mut own = local(2, &[1, 2, 3], false, false);
        let mut answers = answers_by_id(vec![(1, PRISTINE), (3, PRISTINE)]);
        assert_eq!(decide(&own, &answers), wait(&[1, 3], &[]));
        assert_eq!(
            decide(&own, &answers),
            wait(&[1, 3], &[]),
            "same inputs, same answer"
        );
        own.marker = true;
        answers.insert(ReplicaId(1), FORMED);
        assert_eq!(
            decide(&own, &answers),
            Decision::Join {
                formed_peers: ids(&[1])
            }
        );
    }

    #[test]
    fn formation_refusal_explains_itself() {
        let reason = RefuseReason::WipedAfterFormation {
            formed_peers: ids(&[1, 3]),
        };
        let msg = reason.explain(ReplicaId(2), Path::new("/var/lib/storcon"));
        assert!(msg.starts_with("refusing to bootstrap: node 2 has no Raft state in /var/lib/storcon, but peer(s) {1, 3} already belong to a formed cluster"), "{msg}");
        assert!(msg.contains("wiped or replaced"), "{msg}");
        assert!(msg.contains("new node id"), "{msg}");
    }

    #[test]
    fn formation_peer_answer_from_status() {
        let mut s = FormationStatus {
            node_id: ReplicaId(3),
            pristine: true,
            initialized: false,
            voters: vec![],
            learners: vec![],
            removed: vec![],
        };
        assert_eq!(PeerAnswer::from_status(&s, ReplicaId(1)), PRISTINE);
        s.pristine = false;
        s.initialized = true;
        s.voters = vec![ReplicaId(1), ReplicaId(3)];
        s.learners = vec![ReplicaId(4)];
        s.removed = vec![ReplicaId(2)];
        let me = |id| match PeerAnswer::from_status(&s, ReplicaId(id)) {
            PeerAnswer::Status { me, .. } => me,
            other => panic!("{other:?}"),
        };
        assert_eq!(me(1), Standing::Voter);
        assert_eq!(me(4), Standing::Learner);
        assert_eq!(me(2), Standing::Removed);
        assert_eq!(me(5), Standing::Stranger);
    }
}
