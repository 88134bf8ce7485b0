//! The near cache's invalidations on Redis: server-assisted client-side caching in broadcast
//! mode (`CLIENT TRACKING ON BCAST PREFIX <namespace>:{ PREFIX <namespace>:v:`), one dedicated
//! RESP3 connection per master, turned into [`Invalidation`]s for the subscribed near caches
//! ([`Store::subscribe_invalidations`](cache_core::store::Store::subscribe_invalidations)).
//!
//! - **Broadcast mode**: the server pushes every change of a key under the entity prefix
//!   (`<namespace>:{`) or the computed values' (`<namespace>:v:`, cached responses among
//!   them; tag sets, purge marks and locks are left out), whoever made it, without
//!   remembering which keys this client read: no server memory per key read, and no question
//!   of which keys a Lua script read. Writes are rare next to reads; a lease key's change is
//!   the one pushed change that means nothing here.
//! - **Applied where it is read**: the push handler runs on the connection's reader, so an
//!   invalidation is applied before anything later on that connection is read.
//! - **Vouching**: the near caches hear `set_tracking(true)` only once every master's
//!   connection has tracking on, and `false` the moment one is lost (the reader sees the
//!   socket close), fails its health check (`CLIENT TRACKINGINFO` every second), a fence goes
//!   unanswered, or the cluster's masters change (`CLUSTER NODES`, read every second, counts
//!   masters that own no slot yet, so a new master is tracked before it takes any).
//! - **Fences** ([`Tracking::sync`]): a key written on each master through its tracking
//!   connection comes back as an invalidation after every change made before it.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak},
    time::Duration,
};

use cache_core::{
    RecordId,
    store::{Invalidation, InvalidationSink},
};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError,
    RedisResult, Value, aio::MultiplexedConnection,
};
use tokio::sync::{Notify, oneshot};

use crate::connection::slot_of;

/// How often each tracking connection is checked, and the cluster's masters read.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Pause between two attempts to (re)establish tracking: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a fence key lives (it is only written to be pushed back).
const FENCE_TTL_MS: u64 = 10_000;
/// The hash tag fence keys start with, after the tracked prefix.
const FENCE_TAG: &str = "~near-fence";
/// The name of tracking connections, for `CLIENT LIST`.
pub(crate) const CONNECTION_NAME: &str = "model-cache-near";

/// A master, as tracking addresses it: `None` for the single server.
type Addr = Option<(String, u16)>;

/// How tracking connections are made.
#[derive(Clone)]
pub(crate) struct Source {
    /// The first URL's connection (credentials, database, TLS), in RESP3.
    base: ConnectionInfo,
    /// The cluster's seed nodes; `None` on one server.
    seeds: Option<Vec<(String, u16)>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Source {
    /// From the store's client for its first URL and, on a cluster, every URL given.
    pub(crate) fn new(
        first: &Client,
        cluster_urls: Option<&[String]>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let base = first.get_connection_info().clone();
        let redis = base.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let base = base.set_redis_settings(redis);
        let seeds = cluster_urls.map(|urls| {
            urls.iter()
                .filter_map(|url| {
                    match redis::IntoConnectionInfo::into_connection_info(url.as_str())
                        .ok()?
                        .addr()
                    {
                        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                            Some((host.clone(), *port))
                        }
                        _ => None,
                    }
                })
                .collect()
        });
        Self {
            base,
            seeds,
            connect_timeout,
            response_timeout,
        }
    }

    /// A client for `addr`: the first URL's settings, at that master's address.
    fn client(&self, addr: &Addr) -> RedisResult<Client> {
        let info = match (addr, self.base.addr()) {
            (None, _) => self.base.clone(),
            (
                Some((host, port)),
                ConnectionAddr::TcpTls {
                    insecure, tls_params, ..
                },
            ) => self.base.clone().set_addr(ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            }),
            (Some((host, port)), _) => self.base.clone().set_addr(ConnectionAddr::Tcp(host.clone(), *port)),
        };
        Client::open(info)
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }
}

/// The store's part of the near cache: its tracking connections and subscribed near caches.
/// Started by the first subscription; stopped when the store is dropped.
pub(crate) struct Tracking {
    shared: Arc<Shared>,
    source: Source,
    task: OnceLock<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking")
            .field("vouching", &self.shared.state().vouching)
            .finish_non_exhaustive()
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

struct Shared {
    /// `<namespace>:{`: the prefix tracked, which every entity key starts with.
    prefix: String,
    /// `<namespace>:v:`: the other prefix tracked, which every computed value's key starts with.
    value_prefix: String,
    /// `<namespace>:{~near-fence`.
    fence_prefix: String,
    buckets: u32,
    sinks: RwLock<Vec<Weak<dyn InvalidationSink>>>,
    state: Mutex<State>,
    /// Wakes the task: a connection was lost.
    wake: Notify,
    /// Fences waiting for their key to come back, by key.
    fences: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

#[derive(Default)]
struct State {
    masters: BTreeMap<Addr, Master>,
    /// Whether the sinks were told that every change is reported.
    vouching: bool,
    next_connection: u64,
    /// Whether the refusal of `CLIENT TRACKING` was logged since tracking last worked.
    refusal_logged: bool,
}

#[derive(Default)]
struct Master {
    connection: Option<Tracked>,
    /// The slot ranges it serves (a cluster's), for its fence key.
    slots: Vec<(u16, u16)>,
}

struct Tracked {
    id: u64,
    connection: MultiplexedConnection,
    /// Whether `CLIENT TRACKING ON` was answered.
    on: bool,
}

/// What a key under the tracked prefix means to the near cache.
#[derive(Debug, PartialEq, Eq)]
enum Meaning<'k> {
    Record {
        entity: Cow<'k, str>,
        id: &'k str,
    },
    Index {
        entity: Cow<'k, str>,
    },
    /// A computed value, by the key it was computed under.
    Value {
        key: Cow<'k, str>,
    },
    /// A lease, a fence, or no key of this layout: nothing the near cache holds.
    Nothing,
}

impl Tracking {
    pub(crate) fn new(namespace: &str, buckets: u32, source: Source) -> Self {
        let prefix = format!("{namespace}:{{");
        Self {
            shared: Arc::new(Shared {
                fence_prefix: format!("{prefix}{FENCE_TAG}"),
                prefix,
                value_prefix: format!("{namespace}:v:"),
                buckets,
                sinks: RwLock::default(),
                state: Mutex::default(),
                wake: Notify::new(),
                fences: Mutex::default(),
            }),
            source,
            task: OnceLock::new(),
        }
    }

    /// Adds a near cache and starts tracking if it was not started; `false` without a Tokio
    /// runtime to run it on.
    pub(crate) fn subscribe(&self, sink: Weak<dyn InvalidationSink>) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                reason = "no tokio runtime to track invalidations on",
                "near_cache_unsupported"
            );
            return false;
        };
        {
            let state = self.shared.state();
            let mut sinks = self.shared.sinks.write().unwrap_or_else(PoisonError::into_inner);
            sinks.retain(|s| s.strong_count() > 0);
            if let Some(live) = sink.upgrade() {
                live.set_tracking(state.vouching);
            }
            sinks.push(sink);
        }
        self.task.get_or_init(|| {
            let shared = Arc::clone(&self.shared);
            runtime.spawn(run(shared, self.source.clone()))
        });
        true
    }

    /// Reports the store's own write of records, once it returned: an instance reads its own
    /// writes without waiting for their push.
    pub(crate) fn records_changed<'a>(&self, entity: &str, ids: impl IntoIterator<Item = &'a RecordId> + Clone) {
        self.shared.each_sink(|sink| {
            for id in ids.clone() {
                sink.invalidate(Invalidation::Record {
                    entity,
                    id: id.as_str(),
                });
            }
        });
    }

    /// Reports the store's own change of an entity's index data.
    pub(crate) fn index_changed(&self, entity: &str) {
        self.shared
            .each_sink(|sink| sink.invalidate(Invalidation::Index { entity }));
    }

    /// Reports the store's own write or removal of the computed values under `keys` (their
    /// Redis key names), once it returned.
    pub(crate) fn value_keys_changed<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        for key in keys {
            self.shared.on_key(key.as_bytes());
        }
    }

    /// Reports the store's own flush.
    pub(crate) fn flushed(&self) {
        self.shared.each_sink(|sink| sink.invalidate(Invalidation::All));
    }

    /// Waits until every change made before the call has been applied to the near caches: a
    /// fence key written on each master through its tracking connection has come back. A
    /// master whose fence does not come back within the response timeout is taken as lost
    /// (the near caches empty until its tracking is back), so that when this returns nothing
    /// older than the call is answered either way.
    pub(crate) async fn sync(&self) {
        let timeout = self.source.response_timeout + Duration::from_secs(1);
        let fences: Vec<(Addr, u64, MultiplexedConnection, String)> = {
            let state = self.shared.state();
            if !state.vouching {
                return;
            }
            state
                .masters
                .iter()
                .filter_map(|(addr, master)| {
                    let tracked = master.connection.as_ref().filter(|t| t.on)?;
                    let key = self.shared.fence_key(addr.is_some(), &master.slots)?;
                    Some((addr.clone(), tracked.id, tracked.connection.clone(), key))
                })
                .collect()
        };
        futures::future::join_all(fences.into_iter().map(|(addr, id, connection, key)| async move {
            if !self.shared.fence(connection, key, timeout).await {
                self.shared.lost(&addr, id, "fence unanswered");
            }
        }))
        .await;
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn each_sink(&self, mut f: impl FnMut(&dyn InvalidationSink)) {
        let sinks = self.sinks.read().unwrap_or_else(PoisonError::into_inner);
        for sink in sinks.iter().filter_map(Weak::upgrade) {
            f(&*sink);
        }
    }

    /// Tells the sinks whether every change is reported, when that changed.
    fn vouch(&self, state: &mut State, vouching: bool, reason: &'static str) {
        if state.vouching == vouching {
            return;
        }
        state.vouching = vouching;
        self.each_sink(|sink| sink.set_tracking(vouching));
        if vouching {
            state.refusal_logged = false;
            tracing::info!(masters = state.masters.len(), "near_cache_tracking_on");
        } else {
            tracing::warn!(reason, "near_cache_tracking_lost");
        }
    }

    /// Connection `id` to `addr` is lost (or no longer trusted): everything is dropped until
    /// its tracking is back.
    fn lost(&self, addr: &Addr, id: u64, reason: &'static str) {
        let mut state = self.state();
        if let Some(master) = state.masters.get_mut(addr)
            && master.connection.as_ref().is_some_and(|t| t.id == id)
        {
            master.connection = None;
            self.vouch(&mut state, false, reason);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Handles a push of connection `id` to `addr`, on that connection's reader.
    fn on_push(&self, addr: &Addr, id: u64, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            Value::BulkString(key) => self.on_key(key),
                            // Not a key name as pushes carry them: assume the worst.
                            _ => self.each_sink(|sink| sink.invalidate(Invalidation::All)),
                        }
                    }
                }
                // A null: the database was flushed (`FLUSHALL`, `FLUSHDB`).
                _ => self.each_sink(|sink| sink.invalidate(Invalidation::All)),
            },
            PushKind::Disconnection => self.lost(addr, id, "connection closed"),
            _ => {}
        }
    }

    fn on_key(&self, key: &[u8]) {
        // Every key the store writes is UTF-8 (ids and encoded names are).
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        if key.starts_with(&self.fence_prefix) {
            let waiting = self.fences.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
            if let Some(waiting) = waiting {
                let _ = waiting.send(());
            }
            return;
        }
        match self.meaning(key) {
            Meaning::Record { entity, id } => self.each_sink(|sink| {
                sink.invalidate(Invalidation::Record { entity: &entity, id });
            }),
            Meaning::Index { entity } => {
                self.each_sink(|sink| sink.invalidate(Invalidation::Index { entity: &entity }))
            }
            Meaning::Value { key } => self.each_sink(|sink| sink.invalidate(Invalidation::Value { key: &key })),
            Meaning::Nothing => {}
        }
    }

    /// What `key` means, by the key layout (`KeyLayout`): `<namespace>:{<entity>[.<bucket>/<n>]}:
    /// <fingerprint>:<kind>[:...]`. Keys of another bucket count are another layout, which
    /// this store never reads.
    fn meaning<'k>(&self, key: &'k str) -> Meaning<'k> {
        if let Some(value) = key.strip_prefix(&self.value_prefix) {
            // `value_key`: each `:`-separated part encoded, the separators kept.
            let key = decode_component(value);
            if cache_core::keys::is_bookkeeping_value_key(&key) {
                return Meaning::Nothing;
            }
            return Meaning::Value { key };
        }
        let Some((tag, rest)) = key.strip_prefix(&self.prefix).and_then(|rest| rest.split_once('}')) else {
            return Meaning::Nothing;
        };
        let encoded = if self.buckets == 1 {
            tag
        } else {
            match tag
                .rsplit_once('.')
                .and_then(|(entity, split)| Some((entity, split.split_once('/')?.1)))
            {
                Some((entity, count)) if count.parse::<u32>().ok() == Some(self.buckets) => entity,
                _ => return Meaning::Nothing,
            }
        };
        let Some((_fingerprint, kind)) = rest.strip_prefix(':').and_then(|rest| rest.split_once(':')) else {
            return Meaning::Nothing;
        };
        let entity = decode_component(encoded);
        match kind.split_once(':') {
            // A record key holds the record or its tombstone.
            Some(("r", id)) => Meaning::Record { entity, id },
            Some(("lease", _)) => Meaning::Nothing,
            // The meta hash, id and sort zsets, tag sets, markers, epoch, sequence.
            _ => Meaning::Index { entity },
        }
    }

    /// A fence key in one of `slots` (on a cluster), `None` for a master without slots (it
    /// holds nothing to wait for).
    fn fence_key(&self, cluster: bool, slots: &[(u16, u16)]) -> Option<String> {
        let token = rand::random::<u64>();
        if !cluster {
            return Some(format!("{}}}:{token:016x}", self.fence_prefix));
        }
        (0u32..1_000_000).find_map(|n| {
            let tag = format!("{FENCE_TAG}.{n}");
            let slot = slot_of(tag.as_bytes());
            slots
                .iter()
                .any(|&(from, to)| (from..=to).contains(&slot))
                .then(|| format!("{}.{n}}}:{token:016x}", self.fence_prefix))
        })
    }

    /// Writes `key` through `connection` and waits for its invalidation: whether it came back.
    async fn fence(&self, mut connection: MultiplexedConnection, key: String, timeout: Duration) -> bool {
        let (sender, back) = oneshot::channel();
        self.fences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), sender);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(1).arg("PX").arg(FENCE_TTL_MS);
        let came_back = tokio::time::timeout(timeout, async {
            set.query_async::<()>(&mut connection).await.ok()?;
            back.await.ok()
        })
        .await;
        self.fences.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        matches!(came_back, Ok(Some(())))
    }

    /// One pass: the masters, the health of their tracking connections, connections for those
    /// without. Answers whether every master is tracked.
    async fn round(self: &Arc<Self>, source: &Source) -> bool {
        let masters = match &source.seeds {
            None => Ok(vec![(None, Vec::new())]),
            Some(seeds) => self.cluster_masters(source, seeds).await,
        };
        let masters = match masters {
            Ok(masters) => masters,
            Err(err) => {
                tracing::debug!(error = %err, "near_cache_topology_unknown");
                let mut state = self.state();
                self.vouch(&mut state, false, "cluster masters unknown");
                return false;
            }
        };
        self.reconcile(masters);
        self.check_health().await;
        let missing: Vec<Addr> = {
            let state = self.state();
            state
                .masters
                .iter()
                .filter(|(_, m)| m.connection.is_none())
                .map(|(addr, _)| addr.clone())
                .collect()
        };
        for addr in missing {
            if let Err(err) = self.connect(source, &addr).await {
                tracing::debug!(master = ?addr, error = %err, "near_cache_tracking_failed");
            }
        }
        let mut state = self.state();
        let all = state
            .masters
            .values()
            .all(|m| m.connection.as_ref().is_some_and(|t| t.on));
        if all {
            self.vouch(&mut state, true, "");
        }
        all
    }

    /// Takes the masters found: any change drops everything until each is tracked.
    fn reconcile(&self, found: Vec<(Addr, Vec<(u16, u16)>)>) {
        let mut state = self.state();
        let changed = state.masters.len() != found.len() || found.iter().any(|(a, _)| !state.masters.contains_key(a));
        if changed {
            if !state.masters.is_empty() {
                tracing::info!(masters = found.len(), "near_cache_topology_changed");
            }
            self.vouch(&mut state, false, "cluster masters changed");
            let mut masters = std::mem::take(&mut state.masters);
            for (addr, _) in &found {
                let kept = masters.remove(addr).unwrap_or_default();
                state.masters.insert(addr.clone(), kept);
            }
        }
        for (addr, slots) in found {
            if let Some(master) = state.masters.get_mut(&addr) {
                master.slots = slots;
            }
        }
    }

    /// `CLIENT TRACKINGINFO` on each tracking connection: one that fails or lost tracking is
    /// dropped.
    async fn check_health(&self) {
        let tracked: Vec<(Addr, u64, MultiplexedConnection)> = {
            let state = self.state();
            state
                .masters
                .iter()
                .filter_map(|(addr, m)| {
                    let t = m.connection.as_ref().filter(|t| t.on)?;
                    Some((addr.clone(), t.id, t.connection.clone()))
                })
                .collect()
        };
        let checks = tracked.into_iter().map(|(addr, id, mut connection)| async move {
            let info = redis::cmd("CLIENT")
                .arg("TRACKINGINFO")
                .query_async::<Value>(&mut connection)
                .await;
            let on = info.as_ref().is_ok_and(tracking_is_on);
            if !on {
                self.lost(&addr, id, "health check failed");
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Opens a tracking connection to `addr`.
    async fn connect(self: &Arc<Self>, source: &Source, addr: &Addr) -> RedisResult<()> {
        let id = {
            let mut state = self.state();
            state.next_connection += 1;
            state.next_connection
        };
        let weak = Arc::downgrade(self);
        let at = addr.clone();
        let config = source.config().set_push_sender(move |push: PushInfo| {
            match weak.upgrade() {
                Some(shared) => shared.on_push(&at, id, push),
                None => return Err(()),
            }
            Ok(())
        });
        let mut connection = source
            .client(addr)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        {
            // Installed before tracking is on, so that its loss is noticed from then on.
            let mut state = self.state();
            let Some(master) = state.masters.get_mut(addr) else {
                return Ok(());
            };
            master.connection = Some(Tracked {
                id,
                connection: connection.clone(),
                on: false,
            });
        }
        let started = async {
            // A name for operators (`CLIENT LIST`); an ACL refusing it refuses nothing else.
            let _ = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(CONNECTION_NAME)
                .query_async::<()>(&mut connection)
                .await;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(&self.prefix)
                .arg("PREFIX")
                .arg(&self.value_prefix)
                .query_async::<()>(&mut connection)
                .await
        }
        .await;
        let mut state = self.state();
        let Some(master) = state.masters.get_mut(addr) else {
            return Ok(());
        };
        match (started, &mut master.connection) {
            (Ok(()), Some(tracked)) if tracked.id == id => {
                tracked.on = true;
                Ok(())
            }
            // Lost meanwhile: the next pass connects again.
            (Ok(()), _) => Ok(()),
            (Err(err), _) => {
                if master.connection.as_ref().is_some_and(|t| t.id == id) {
                    master.connection = None;
                }
                if !err.is_io_error() && !state.refusal_logged {
                    state.refusal_logged = true;
                    tracing::warn!(master = ?addr, error = %err, "near_cache_tracking_refused");
                }
                Err(err)
            }
        }
    }

    /// The cluster's masters and their slots, from `CLUSTER NODES` on a tracking connection
    /// or, without one, on a seed.
    async fn cluster_masters(
        &self,
        source: &Source,
        seeds: &[(String, u16)],
    ) -> RedisResult<Vec<(Addr, Vec<(u16, u16)>)>> {
        let known: Vec<(Addr, MultiplexedConnection)> = {
            let state = self.state();
            state
                .masters
                .iter()
                .filter_map(|(addr, m)| Some((addr.clone(), m.connection.as_ref()?.connection.clone())))
                .collect()
        };
        let mut last = None;
        for (addr, mut connection) in known {
            match cluster_nodes(&mut connection).await {
                Ok(table) => return Ok(masters_in(&table, addr.as_ref().map(|(h, _)| h.as_str()))),
                Err(err) => last = Some(err),
            }
        }
        for (host, port) in seeds {
            let addr = Some((host.clone(), *port));
            let attempt = async {
                let mut connection = source
                    .client(&addr)?
                    .get_multiplexed_async_connection_with_config(&source.config())
                    .await?;
                cluster_nodes(&mut connection).await
            };
            match attempt.await {
                Ok(table) => return Ok(masters_in(&table, Some(host))),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Client, "no cluster node to ask"))))
    }
}

/// Keeps tracking up: a pass at once, then every [`CHECK_EVERY`] (or, while something is
/// missing, after a backoff), and at once when a connection is lost.
async fn run(shared: Arc<Shared>, source: Source) {
    let mut delay = RETRY_FIRST;
    loop {
        let wait = if shared.round(&source).await {
            delay = RETRY_FIRST;
            CHECK_EVERY
        } else {
            let wait = delay;
            delay = (delay * 2).min(RETRY_MAX);
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.wake.notified() => {}
        }
    }
}

async fn cluster_nodes(connection: &mut MultiplexedConnection) -> RedisResult<String> {
    redis::cmd("CLUSTER").arg("NODES").query_async(connection).await
}

/// The masters in a `CLUSTER NODES` table, and their slots; `asked` is the host of the node
/// that answered (a node that does not know its own address lists itself without a host).
fn masters_in(table: &str, asked: Option<&str>) -> Vec<(Addr, Vec<(u16, u16)>)> {
    let mut masters = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| matches!(*f, "fail" | "handshake" | "noaddr")) {
            continue;
        }
        let address = address.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let host = if host.is_empty() {
            asked.unwrap_or("127.0.0.1")
        } else {
            host
        };
        let slots = fields
            .iter()
            .skip(8)
            .filter(|range| !range.starts_with('['))
            .filter_map(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                Some((from.parse().ok()?, to.parse().ok()?))
            })
            .collect();
        masters.push((Some((host.to_owned(), port)), slots));
    }
    masters
}

/// Whether a `CLIENT TRACKINGINFO` answer says tracking is on.
fn tracking_is_on(info: &Value) -> bool {
    let flags = match info {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| {
                matches!(k, Value::BulkString(k) if k == b"flags")
                    || matches!(k, Value::SimpleString(k) if k == "flags")
            })
            .map(|(_, v)| v),
        _ => None,
    };
    let on =
        |v: &Value| matches!(v, Value::BulkString(f) if f == b"on") || matches!(v, Value::SimpleString(f) if f == "on");
    match flags {
        Some(Value::Array(flags) | Value::Set(flags)) => flags.iter().any(on),
        _ => false,
    }
}

/// The inverse of `cache_core::keys::encode_component`: `%XX` back to the byte.
fn decode_component(value: &str) -> Cow<'_, str> {
    if !value.contains('%') {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use cache_core::keys::encode_component;

    use super::*;

    fn shared(buckets: u32) -> Shared {
        let prefix = "mc:{".to_owned();
        Shared {
            fence_prefix: format!("{prefix}{FENCE_TAG}"),
            prefix,
            value_prefix: "mc:v:".to_owned(),
            buckets,
            sinks: RwLock::default(),
            state: Mutex::default(),
            wake: Notify::new(),
            fences: Mutex::default(),
        }
    }

    #[test]
    fn keys_mean_records_index_data_or_nothing() {
        let one = shared(1);
        assert_eq!(
            one.meaning("mc:{projects}:1a2b:r:recP1"),
            Meaning::Record {
                entity: "projects".into(),
                id: "recP1"
            }
        );
        for index in [
            "m",
            "ids",
            "epoch",
            "seq",
            "i:event:recE1",
            "s:points",
            "c:9f86d081884c7d65",
        ] {
            assert_eq!(
                one.meaning(&format!("mc:{{projects}}:1a2b:{index}")),
                Meaning::Index {
                    entity: "projects".into()
                },
                "{index}"
            );
        }
        assert_eq!(one.meaning("mc:{projects}:1a2b:lease:recP1"), Meaning::Nothing);
        assert_eq!(one.meaning("mc:v:http:x"), Meaning::Value { key: "http:x".into() });
        let odd_key = "http:GET /p?q=a b";
        assert_eq!(
            one.meaning(&crate::layout::value_key("mc", odd_key)),
            Meaning::Value { key: odd_key.into() }
        );
        assert_eq!(one.meaning("mc:tag:events%3ArecE1"), Meaning::Nothing, "tag sets");
        assert_eq!(one.meaning("mc:v:order:projects:recP1"), Meaning::Nothing, "watermarks");
        assert_eq!(
            one.meaning("mc:v:feed:outbox:position"),
            Meaning::Nothing,
            "feed positions"
        );
        assert_eq!(one.meaning("mc:lock:{mc:v:http:x}"), Meaning::Nothing, "locks");
        let odd = "odd:name {x}";
        assert_eq!(
            one.meaning(&format!("mc:{{{}}}:1a2b:r:rec1", encode_component(odd))),
            Meaning::Record {
                entity: odd.into(),
                id: "rec1"
            }
        );
        let four = shared(4);
        assert_eq!(
            four.meaning("mc:{projects.2/4}:1a2b:r:recP1"),
            Meaning::Record {
                entity: "projects".into(),
                id: "recP1"
            }
        );
        assert_eq!(
            four.meaning("mc:{projects.1/2}:1a2b:r:recP1"),
            Meaning::Nothing,
            "another layout"
        );
        assert_eq!(four.meaning("mc:{projects}:1a2b:r:recP1"), Meaning::Nothing);
    }

    #[test]
    fn fence_keys_land_in_the_masters_slots() {
        let s = shared(1);
        let key = s.fence_key(true, &[(5461, 10922)]).expect("a key");
        assert!(key.starts_with(&s.fence_prefix), "{key}");
        assert!((5461..=10922).contains(&slot_of(key.as_bytes())), "{key}");
        assert_eq!(s.fence_key(true, &[]), None);
        assert!(s.fence_key(false, &[]).is_some());
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let table = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1 1 connected
67ed 127.0.0.1:30002@40002 master - 0 1 2 connected 5461-10922
e7d1 :30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed]
292f 127.0.0.1:30003@40003 master,fail - 0 1 3 disconnected 10923-16383
6ec2 127.0.0.1:30005@40005 master - 0 1 4 connected
";
        let masters = masters_in(table, Some("10.0.0.1"));
        assert_eq!(
            masters,
            vec![
                (Some(("127.0.0.1".to_owned(), 30002)), vec![(5461, 10922)]),
                (Some(("10.0.0.1".to_owned(), 30001)), vec![(0, 5460)]),
                (Some(("127.0.0.1".to_owned(), 30005)), vec![]),
            ]
        );
    }

    #[test]
    fn components_decode() {
        for raw in ["plain", "a:b *", "100%", "é{}"] {
            assert_eq!(decode_component(&encode_component(raw)), raw);
        }
    }
}
