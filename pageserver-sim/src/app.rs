//! Shared handler state: one lock around the simulator's state, its store and its history, so
//! every request is one serial transaction (decide, persist, record, publish, answer).
//!
//! Term fencing lives here too: [`App::begin`] checks `x-storcon-term` under the same lock the
//! request's change is made under, so a request from a deposed controller can never slip in
//! after one from its successor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::ApiError;
use crate::history::{Event, History};
use crate::ids::TenantShardId;
use crate::model::{DownloadClock, SimState};
use crate::remote::{RemoteStorage, Upload, uploads};
use crate::store::{Change, Store};
use crate::upcall::Controller;
use crate::wire::{SimBehaviour, SplitBehaviour};

pub const TERM_HEADER: &str = "x-storcon-term";

/// How long a deletion waits for the controller to validate before keeping the data. The state
/// lock is held meanwhile, which is safe: the controller's validate never calls pageservers.
const VALIDATE_DEADLINE: Duration = Duration::from_secs(5);

pub struct App {
    pub node_id: u64,
    controller: Controller,
    inner: Mutex<Inner>,
    /// Fault injection for splits; not persisted (tests set it per run).
    split: StdMutex<SplitBehaviour>,
    behaviour: StdMutex<SimBehaviour>,
    pub remote: RemoteStorage,
    /// Deletions accepted (202) whose remote part still runs. Not persisted: after a restart
    /// the controller's next delete starts what is left again.
    deleting: StdMutex<BTreeSet<Deletion>>,
    /// Secondary downloads under way: when each started (on `download_clock`) and the layers
    /// it held then.
    downloads: StdMutex<HashMap<TenantShardId, (u64, u64)>>,
    /// Download time, which stands still while `secondary_downloads_paused` is set.
    download_clock: StdMutex<DownloadClock>,
    /// The origin of `download_clock`'s times.
    started: tokio::time::Instant,
    /// When each location was last attached in a new generation (its catch-up starts then).
    attached_at: StdMutex<HashMap<TenantShardId, tokio::time::Instant>>,
}

/// A deletion in progress: a tenant (a shard, or with the unsharded id every shard) or a
/// timeline of a shard.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deletion {
    Tenant(TenantShardId),
    Timeline(TenantShardId, String),
}

struct Inner {
    state: SimState,
    store: Store,
    history: History,
}

/// A request holding the state lock. Dropping it without `commit` changes nothing.
pub struct Txn<'a> {
    inner: MutexGuard<'a, Inner>,
    app: &'a App,
    term: Option<u64>,
}

impl App {
    pub fn new(
        node_id: u64,
        state: SimState,
        store: Store,
        history: History,
        controller: Controller,
        remote: RemoteStorage,
        (split, behaviour): (SplitBehaviour, SimBehaviour),
    ) -> Self {
        App {
            node_id,
            controller,
            inner: Mutex::new(Inner {
                state,
                store,
                history,
            }),
            split: StdMutex::new(split),
            behaviour: StdMutex::new(behaviour),
            remote,
            deleting: StdMutex::new(BTreeSet::new()),
            downloads: StdMutex::new(HashMap::new()),
            download_clock: StdMutex::new(DownloadClock::new(
                0,
                behaviour.secondary_downloads_paused,
            )),
            started: tokio::time::Instant::now(),
            attached_at: StdMutex::new(HashMap::new()),
        }
    }

    /// Takes the state lock for a request of `kind`, fencing it by its term: a lower term than
    /// any seen is refused (409, recorded); a higher one is persisted before going on.
    /// Handlers call it before parsing the body, so a stale controller's request is refused and
    /// recorded whatever its body.
    pub async fn begin(
        &self,
        headers: &HeaderMap,
        kind: &'static str,
        id: Option<TenantShardId>,
    ) -> Result<Txn<'_>, ApiError> {
        let term = header_term(headers)?;
        let mut inner = self.inner.lock().await;
        if let Some(term) = term {
            match inner.state.max_term {
                Some(max) if term < max => {
                    let reason = format!("term {term} is lower than term {max} seen before");
                    let mut event = Event::new(kind, id, Some(term));
                    event.reason = Some(reason.clone());
                    inner.history.append(vec![event]).await?;
                    return Err(ApiError::Conflict(reason));
                }
                Some(max) if term == max => {}
                _ => {
                    // Changed in place (no copy of every location), undone if not durable.
                    let inner = &mut *inner;
                    let before = inner.state.max_term.replace(term);
                    let change = Change::MaxTerm { value: Some(term) };
                    if let Err(e) = inner.store.save_changes(vec![change], &inner.state).await {
                        inner.state.max_term = before;
                        return Err(e.into());
                    }
                    tracing::info!("highest controller term is now {term}");
                }
            }
        }
        Ok(Txn {
            inner,
            app: self,
            term,
        })
    }

    pub fn split_behaviour(&self) -> SplitBehaviour {
        *self.split.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_split_behaviour(&self, behaviour: SplitBehaviour) {
        *self.split.lock().unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    pub fn behaviour(&self) -> SimBehaviour {
        *self.behaviour.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_behaviour(&self, behaviour: SimBehaviour) {
        let mut current = self.behaviour.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now_ms();
        self.download_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_paused(behaviour.secondary_downloads_paused, now);
        *current = behaviour;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Download time now (see [`DownloadClock`]).
    fn download_time(&self) -> u64 {
        let now = self.now_ms();
        self.download_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .at(now)
    }

    /// Download time since `start` (a time `download_started` returned).
    pub fn download_elapsed_ms(&self, start: u64) -> u64 {
        self.download_time().saturating_sub(start)
    }

    pub fn is_deleting(&self, what: &Deletion) -> bool {
        self.deleting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(what)
    }

    /// Marks `what` as running; false if it already was.
    pub fn start_deleting(&self, what: Deletion) -> bool {
        self.deleting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(what)
    }

    pub fn done_deleting(&self, what: &Deletion) {
        self.deleting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(what);
    }

    /// The download of `id` under way, started now with `held` layers if none was: its start
    /// on the download clock and the layers it started with.
    pub fn download_started(&self, id: TenantShardId, held: u64) -> (u64, u64) {
        let now = self.download_time();
        *self
            .downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert((now, held))
    }

    pub fn note_attached(&self, id: TenantShardId) {
        self.attached_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tokio::time::Instant::now());
    }

    /// How much longer `id` takes to catch up (nothing for a location attached before this
    /// process started: it had all the time it needed).
    pub fn catch_up_left(&self, id: TenantShardId) -> std::time::Duration {
        let needed = std::time::Duration::from_millis(self.behaviour().catch_up_ms);
        self.attached_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map_or(std::time::Duration::ZERO, |at| {
                needed.saturating_sub(at.elapsed())
            })
    }

    pub fn download_running(&self, id: TenantShardId) -> Option<(u64, u64)> {
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    pub fn download_done(&self, id: TenantShardId) {
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Appends events outside a request (background deletions), as accepted.
    pub async fn record(&self, mut events: Vec<Event>) -> io::Result<()> {
        for event in &mut events {
            event.accepted = true;
        }
        self.inner.lock().await.history.append(events).await
    }

    /// The history file; read under the lock so no half-appended batch is seen.
    pub async fn history(&self) -> io::Result<Vec<Value>> {
        self.inner.lock().await.history.read_all().await
    }

    pub async fn snapshot(&self) -> SimState {
        self.inner.lock().await.state.clone()
    }
}

impl Txn<'_> {
    pub fn state(&self) -> &SimState {
        &self.inner.state
    }

    /// A history event carrying this request's term.
    pub fn event(&self, kind: &'static str, id: Option<TenantShardId>) -> Event {
        Event::new(kind, id, self.term)
    }

    /// Persists `next`, publishes it, records `events` as accepted, then uploads to remote
    /// storage what the attached locations changed (timelines, and heatmaps where the tenant
    /// config asks for them), as a pageserver uploads after its local change.
    pub async fn commit(&mut self, next: SimState, mut events: Vec<Event>) -> Result<(), ApiError> {
        let inner = &mut *self.inner;
        let uploads = uploads(&inner.state, &next, &crate::now());
        inner.store.save(&inner.state, &next).await?;
        inner.state = next;
        for event in &mut events {
            event.accepted = true;
        }
        self.inner.history.append(events).await?;
        self.upload(uploads).await
    }

    pub async fn upload(&self, uploads: Vec<Upload>) -> Result<(), ApiError> {
        for upload in uploads {
            let remote = &self.app.remote;
            let done = match &upload {
                Upload::Timeline(id, name, tl) => remote.put_timeline(*id, name, tl).await,
                Upload::Heatmap(id, heatmap) => remote.put_heatmap(*id, heatmap).await,
            };
            done.map_err(|e| ApiError::Internal(format!("remote storage: {e}")))?;
        }
        Ok(())
    }

    /// Commits on `Ok`; on `Err` records `events` as refused with the error as reason.
    pub async fn conclude(
        &mut self,
        next: SimState,
        mut events: Vec<Event>,
        outcome: Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        match outcome {
            Ok(()) => self.commit(next, events).await,
            Err(e) => {
                for event in &mut events {
                    event.accepted = false;
                    event.reason = Some(e.msg().to_owned());
                }
                self.inner.history.append(events).await?;
                Err(e)
            }
        }
    }

    /// Asks the controller whether each `(shard, generation)` is still current and records
    /// every answer. `Some(true)` is the only answer that allows deleting data; an omitted
    /// shard or an unreachable controller gives `None`.
    pub async fn validate(
        &mut self,
        shards: &[(TenantShardId, u32)],
    ) -> Result<BTreeMap<TenantShardId, Option<bool>>, ApiError> {
        if shards.is_empty() {
            return Ok(BTreeMap::new());
        }
        let answer = self
            .app
            .controller
            .validate(shards, VALIDATE_DEADLINE)
            .await;
        let failure = answer.as_ref().err().map(|e| e.to_string());
        if let Some(why) = &failure {
            tracing::warn!("validate failed, keeping data: {why}");
        }
        let answer = answer.unwrap_or_default();
        let mut result = BTreeMap::new();
        let mut events = Vec::new();
        for &(id, generation) in shards {
            let valid = answer.get(&id).copied();
            result.insert(id, valid);
            let mut event = self.event("validate", Some(id));
            event.generation = Some(generation);
            event.valid = Some(valid);
            event.accepted = valid == Some(true);
            event.reason.clone_from(&failure);
            events.push(event);
        }
        self.inner.history.append(events).await?;
        Ok(result)
    }
}

fn header_term(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(TERM_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("malformed {TERM_HEADER} header")))
}
