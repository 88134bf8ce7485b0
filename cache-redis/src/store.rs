//! [`RedisStore`]: the [`Store`] contract on Redis, Valkey or Redis Cluster.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    future::Future,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Order, RecordId,
    order::compare_scored,
    query::IndexQuery,
    schema::{EntitySchema, IndexEntries},
    store::{
        Availability, ComputeLock, ComputedLookup, ComputedWrite, DecodedCopy, FillToken, InvalidationSink, Lease,
        LockAttempt, LockWait, Lookup, QueryFill, QueryLookup, RecordWrite, RemoveMode, Store, StoreError, StoreResult,
        StoreStats, WriteMode, WriteOutcome, human_bytes,
    },
};
use futures::{
    StreamExt,
    future::{Either, try_join_all},
    stream::{self, BoxStream},
};

use crate::{
    CircuitBreakerConfig, CircuitState, CircuitStatus, KeyLayout, RedisStoreBuilder,
    breaker::{Admission, CircuitBreaker, Failure},
    connection::{Node, RedisConnection, in_slot_scope, is_unavailable, slot_of},
    flush::{Decision, FlushPlan},
    layout::{BucketKeys, tag_set_key, value_key},
    scripts::{
        Scripts, backend,
        entity::{Complete, Page, Put, PutMode, Query, Remove, RemoveHow, TakeLease},
        ms, re,
        value::{PutValue, RaiseWatermark, TagValue, UnlinkHeld, Unlinked},
    },
    tracking::{self, Tracking},
    wait::WaitConnections,
};

mod computed;

/// Keys per `SCAN` step when flushing or counting.
const SCAN_COUNT: usize = 1000;
/// Up to this many keys in a master's database, `stats` counts the namespace's keys exactly
/// (a few `SCAN` steps); above, it estimates them from a sample.
const EXACT_COUNT_BELOW: u64 = 10_000;
/// `SCAN` steps (of [`SCAN_COUNT`] keys) sampled per master for the estimate.
const SAMPLE_STEPS: usize = 2;

/// The [`Store`] on Redis / Valkey (one server) or Redis Cluster.
///
/// ```no_run
/// use cache_redis::RedisStore;
///
/// # async fn run() -> Result<(), cache_redis::ConnectError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379").namespace("mc").connect().await?;
/// let cluster = RedisStore::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .buckets(8)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// Cheap to clone: clones share the connection, the scripts and the circuit breaker.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConnection,
    namespace: String,
    buckets: u32,
    scripts: Scripts,
    breaker: CircuitBreaker,
    /// The most time one operation may take ([`RedisStoreBuilder::operation_budget`]).
    budget: Duration,
    /// Dedicated connections for waits on another instance's computed value.
    waits: Arc<WaitConnections>,
    /// The key layout of each schema (entity name, fingerprint) seen so far, built once: one
    /// per registered model.
    layouts: RwLock<HashMap<(&'static str, u64), Arc<KeyLayout>>>,
    /// The near caches' invalidations (`CLIENT TRACKING`), once one subscribed.
    tracking: Tracking,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("connection", &self.inner.conn)
            .field("namespace", &self.inner.namespace)
            .field("buckets", &self.inner.buckets)
            .field("circuit", &self.inner.breaker.status())
            .finish()
    }
}

/// How long a bucket's shared keys (index sets, meta, counters, markers) live: at least as
/// long as any record written with them, and at least the entity's TTL.
fn index_ttl(entity: &EntitySchema, writes: &[RecordWrite]) -> u64 {
    writes.iter().map(|w| ms(w.ttl)).fold(ms(entity.ttl), u64::max)
}

/// Groups item indices by the bucket of their id, buckets in order.
fn by_bucket<'a>(layout: &KeyLayout, ids: impl Iterator<Item = &'a RecordId>) -> BTreeMap<u32, Vec<usize>> {
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, id) in ids.enumerate() {
        groups.entry(layout.bucket_of(id)).or_default().push(i);
    }
    groups
}

/// The bodies of a page, or `None` when one of its records is gone.
fn bodies(rows: impl IntoIterator<Item = Option<Bytes>>) -> Option<Vec<Bytes>> {
    rows.into_iter().collect()
}

impl RedisStore {
    /// Starts configuring a store on one server: `redis://[user:password@]host:port[/db]`,
    /// `rediss://` (feature `tls`), `valkey://`, `valkeys://`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(vec![url.into()], false)
    }

    /// Starts configuring a store on a Redis Cluster, given some of its nodes (the others are
    /// discovered).
    pub fn cluster<I, S>(urls: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::new(urls.into_iter().map(Into::into).collect(), true)
    }

    /// Connects to one server with the defaults (namespace `mc`, one bucket).
    pub async fn connect(url: impl Into<String>) -> Result<Self, crate::ConnectError> {
        Self::builder(url).connect().await
    }

    pub(crate) fn from_parts(
        conn: RedisConnection,
        namespace: String,
        buckets: u32,
        tracking: tracking::Source,
        breaker: CircuitBreakerConfig,
        budget: Duration,
        waits: Arc<WaitConnections>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                tracking: Tracking::new(&namespace, buckets, tracking),
                namespace,
                buckets,
                scripts: Scripts::new(),
                breaker: CircuitBreaker::new(breaker),
                budget,
                waits,
                layouts: RwLock::default(),
            }),
        }
    }

    /// The key namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The number of buckets each entity is spread over.
    pub fn bucket_count(&self) -> u32 {
        self.inner.buckets
    }

    /// The key names of an entity (for tests, debugging and the docs). Built on first use and
    /// kept: every operation on the entity reads its key prefixes from it.
    pub fn key_layout(&self, entity: &EntitySchema) -> Arc<KeyLayout> {
        let schema = (entity.entity, entity.fingerprint());
        let layouts = &self.inner.layouts;
        if let Some(layout) = layouts.read().unwrap_or_else(PoisonError::into_inner).get(&schema) {
            return Arc::clone(layout);
        }
        let mut layouts = layouts.write().unwrap_or_else(PoisonError::into_inner);
        let layout = layouts
            .entry(schema)
            .or_insert_with(|| Arc::new(KeyLayout::new(&self.inner.namespace, entity, self.inner.buckets)));
        Arc::clone(layout)
    }

    /// The key of a computed value or cached response.
    pub fn value_key(&self, key: &str) -> String {
        value_key(&self.inner.namespace, key)
    }

    /// The underlying connection, for benchmarks (a raw `GET` on it is the physical limit a
    /// cache hit is compared with) and diagnostics. Commands on it bypass the circuit
    /// breakers and the operation budget; before the store has connected they fail at once.
    pub fn connection(&self) -> RedisConnection {
        self.inner.conn.unguarded()
    }

    /// Whether the store has connected to Redis (it connects in the background when Redis was
    /// down or hung at [`RedisStoreBuilder::connect`]).
    pub fn is_connected(&self) -> bool {
        self.inner.conn.is_connected()
    }

    /// On a cluster, the hash slots whose master was found unreachable and that refuse calls
    /// until their cool-down ends (0 on one server).
    pub fn unavailable_slots(&self) -> usize {
        self.inner.conn.slot_breakers().map_or(0, |s| s.open_slots())
    }

    /// The keys in the namespace, counted exactly: `SCAN`s every master's whole keyspace, so
    /// it takes as long as the database is large (about 1.5 s for 500,000 keys). For an
    /// operator's question, not for monitoring: [`Store::stats`] estimates instead.
    pub async fn exact_key_count(&self) -> StoreResult<u64> {
        self.guarded_bulk("exact_key_count", self.count_keys()).await
    }

    /// Waits until every change made in Redis before the call, by any instance, has reached
    /// the near caches over this store ([`Cache::near_cache`](cache_core::Cache::near_cache)):
    /// a fence key written on each master through its tracking connection has come back as an
    /// invalidation. A master whose fence does not come back in time is taken as lost, which
    /// empties the near caches until its tracking is back; so once this returns, no near cache
    /// over this store answers anything older than the call. Returns at once when no near
    /// cache is on. For an instance that must read what another just wrote (a test, a
    /// hand-off between services); reads do not need it otherwise.
    pub async fn sync_invalidations(&self) {
        self.inner.tracking.sync().await;
    }

    /// The circuit breaker's state and counters.
    pub fn circuit(&self) -> CircuitStatus {
        self.inner.breaker.status()
    }

    fn conn(&self) -> RedisConnection {
        self.inner.conn.clone()
    }

    /// Runs one operation through the circuit breaker, within the operation budget.
    async fn guarded<T>(&self, op: &'static str, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        self.run(op, Some(self.inner.budget), work).await
    }

    /// Runs a bulk operation (many round trips: a flush, a scan) through the circuit breaker;
    /// each round trip is bounded by the response timeout, not the whole by the budget.
    async fn guarded_bulk<T>(&self, op: &'static str, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        self.run(op, None, work).await
    }

    async fn run<T>(
        &self,
        op: &'static str,
        budget: Option<Duration>,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        if !self.inner.conn.is_connected() {
            // Not a failure of the breaker's: the background connector is on it, and the
            // store works as soon as it succeeds.
            return Err(StoreError::Refused("not connected to redis yet"));
        }
        let breaker = &self.inner.breaker;
        let admission = breaker.admit()?;
        let mut probe = ProbeGuard {
            breaker,
            armed: matches!(admission, Admission::Probe),
        };
        let probing = probe.armed;
        let started = Instant::now();
        let attempt = async {
            if probing {
                self.probe().await?;
            }
            work.await
        };
        // On a cluster, set when a failure was a slot's (its breaker has it), not the cluster's.
        let slot_scoped = self.inner.conn.is_cluster().then(|| Arc::new(AtomicBool::new(false)));
        let attempt = match &slot_scoped {
            Some(flag) => Either::Left(in_slot_scope(Arc::clone(flag), attempt)),
            None => Either::Right(attempt),
        };
        let result = match budget {
            Some(budget) => tokio::time::timeout(budget, attempt).await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "{op}: no answer within the operation budget ({} ms)",
                    budget.as_millis()
                )))
            }),
            None => attempt.await,
        };
        probe.armed = false;
        match &result {
            Ok(_) => breaker.success(),
            Err(err @ StoreError::Unavailable(_)) => {
                // Logged by the breaker (state changes and a periodic summary), not per call.
                tracing::debug!(op, error = %err, "redis_store_unavailable");
                if slot_scoped.is_some_and(|flag| flag.load(Ordering::Acquire)) {
                    // A slot's breaker has it. A probe got that far after its `PING` answered:
                    // the cluster is reachable.
                    if probing {
                        breaker.success();
                    }
                    return result;
                }
                let slow = budget.is_some_and(|b| started.elapsed() >= b / 2);
                breaker.failure(err, if slow { Failure::Slow } else { Failure::Fast });
            }
            Err(err) => {
                tracing::warn!(op, error = %err, "redis_store_error");
                breaker.success();
            }
        }
        result
    }

    /// The half-open probe: a `PING`, tried twice because the first command after an outage
    /// may only find the dead connection (and start the reconnect the second one uses).
    async fn probe(&self) -> StoreResult<()> {
        let mut last = None;
        for _ in 0..2 {
            match redis::cmd("PING").query_async::<()>(&mut self.conn()).await {
                Ok(()) => return Ok(()),
                Err(err) if is_unavailable(&err) => last = Some(err),
                Err(err) => return Err(re(err)),
            }
        }
        Err(last.map_or_else(|| StoreError::Unavailable("probe failed".to_owned()), re))
    }

    fn check_query(entity: &EntitySchema, query: &IndexQuery) -> StoreResult<()> {
        for filter in &query.filters {
            if entity.field(filter.field).is_none_or(|f| f.index.is_none()) {
                return Err(StoreError::Invalid(format!(
                    "{}.{} is not indexed",
                    entity.entity, filter.field
                )));
            }
        }
        if let Some(sort) = query.sort
            && entity.field(sort.field).is_none_or(|f| !f.sortable)
        {
            return Err(StoreError::Invalid(format!(
                "{}.{} is not sortable",
                entity.entity, sort.field
            )));
        }
        Ok(())
    }

    async fn query_bucket(
        &self,
        keys: &BucketKeys,
        query: &IndexQuery,
        index_ttl: u64,
        (offset, count): (usize, Option<usize>),
        ranked: bool,
    ) -> StoreResult<Page> {
        let call = Query {
            keys,
            marker: keys.marker(query),
            ordering: match query.sort {
                Some(sort) => keys.sort(sort.field),
                None => keys.ids().to_owned(),
            },
            tags: query.filters.iter().map(|f| keys.tag(f.field, &f.value)).collect(),
            index_ttl,
            descending: matches!(query.sort, Some(s) if s.order == Order::Desc),
            offset,
            count,
            ranked,
        };
        self.inner.scripts.call(&mut self.conn(), &call).await
    }

    async fn scan_node(
        &self,
        node: &Node,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(count);
        let reply = self.inner.conn.on_node(node, cmd).await.map_err(re)?;
        redis::from_redis_value(reply).map_err(|e| backend(e.to_string()))
    }

    /// Runs `per_page` on every page of keys matching `pattern` on every master (`SCAN`,
    /// never `KEYS`) and adds up what it answers.
    async fn sum_scan<F, Fut>(&self, pattern: &str, mut per_page: F) -> StoreResult<u64>
    where
        F: FnMut(Vec<String>) -> Fut,
        Fut: Future<Output = StoreResult<u64>>,
    {
        let mut sum = 0;
        for node in self.inner.conn.masters().await.map_err(re)? {
            let mut cursor = 0;
            loop {
                let (next, keys) = self.scan_node(&node, cursor, pattern, SCAN_COUNT).await?;
                if !keys.is_empty() {
                    sum += per_page(keys).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(sum)
    }

    async fn unlink(&self, keys: &[String]) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        // On a cluster the client splits a multi-key UNLINK by slot and sums the answers.
        redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut self.conn())
            .await
            .map_err(re)
    }

    /// What each of `keys` (record keys) holds, by its first byte: one `GETRANGE key 0 0` each,
    /// pipelined, so one round trip whatever the bodies weigh. On a cluster a pipeline stays
    /// in one slot: one per slot, sent together.
    async fn held(&self, keys: &[String]) -> StoreResult<Vec<Held>> {
        self.per_slot(keys, Held::Nothing, |members| {
            let mut pipe = redis::pipe();
            for &i in members {
                pipe.cmd("GETRANGE").arg(&keys[i]).arg(0).arg(0);
            }
            async move {
                let firsts: Vec<Vec<u8>> = pipe.query_async(&mut self.conn()).await.map_err(re)?;
                Ok(firsts.iter().map(|first| Held::of(first)).collect())
            }
        })
        .await
    }

    /// Removes each of `keys` if it still holds what `selects[i]` lets it lose (`r` a record,
    /// `t` a tombstone, `rt` either): each key checked and removed in one step by a script,
    /// one call per slot, sent together. Answers what each held when removed.
    async fn unlink_held(&self, keys: &[String], selects: &[&'static str]) -> StoreResult<Vec<Unlinked>> {
        self.per_slot(keys, Unlinked::Kept, |members| {
            let keys: Vec<&str> = members.iter().map(|&i| keys[i].as_str()).collect();
            let selects: Vec<&'static str> = members.iter().map(|&i| selects[i]).collect();
            async move {
                let call = UnlinkHeld {
                    keys: &keys,
                    selects: &selects,
                };
                self.inner.scripts.call(&mut self.conn(), &call).await
            }
        })
        .await
    }

    /// Runs `work` on the positions of `keys` in each slot (all of them on a single server),
    /// every slot at once, and answers its answers in the order of `keys`: a pipeline or a
    /// script stays in one slot on a cluster.
    async fn per_slot<T, F, Fut>(&self, keys: &[String], unanswered: T, work: F) -> StoreResult<Vec<T>>
    where
        T: Clone,
        F: Fn(&[usize]) -> Fut,
        Fut: Future<Output = StoreResult<Vec<T>>>,
    {
        let cluster = self.inner.conn.is_cluster();
        let mut slots: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = if cluster { slot_of(key.as_bytes()) } else { 0 };
            slots.entry(slot).or_default().push(i);
        }
        let answers = try_join_all(slots.values().map(|members| work(members))).await?;
        let mut out = vec![unanswered; keys.len()];
        for (members, answer) in slots.values().zip(answers) {
            if answer.len() != members.len() {
                return Err(backend("a slot's keys were answered in the wrong number"));
            }
            for (&i, value) in members.iter().zip(answer) {
                out[i] = value;
            }
        }
        Ok(out)
    }

    /// Removes the keys of one `SCAN` page that `plan` selects; answers how many were logical
    /// keys. The records go first, then the epochs of their buckets (dropping every marker):
    /// a query is never answered complete from what the flush left, even if a fill marked it
    /// complete between the two. Record keys the pattern selects by what they hold (a record
    /// or a tombstone) are checked and removed in one step each (`unlink_held`), so that one
    /// rewritten since the `SCAN` goes only if it still holds what was selected: a flush of
    /// records never takes a delete's tombstone written meanwhile.
    async fn flush_page(&self, plan: &FlushPlan, keys: Vec<String>) -> StoreResult<u64> {
        let mut counted = Vec::new();
        let mut uncounted = Vec::new();
        let mut epochs = BTreeSet::new();
        // Record keys to read, and per key which of its contents the pattern selects.
        let mut ask = Vec::new();
        let mut selects = Vec::new();
        for key in keys {
            let count = match plan.decide(&key) {
                Decision::Keep => continue,
                Decision::Remove { counted, bucket } => {
                    if let Some(prefix) = bucket {
                        epochs.insert(format!("{prefix}:epoch"));
                    }
                    counted
                }
                Decision::ByContent {
                    record,
                    tombstone,
                    bucket,
                } => {
                    selects.push((record, tombstone, bucket.len()));
                    ask.push(key);
                    continue;
                }
            };
            if count {
                counted.push(key);
            } else {
                uncounted.push(key);
            }
        }
        let mut removed = 0;
        if !ask.is_empty() {
            let kinds: Vec<&'static str> = selects
                .iter()
                .map(|&(record, tombstone, _)| match (record, tombstone) {
                    (true, true) => "rt",
                    (true, false) => "r",
                    _ => "t",
                })
                .collect();
            let unlinked = self.unlink_held(&ask, &kinds).await?;
            for ((key, (_, _, bucket)), what) in ask.iter().zip(&selects).zip(unlinked) {
                if what == Unlinked::Record {
                    epochs.insert(format!("{}:epoch", &key[..*bucket]));
                }
                if what != Unlinked::Kept {
                    removed += 1;
                }
            }
        }
        let removed = removed + self.unlink(&counted).await?;
        uncounted.extend(epochs);
        self.unlink(&uncounted).await?;
        Ok(removed)
    }

    async fn count_keys(&self) -> StoreResult<u64> {
        let pattern = format!("{}:*", self.inner.namespace);
        self.sum_scan(&pattern, |keys| async move { Ok(keys.len() as u64) })
            .await
    }

    /// The keys in the namespace, for `stats`: exact on a master whose database is small,
    /// otherwise `DBSIZE` times the namespace's share of a sample of the keyspace (`SCAN`
    /// steps without `MATCH` walk the hash table, whose order has nothing to do with key
    /// names). Exact, too, when the sample shows that the namespace owns the database. A few
    /// round trips per master whatever the size, instead of a `SCAN` of everything.
    /// The namespace's keys, and whether they were counted exactly (every node small enough
    /// to scan) rather than estimated from a sample.
    async fn estimate_keys(&self) -> StoreResult<(u64, bool)> {
        let prefix = format!("{}:", self.inner.namespace);
        let pattern = format!("{prefix}*");
        let mut total = 0u64;
        let mut exact = true;
        for node in self.inner.conn.masters().await.map_err(re)? {
            let dbsize = self.inner.conn.on_node(&node, redis::cmd("DBSIZE")).await.map_err(re)?;
            let dbsize: u64 = redis::from_redis_value(dbsize).map_err(|e| backend(e.to_string()))?;
            if dbsize == 0 {
                continue;
            }
            if dbsize < EXACT_COUNT_BELOW {
                let mut cursor = 0;
                loop {
                    let (next, keys) = self.scan_node(&node, cursor, &pattern, SCAN_COUNT).await?;
                    total += keys.len() as u64;
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                continue;
            }
            exact = false;
            let (mut sampled, mut ours, mut cursor) = (0u64, 0u64, 0u64);
            for _ in 0..SAMPLE_STEPS {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("COUNT").arg(SCAN_COUNT);
                let reply = self.inner.conn.on_node(&node, cmd).await.map_err(re)?;
                let (next, keys): (u64, Vec<Vec<u8>>) =
                    redis::from_redis_value(reply).map_err(|e| backend(e.to_string()))?;
                sampled += keys.len() as u64;
                ours += keys.iter().filter(|k| k.starts_with(prefix.as_bytes())).count() as u64;
                cursor = next;
                if next == 0 {
                    break;
                }
            }
            total += if sampled == 0 || ours == sampled {
                dbsize
            } else {
                // Rounded to the nearest key; u128 so that the product cannot overflow.
                u64::try_from((u128::from(dbsize) * u128::from(ours) + u128::from(sampled) / 2) / u128::from(sampled))
                    .unwrap_or(u64::MAX)
            };
        }
        Ok((total, exact))
    }

    async fn server_info(&self) -> StoreResult<Vec<String>> {
        let nodes = self.inner.conn.masters().await.map_err(re)?;
        try_join_all(nodes.iter().map(|node| async move {
            let reply = self.inner.conn.on_node(node, redis::cmd("INFO")).await.map_err(re)?;
            redis::from_redis_value::<String>(reply).map_err(|e| backend(e.to_string()))
        }))
        .await
    }
}

/// Puts the breaker back to open when a probe's future is dropped before it finished.
struct ProbeGuard<'a> {
    breaker: &'a CircuitBreaker,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.abandon_probe();
        }
    }
}

/// Sums the `INFO` sections of every master into store stats.
fn stats_from_info(backend: &str, infos: &[String], total_keys: u64) -> StoreStats {
    let field = |name: &str| -> Option<u64> {
        let mut sum = None;
        for info in infos {
            let value = info
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(v) = value {
                sum = Some(sum.unwrap_or(0) + v);
            }
        }
        sum
    };
    let memory = field("used_memory");
    let memory_human = if infos.len() == 1 {
        infos[0]
            .lines()
            .find_map(|l| l.strip_prefix("used_memory_human:"))
            .map(|v| v.trim().to_owned())
    } else {
        memory.map(human_bytes)
    };
    StoreStats {
        backend: backend.to_owned(),
        total_keys,
        memory_used_bytes: memory,
        memory_used_human: memory_human,
        keyspace_hits: field("keyspace_hits"),
        keyspace_misses: field("keyspace_misses"),
        connected_clients: field("connected_clients"),
        evicted_keys: field("evicted_keys"),
        total_keys_exact: false,
    }
}

/// The first byte of a tombstone. A tombstone lives in its record's key (see `entity.lua`) and
/// starts with `!`, which no JSON text (a record's cached form) starts with: `!1` is a fill's
/// "not found", `!d|<version>|<at>` a delete the source reported, `!o|<version>|<at>` an
/// invalidated delete; anything else is a record.
pub(crate) const TOMBSTONE: u8 = b'!';

/// What a record key holds, as a lookup: a record answers with its body, a tombstone as one,
/// except an invalidated delete's (`!o|...`), which orders writes but answers no read.
fn lookup(value: Option<Bytes>) -> Lookup {
    match value {
        Some(value) if value.first() == Some(&TOMBSTONE) => {
            if value.starts_with(b"!o|") {
                Lookup::Miss
            } else {
                Lookup::Tombstone
            }
        }
        Some(body) => Lookup::Hit(body),
        None => Lookup::Miss,
    }
}

/// What a record key holds, told by its first byte (`GETRANGE key 0 0`: no body is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Nothing,
    Record,
    Tombstone,
}

impl Held {
    fn of(first: &[u8]) -> Self {
        match first.first() {
            None => Self::Nothing,
            Some(&TOMBSTONE) => Self::Tombstone,
            Some(_) => Self::Record,
        }
    }
}

/// Refuses a record body that would read as a tombstone. The cache writes JSON, which never
/// does; a body of another store implementer's making might.
fn check_bodies<'a>(writes: impl IntoIterator<Item = &'a RecordWrite>) -> StoreResult<()> {
    match writes.into_iter().find(|w| w.body.first() == Some(&TOMBSTONE)) {
        Some(write) => Err(StoreError::Invalid(format!(
            "the body of record {} starts with '!', which marks a tombstone: a cached form is JSON",
            write.id
        ))),
        None => Ok(()),
    }
}

impl RedisStore {
    /// `Store::get`'s work, not boxed: `get` and `get_with_copy` (a `Cache::get`) each box
    /// their future once, rather than one boxing the other's.
    async fn get_one(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        let layout = self.key_layout(entity);
        let keys = layout.keys_for(id);
        self.guarded("get", async {
            let value: Option<Bytes> = redis::cmd("GET")
                .arg(keys.record(id))
                .query_async(&mut self.conn())
                .await
                .map_err(re)?;
            Ok(lookup(value))
        })
        .await
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        self.get_one(entity, id).await
    }

    async fn get_with_copy(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<(Lookup, Option<DecodedCopy>)> {
        Ok((self.get_one(entity, id).await?, None))
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let layout = self.key_layout(entity);
        let mut cmd = redis::cmd("MGET");
        for id in ids {
            cmd.arg(layout.keys_for(id).record(id));
        }
        self.guarded("get_many", async {
            // One MGET; on a cluster the client splits it by slot (one command per bucket).
            let values: Vec<Option<Bytes>> = cmd.query_async(&mut self.conn()).await.map_err(re)?;
            if values.len() != ids.len() {
                return Err(backend("get_many: MGET answered the wrong number of values"));
            }
            Ok(values.into_iter().map(lookup).collect())
        })
        .await
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        let token = rand::random::<u64>();
        if ids.is_empty() {
            return Ok(Lease(token));
        }
        let layout = self.key_layout(entity);
        let groups = by_bucket(&layout, ids.iter());
        self.guarded("lease", async {
            try_join_all(groups.iter().map(|(&bucket, members)| {
                let call = TakeLease {
                    keys: layout.keys(bucket),
                    token,
                    ttl: ms(ttl),
                    ids: members.iter().map(|&i| &ids[i]).collect(),
                };
                async move { self.inner.scripts.call(&mut self.conn(), &call).await }
            }))
            .await?;
            Ok(Lease(token))
        })
        .await
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        check_bodies(writes)?;
        let layout = self.key_layout(entity);
        let ittl = index_ttl(entity, writes);
        let mode = match mode {
            WriteMode::Upsert => PutMode::Upsert,
            WriteMode::Fill(Lease(token)) => PutMode::Fill(token),
        };
        let groups = by_bucket(&layout, writes.iter().map(|w| &w.id));
        let written = self
            .guarded("put", async {
                let answers = try_join_all(groups.iter().map(|(&bucket, members)| {
                    let call = Put {
                        keys: layout.keys(bucket),
                        mode,
                        index_ttl: ittl,
                        records: members.iter().map(|&i| &writes[i]).collect(),
                    };
                    async move { self.inner.scripts.call(&mut self.conn(), &call).await }
                }))
                .await?;
                let mut out = vec![WriteOutcome::StaleVersion; writes.len()];
                for ((_, members), answer) in groups.iter().zip(answers) {
                    for (&i, outcome) in members.iter().zip(answer) {
                        out[i] = outcome;
                    }
                }
                Ok(out)
            })
            .await;
        // Whatever it answered (a timeout may come after the write), this instance's near
        // caches forget the records now rather than when the push arrives.
        self.inner
            .tracking
            .records_changed(entity.entity, writes.iter().map(|w| &w.id));
        written
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let layout = self.key_layout(entity);
        let ittl = index_ttl(entity, &[]);
        let how = match mode {
            RemoveMode::Invalidate => RemoveHow::Invalidate,
            RemoveMode::Tombstone(tombstone) => RemoveHow::Tombstone {
                ttl: ms(tombstone.ttl),
                version: tombstone.version,
                at: tombstone.at,
            },
            RemoveMode::FillTombstone { lease, ttl } => RemoveHow::FillTombstone {
                ttl: ms(ttl),
                token: lease.0,
            },
        };
        let groups = by_bucket(&layout, ids.iter());
        let removed = self
            .guarded("remove", async {
                let answers = try_join_all(groups.iter().map(|(&bucket, members)| {
                    let call = Remove {
                        keys: layout.keys(bucket),
                        how: how.clone(),
                        index_ttl: ittl,
                        ids: members.iter().map(|&i| &ids[i]).collect(),
                    };
                    async move { self.inner.scripts.call(&mut self.conn(), &call).await }
                }))
                .await?;
                let mut out = vec![None; ids.len()];
                for ((_, members), answer) in groups.iter().zip(answers) {
                    for (&i, previous) in members.iter().zip(answer) {
                        out[i] = previous;
                    }
                }
                Ok(out)
            })
            .await;
        self.inner.tracking.records_changed(entity.entity, ids);
        removed
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        Self::check_query(entity, query)?;
        let layout = self.key_layout(entity);
        let ittl = index_ttl(entity, &[]);
        self.guarded("query", async {
            if layout.bucket_count() == 1 {
                let page = self
                    .query_bucket(layout.keys(0), query, ittl, (query.offset, query.limit), false)
                    .await?;
                let token = FillToken(vec![page.seq]);
                return Ok(match page.rows.and_then(|rows| bodies(rows.bodies)) {
                    Some(page) => QueryLookup::Complete { page, token },
                    None => QueryLookup::Incomplete(token),
                });
            }
            // Every bucket answers its first offset + limit rows; merged in order, they hold
            // the page.
            let count = query.limit.map(|l| l.saturating_add(query.offset));
            let pages = try_join_all(
                layout
                    .all_keys()
                    .iter()
                    .map(|keys| self.query_bucket(keys, query, ittl, (0, count), true)),
            )
            .await?;
            let seqs: Vec<u64> = pages.iter().map(|p| p.seq).collect();
            let mut rows = Vec::new();
            for page in pages {
                match page.rows {
                    Some(page_rows) => rows.extend(page_rows.ranks.into_iter().zip(page_rows.bodies)),
                    None => return Ok(QueryLookup::Incomplete(FillToken(seqs))),
                }
            }
            let order = query.sort.map(|s| s.order);
            rows.sort_by(|a, b| compare_scored((a.0.1, a.0.0.as_str()), (b.0.1, b.0.0.as_str()), order));
            let page = rows
                .into_iter()
                .skip(query.offset)
                .take(query.limit.unwrap_or(usize::MAX))
                .map(|(_, body)| body);
            let token = FillToken(seqs);
            Ok(match bodies(page) {
                Some(page) => QueryLookup::Complete { page, token },
                None => QueryLookup::Incomplete(token),
            })
        })
        .await
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<QueryFill> {
        Self::check_query(entity, query)?;
        check_bodies(records)?;
        let layout = self.key_layout(entity);
        if token.0.len() != layout.bucket_count() as usize {
            // A token from another layout (or another store) can never be current here.
            return Ok(QueryFill::Refused);
        }
        // An empty result is a negative answer: its marker (and the tag sets it creates) live
        // the entity's negative lifetime; keys already there keep their longer one.
        let ittl = match records {
            [] => ms(entity.negative_ttl).min(index_ttl(entity, records)),
            _ => index_ttl(entity, records),
        };
        let groups = by_bucket(&layout, records.iter().map(|w| &w.id));
        let filled = self
            .guarded("complete_query", async {
                let answers = try_join_all((0..layout.bucket_count()).map(|bucket| {
                    let keys = layout.keys(bucket);
                    let call = Complete {
                        keys,
                        marker: keys.marker(query),
                        tags: query.filters.iter().map(|f| keys.tag(f.field, &f.value)).collect(),
                        // Every sort zset, not only the query's: the marker serves every order.
                        sorts: entity.sortable_fields().map(|f| keys.sort(f.name)).collect(),
                        token: token.0[bucket as usize],
                        index_ttl: ittl,
                        records: groups
                            .get(&bucket)
                            .map(Vec::as_slice)
                            .unwrap_or_default()
                            .iter()
                            .map(|&i| &records[i])
                            .collect(),
                    };
                    async move { self.inner.scripts.call(&mut self.conn(), &call).await }
                }))
                .await?;
                let mut forgotten = Vec::new();
                for answer in answers {
                    match answer {
                        Some(ids) => forgotten.extend(ids),
                        None => return Ok(QueryFill::Refused),
                    }
                }
                Ok(QueryFill::Completed { forgotten })
            })
            .await;
        let tracking = &self.inner.tracking;
        tracking.index_changed(entity.entity);
        tracking.records_changed(entity.entity, records.iter().map(|w| &w.id));
        if let Ok(QueryFill::Completed { forgotten }) = &filled {
            tracking.records_changed(entity.entity, forgotten);
        }
        filled
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        /// Where the scan is: masters left, the master being scanned and its cursor, ids
        /// found but not yet handed out.
        struct Scan {
            nodes: Option<std::vec::IntoIter<Node>>,
            node: Option<Node>,
            cursor: u64,
            exhausted: bool,
            failed: bool,
            pending: Vec<RecordId>,
        }
        let layout = self.key_layout(entity);
        let pattern = layout.record_pattern();
        let batch = batch.max(1);
        let start = Scan {
            nodes: None,
            node: None,
            cursor: 0,
            exhausted: false,
            failed: false,
            pending: Vec::new(),
        };
        stream::unfold(start, move |mut scan| {
            let layout = layout.clone();
            let pattern = pattern.clone();
            async move {
                if scan.failed {
                    return None;
                }
                if !scan.exhausted && scan.pending.len() < batch {
                    let step = self
                        .guarded_bulk("scan_ids", async {
                            if scan.nodes.is_none() {
                                scan.nodes = Some(self.inner.conn.masters().await.map_err(re)?.into_iter());
                            }
                            while !scan.exhausted && scan.pending.len() < batch {
                                let node = match scan.node.clone() {
                                    Some(node) => node,
                                    None => match scan.nodes.as_mut().and_then(Iterator::next) {
                                        Some(node) => {
                                            scan.node = Some(node.clone());
                                            scan.cursor = 0;
                                            node
                                        }
                                        None => {
                                            scan.exhausted = true;
                                            break;
                                        }
                                    },
                                };
                                let (next, keys) = self.scan_node(&node, scan.cursor, &pattern, batch).await?;
                                let (keys, ids): (Vec<String>, Vec<RecordId>) = keys
                                    .into_iter()
                                    .filter_map(|k| layout.record_id(&k).map(|id| (k, id)))
                                    .unzip();
                                // A record key may hold a tombstone (see `TOMBSTONE`): its id
                                // is not cached. Swept, it would cost an origin call and be
                                // tombstoned again, with a new lifetime, every sweep.
                                if !keys.is_empty() {
                                    let held = self.held(&keys).await?;
                                    scan.pending.extend(
                                        ids.into_iter()
                                            .zip(held)
                                            .filter(|(_, held)| *held == Held::Record)
                                            .map(|(id, _)| id),
                                    );
                                }
                                scan.cursor = next;
                                if next == 0 {
                                    scan.node = None;
                                }
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(err) = step {
                        scan.failed = true;
                        return Some((Err(err), scan));
                    }
                }
                if scan.pending.is_empty() {
                    return None;
                }
                let rest = scan.pending.split_off(batch.min(scan.pending.len()));
                let ids = std::mem::replace(&mut scan.pending, rest);
                Some((Ok(ids), scan))
            }
        })
        .boxed()
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        let plan = FlushPlan::new(&self.inner.namespace, pattern)?;
        let flush = self.sum_scan(plan.scan_pattern(), |keys| self.flush_page(&plan, keys));
        let flushed = self.guarded_bulk("flush", flush).await;
        self.inner.tracking.flushed();
        flushed
    }

    fn subscribe_invalidations(&self, sink: std::sync::Weak<dyn InvalidationSink>) -> bool {
        self.inner.tracking.subscribe(sink)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.guarded("ping", async {
            redis::cmd("PING").query_async::<()>(&mut self.conn()).await.map_err(re)
        })
        .await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.guarded("stats", async {
            let infos = self.server_info().await?;
            let (total_keys, exact) = self.estimate_keys().await?;
            let backend = if self.inner.conn.is_cluster() {
                "redis-cluster"
            } else {
                "redis"
            };
            Ok(StoreStats {
                total_keys_exact: exact,
                ..stats_from_info(backend, &infos, total_keys)
            })
        })
        .await
    }

    async fn exact_stats(&self) -> StoreResult<StoreStats> {
        let stats = self.stats().await?;
        Ok(StoreStats {
            total_keys: self.exact_key_count().await?,
            total_keys_exact: true,
            ..stats
        })
    }

    fn availability(&self) -> Availability {
        if !self.inner.conn.is_connected() {
            return Availability::Unavailable;
        }
        match self.inner.breaker.status().state {
            CircuitState::Closed => Availability::Available,
            CircuitState::Open => Availability::Unavailable,
            CircuitState::HalfOpen => Availability::Probing,
        }
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        let key = self.value_key(key);
        self.guarded("get_value", async {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut self.conn())
                .await
                .map_err(re)
        })
        .await
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        let key = self.value_key(key);
        let tag_sets: Vec<String> = tags.iter().map(|t| tag_set_key(&self.inner.namespace, t)).collect();
        let ttl = ms(ttl);
        let put = self
            .guarded("put_value", async {
                if !self.inner.conn.is_cluster() {
                    let call = PutValue {
                        key: &key,
                        tag_sets: &tag_sets,
                        value: value.as_ref(),
                        ttl,
                    };
                    return self.inner.scripts.call(&mut self.conn(), &call).await;
                }
                // On a cluster the value and each tag set live in their own slots.
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<()>(&mut self.conn())
                    .await
                    .map_err(re)?;
                try_join_all(tag_sets.iter().map(|set| async {
                    let call = TagValue {
                        tag_set: set,
                        value_key: &key,
                        ttl,
                    };
                    self.inner.scripts.call(&mut self.conn(), &call).await
                }))
                .await
                .map(drop)
            })
            .await;
        // Written or not, a near cache forgets what it held (an error may follow the write).
        self.inner.tracking.value_keys_changed([key.as_str()]);
        put
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        if tags.is_empty() {
            return Ok(0);
        }
        let tag_sets: Vec<String> = tags.iter().map(|t| tag_set_key(&self.inner.namespace, t)).collect();
        let value_prefix = format!("{}:v:", self.inner.namespace);
        self.guarded("purge_tags", async {
            // Each tag is marked purged as its set is read (see `store/computed.rs`).
            let members = try_join_all(
                tags.iter()
                    .zip(&tag_sets)
                    .map(|(tag, set)| self.purge_tag_members(tag, set)),
            )
            .await?;
            let values: HashSet<&String> = members
                .iter()
                .flatten()
                .filter(|k| k.starts_with(&value_prefix))
                .collect();
            let values: Vec<String> = values.into_iter().cloned().collect();
            let removed = self.unlink(&values).await;
            self.inner
                .tracking
                .value_keys_changed(values.iter().map(String::as_str));
            let removed = removed?;
            // Remove exactly what was read: a value recorded since keeps its registration.
            try_join_all(tag_sets.iter().zip(&members).filter(|(_, m)| !m.is_empty()).map(
                |(set, members)| async move {
                    redis::cmd("SREM")
                        .arg(set)
                        .arg(members)
                        .query_async::<u64>(&mut self.conn())
                        .await
                        .map_err(re)
                },
            ))
            .await?;
            Ok(removed)
        })
        .await
    }

    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        let key = self.value_key(key);
        let call = RaiseWatermark {
            key: &key,
            mark: value,
            ttl: ms(ttl),
        };
        self.guarded("advance_watermark", self.inner.scripts.call(&mut self.conn(), &call))
            .await
    }

    async fn get_computed(&self, key: &str) -> StoreResult<ComputedLookup> {
        self.computed_get(key).await
    }

    async fn put_computed(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        self.computed_put(key, write).await
    }

    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        self.computed_lock(key, ttl).await
    }

    async fn unlock_computed(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        self.computed_unlock(key, lock).await
    }

    async fn extend_computed(&self, key: &str, lock: ComputeLock, ttl: Duration) -> StoreResult<bool> {
        self.computed_extend(key, lock, ttl).await
    }

    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        self.computed_wait(key, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record key holds a record's JSON or a tombstone (`entity.lua`): no JSON text reads as
    /// a tombstone, and each tombstone reads as what it means.
    #[test]
    fn record_keys_read_as_records_or_tombstones() {
        let value = |v: &'static str| Some(Bytes::from_static(v.as_bytes()));
        for body in [
            r#"{"id":"recP1"}"#,
            "{}",
            "[1,2]",
            r#""text""#,
            "-1.5",
            "42",
            "true",
            "false",
            "null",
            " {}",
            "\t{}",
            "\n[]",
            "\r\n0",
        ] {
            assert_eq!(
                lookup(value(body)),
                Lookup::Hit(Bytes::from_static(body.as_bytes())),
                "{body:?}"
            );
            assert_eq!(Held::of(&body.as_bytes()[..1]), Held::Record, "{body:?}");
        }
        // A fill's "not found" and a reported delete answer reads; an invalidated delete only
        // orders writes.
        for tombstone in ["!1", "!d||", "!d|3|", "!d||1700000000000000", "!d|2.5|1700000000000000"] {
            assert_eq!(lookup(value(tombstone)), Lookup::Tombstone, "{tombstone}");
            assert_eq!(Held::of(&tombstone.as_bytes()[..1]), Held::Tombstone, "{tombstone}");
        }
        for invalidated in ["!o||", "!o|3|1700000000000000"] {
            assert_eq!(lookup(value(invalidated)), Lookup::Miss, "{invalidated}");
            assert_eq!(Held::of(&invalidated.as_bytes()[..1]), Held::Tombstone, "{invalidated}");
        }
        assert_eq!(lookup(None), Lookup::Miss);
        assert_eq!(Held::of(b""), Held::Nothing, "GETRANGE of a missing key");
    }

    #[test]
    fn a_body_that_would_read_as_a_tombstone_is_refused() {
        let write = |body: &'static str| RecordWrite {
            id: RecordId::new("recP1").unwrap(),
            body: Bytes::from_static(body.as_bytes()),
            index: IndexEntries::default(),
            version: None,
            at: None,
            ttl: Duration::from_secs(1),
        };
        assert!(check_bodies(&[write("{}"), write("[]")]).is_ok());
        assert!(matches!(
            check_bodies(&[write("{}"), write("!1")]),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn stats_sum_masters() {
        let a = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\nkeyspace_hits:3\r\nconnected_clients:2\r\n";
        let b = "used_memory:2048\r\nkeyspace_hits:4\r\nconnected_clients:1\r\nevicted_keys:0\r\n";
        let one = stats_from_info("redis", &[a.to_owned()], 7);
        assert_eq!(one.memory_used_human.as_deref(), Some("1.00K"));
        assert_eq!(one.evicted_keys, None);
        let both = stats_from_info("redis-cluster", &[a.to_owned(), b.to_owned()], 9);
        assert_eq!(both.memory_used_bytes, Some(3072));
        assert_eq!(both.memory_used_human.as_deref(), Some("3.00K"));
        assert_eq!(both.keyspace_hits, Some(7));
        assert_eq!(both.connected_clients, Some(3));
        assert_eq!(both.total_keys, 9);
    }
}
