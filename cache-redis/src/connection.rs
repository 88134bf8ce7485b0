//! The connection to one server or to a cluster: established in the background (the store
//! exists before Redis answers), commands that must run on every master (`SCAN`, `INFO`),
//! and on a cluster the per-slot breakers that keep a dead master's slots from costing every
//! other slot its cache.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    Arg, Cmd, ErrorKind, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo},
};

use cache_core::store::StoreError;

/// One connection of either topology: to one server or to a cluster. Every redis-rs command
/// runs on it ([`redis::aio::ConnectionLike`]), whichever it is.
#[derive(Clone)]
pub enum Topology<S, C> {
    /// One server.
    Single(S),
    /// A Redis Cluster.
    Cluster(C),
}

impl<S, C> std::fmt::Debug for Topology<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("Topology::Single"),
            Self::Cluster(_) => f.write_str("Topology::Cluster"),
        }
    }
}

impl<S: ConnectionLike + Send, C: ConnectionLike + Send> ConnectionLike for Topology<S, C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The live connection once established: a [`ConnectionManager`] (one server; reconnects by
/// itself) or a cluster connection (follows the slot map).
pub(crate) type Established = Topology<ConnectionManager, ClusterConnection>;

/// The store's connection to one server or a cluster. Cheap to clone: clones share the
/// connection.
///
/// The store connects in the background: until the first connection is established every
/// command on it fails at once with an I/O error (`NotConnected`), and then it works without
/// anyone reconnecting it by hand. On a cluster, a slot whose master was just found
/// unreachable answers at once with an error too (see the crate docs).
///
/// Exposed for benchmarks and diagnostics ([`RedisStore::connection`](crate::RedisStore::connection)):
/// it implements [`redis::aio::ConnectionLike`], so any redis-rs command runs on it.
///
/// ```no_run
/// # async fn run(store: cache_redis::RedisStore) -> redis::RedisResult<()> {
/// let mut conn = store.connection();
/// let raw: Option<Vec<u8>> = redis::cmd("GET").arg("mc:v:hello").query_async(&mut conn).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConnection {
    link: Arc<OnceLock<Established>>,
    /// The per-slot breakers of a cluster; `None` on one server.
    slots: Option<Arc<SlotBreakers>>,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("cluster", &self.is_cluster())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// One master, as the connection addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// The single server.
    Server,
    /// A cluster master at this address.
    Master { host: String, port: u16 },
}

impl RedisConnection {
    /// A connection not established yet; on a cluster, `cool_down` is how long a slot found
    /// unreachable answers with an error at once before one command probes it again.
    ///
    /// A command abandoned after waiting `slow_after` (half the operation budget) counts as
    /// its slot's failure too.
    pub(crate) fn pending(cluster: bool, cool_down: Duration, slow_after: Duration) -> Self {
        Self {
            link: Arc::default(),
            slots: cluster.then(|| Arc::new(SlotBreakers::new(cool_down, slow_after))),
        }
    }

    /// Installs the established connection (once; later calls are ignored).
    pub(crate) fn establish(&self, conn: Established) {
        let _ = self.link.set(conn);
    }

    /// Whether the first connection has been established.
    pub(crate) fn is_connected(&self) -> bool {
        self.link.get().is_some()
    }

    /// A handle that lets the background connector notice that every store is gone.
    pub(crate) fn watch(&self) -> std::sync::Weak<OnceLock<Established>> {
        Arc::downgrade(&self.link)
    }

    pub(crate) fn is_cluster(&self) -> bool {
        self.slots.is_some()
    }

    /// The same connection without the per-slot breakers: for the public
    /// [`RedisStore::connection`](crate::RedisStore::connection), whose commands bypass every
    /// breaker.
    pub(crate) fn unguarded(&self) -> Self {
        Self {
            link: Arc::clone(&self.link),
            slots: None,
        }
    }

    /// The per-slot breakers (a cluster's).
    pub(crate) fn slot_breakers(&self) -> Option<&SlotBreakers> {
        self.slots.as_deref()
    }

    fn established(&self) -> RedisResult<&Established> {
        self.link.get().ok_or_else(not_connected)
    }

    /// The masters: the server itself, or every cluster master now in the slot map.
    pub(crate) async fn masters(&self) -> RedisResult<Vec<Node>> {
        match self.established()? {
            Topology::Single(_) => Ok(vec![Node::Server]),
            Topology::Cluster(c) => masters_of(c).await,
        }
    }

    /// Runs `cmd` on one master.
    pub(crate) async fn on_node(&self, node: &Node, cmd: Cmd) -> RedisResult<Value> {
        on_node(self.established()?, node, cmd).await
    }
}

/// The masters of a cluster, by asking each one for a `PING`.
async fn masters_of(conn: &ClusterConnection) -> RedisResult<Vec<Node>> {
    let answers = conn
        .clone()
        .route_command(
            redis::cmd("PING"),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        )
        .await?;
    let Value::Map(answers) = answers else {
        return Err(unexpected("PING to every master did not answer per node"));
    };
    let mut nodes = Vec::with_capacity(answers.len());
    for (address, _) in answers {
        let address: String = redis::from_redis_value(address)?;
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
            .ok_or_else(|| unexpected("cluster node address without a port"))?;
        nodes.push(Node::Master { host, port });
    }
    Ok(nodes)
}

async fn on_node(conn: &Established, node: &Node, cmd: Cmd) -> RedisResult<Value> {
    match (conn, node) {
        (Topology::Single(c), _) => cmd.query_async(&mut c.clone()).await,
        (Topology::Cluster(c), Node::Master { host, port }) => {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            });
            c.clone().route_command(cmd, routing).await
        }
        (Topology::Cluster(_), Node::Server) => Err(unexpected("a cluster has no single server")),
    }
}

/// Every master of a freshly established connection, for the checks made on connecting.
pub(crate) async fn masters_of_established(conn: &Established) -> RedisResult<Vec<Node>> {
    match conn {
        Topology::Single(_) => Ok(vec![Node::Server]),
        Topology::Cluster(c) => masters_of(c).await,
    }
}

/// [`RedisConnection::on_node`] on a freshly established connection.
pub(crate) async fn on_established_node(conn: &Established, node: &Node, cmd: Cmd) -> RedisResult<Value> {
    on_node(conn, node, cmd).await
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let Some(conn) = self.link.get() else {
            return Box::pin(async { Err(not_connected()) });
        };
        let mut conn = conn.clone();
        let Some((slots, slot)) = self.slots.as_deref().and_then(|s| Some((s, key_slot(cmd)?))) else {
            return Box::pin(async move { conn.req_packed_command(cmd).await });
        };
        Box::pin(async move {
            if let Err(err) = slots.admit(slot) {
                mark_slot_scoped();
                return Err(err);
            }
            let mut in_flight = InFlight {
                slots,
                slot,
                started: Instant::now(),
                done: false,
            };
            let result = conn.req_packed_command(cmd).await;
            in_flight.done = true;
            match &result {
                Err(err) if is_unavailable(err) => {
                    slots.failure(slot);
                    mark_slot_scoped();
                }
                _ => slots.success(slot),
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let Some(conn) = self.link.get() else {
            return Box::pin(async { Err(not_connected()) });
        };
        let mut conn = conn.clone();
        Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        self.link.get().map_or(0, ConnectionLike::get_db)
    }
}

tokio::task_local! {
    /// Set by a cluster command whose failure was charged to its slot's breaker, read by the
    /// store's operation around it (see [`in_slot_scope`]).
    static SLOT_SCOPED: Arc<AtomicBool>;
}

/// Runs `work`, setting `flag` when a failure in it was charged to a cluster slot (which the
/// store's global breaker then leaves alone). The flag is set even when `work` is dropped
/// half-way (by the operation budget) while a command to a hung master was in flight.
pub(crate) fn in_slot_scope<F: Future>(flag: Arc<AtomicBool>, work: F) -> impl Future<Output = F::Output> {
    SLOT_SCOPED.scope(flag, work)
}

fn mark_slot_scoped() {
    let _ = SLOT_SCOPED.try_with(|flag| flag.store(true, Ordering::Release));
}

/// A command to a cluster slot, in flight: dropped before its answer (the operation ran out of
/// budget) after waiting long, it counts as the slot's failure.
struct InFlight<'a> {
    slots: &'a SlotBreakers,
    slot: u16,
    started: Instant,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done && self.started.elapsed() >= self.slots.slow_after {
            self.slots.failure(self.slot);
            mark_slot_scoped();
        }
    }
}

fn not_connected() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "not connected to redis yet (connecting in the background)",
    ))
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Client, what))
}

/// Whether an error means the server could not be reached (as opposed to answering with an
/// error): these open the circuit breaker.
///
/// On a cluster, a `MOVED` or `ASK` that reaches us is a redirect the client could not follow
/// within its retries: to a master that is down, or while the slot map changes hands (a
/// failover). The slot is unreachable for now, not the request wrong.
pub(crate) fn is_unavailable(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        )
}

/// A redis error as the store reports it.
pub(crate) fn store_error(err: &RedisError) -> StoreError {
    if is_unavailable(err) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Backend(err.to_string())
    }
}

// ------------------------------------------------------------------ cluster slots

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// How often at most the per-slot breakers log their summary.
const SLOT_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// A breaker per hash slot of a cluster: a slot whose command found its master unreachable
/// (a dead node a redirect points to, `CLUSTERDOWN`, `TRYAGAIN`, a timeout) answers at once
/// with an error for the cool-down, then lets one command through as a probe. Other slots
/// are not affected: a master failing over costs its own slots, not the cluster's cache.
///
/// One atomic per slot (128 KiB in all, fixed): 0 when the slot is healthy, otherwise the
/// millisecond (since `epoch`) until which it refuses.
pub(crate) struct SlotBreakers {
    epoch: Instant,
    cool_down_ms: u64,
    /// How long a command abandoned before its answer had to wait to count as a failure.
    slow_after: Duration,
    until: Box<[AtomicU64]>,
    /// Calls refused since the last summary.
    refused: AtomicU64,
    /// Failures since the last summary.
    failed: AtomicU64,
    /// When the last summary was logged (ms since `epoch`).
    last_summary: AtomicU64,
    /// Whether some slot is open (the summary is only worth logging then).
    any_open: AtomicBool,
}

impl SlotBreakers {
    fn new(cool_down: Duration, slow_after: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            cool_down_ms: u64::try_from(cool_down.as_millis()).unwrap_or(u64::MAX).max(1),
            slow_after,
            until: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_summary: AtomicU64::new(0),
            any_open: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means "healthy".
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// Lets a command to `slot` through, or refuses it: an open slot whose cool-down ended
    /// lets exactly one caller through (the one that moves its deadline on).
    fn admit(&self, slot: u16) -> RedisResult<()> {
        let cell = &self.until[usize::from(slot)];
        let until = cell.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now >= until
            && cell
                .compare_exchange(until, now + self.cool_down_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.summarise(now);
        Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::ClusterDown),
            "redis cluster slot recently unreachable; not calling it",
            format!("slot {slot}"),
        )))
    }

    fn success(&self, slot: u16) {
        let cell = &self.until[usize::from(slot)];
        if cell.load(Ordering::Acquire) != 0 && cell.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(slot, "redis_slot_available");
        }
    }

    fn failure(&self, slot: u16) {
        let now = self.now_ms();
        let previous = self.until[usize::from(slot)].swap(now + self.cool_down_ms, Ordering::AcqRel);
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.any_open.store(true, Ordering::Release);
        if previous == 0 {
            tracing::warn!(slot, cool_down_ms = self.cool_down_ms, "redis_slot_unavailable");
        }
        self.summarise(now);
    }

    /// Slots refusing calls now.
    pub(crate) fn open_slots(&self) -> usize {
        let now = self.now_ms();
        self.until
            .iter()
            .filter(|u| {
                let u = u.load(Ordering::Relaxed);
                u != 0 && u > now
            })
            .count()
    }

    /// Logs, at most every [`SLOT_SUMMARY_EVERY`], how many calls failed and were refused.
    fn summarise(&self, now: u64) {
        let every = u64::try_from(SLOT_SUMMARY_EVERY.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_summary.load(Ordering::Relaxed);
        if now < last.saturating_add(every)
            || self
                .last_summary
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if !self.any_open.swap(false, Ordering::AcqRel) {
            return;
        }
        let open_slots = self.open_slots();
        if open_slots > 0 {
            self.any_open.store(true, Ordering::Release);
        }
        tracing::warn!(
            open_slots,
            failed = self.failed.swap(0, Ordering::Relaxed),
            failed_fast = self.refused.swap(0, Ordering::Relaxed),
            "redis_slots_summary"
        );
    }
}

/// The one hash slot every key of `cmd` is in; `None` for commands without keys, with keys
/// in several slots, or that the store does not send to a key.
fn key_slot(cmd: &Cmd) -> Option<u16> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|a| match a {
            Arg::Simple(a) => a,
            _ => &[],
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let keys: &[&[u8]] = match name.as_slice() {
        b"EVALSHA" | b"EVAL" | b"FCALL" => {
            let count: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            args.get(3..3 + count)?
        }
        b"MGET" | b"UNLINK" | b"DEL" | b"EXISTS" => args.get(1..)?,
        b"GET" | b"SET" | b"SREM" | b"SADD" | b"SMEMBERS" | b"PEXPIRE" | b"PTTL" | b"INCR" => args.get(1..2)?,
        _ => return None,
    };
    let mut slots = keys.iter().map(|k| slot_of(k));
    let first = slots.next()?;
    slots.all(|s| s == first).then_some(first)
}

/// The cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first
/// `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let close = key[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &key[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(key)) % 16_384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster_hashing() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"foo"), 12_182);
        assert_eq!(slot_of(b"123456789"), 12_739);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(
            slot_of(b"foo{}{bar}"),
            slot_of(b"foo{}{bar}"),
            "an empty tag hashes the key"
        );
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
    }

    #[test]
    fn commands_map_to_the_slot_of_their_keys() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc").arg(2).arg("{b}:x").arg("{b}:y").arg("arg");
        assert_eq!(key_slot(&eval), Some(slot_of(b"b")));
        let mut mget = redis::cmd("MGET");
        mget.arg("{a}:1").arg("{b}:1");
        assert_eq!(key_slot(&mget), None, "keys in two slots");
        assert_eq!(key_slot(&redis::cmd("PING")), None);
        let mut get = redis::cmd("GET");
        get.arg("foo");
        assert_eq!(key_slot(&get), Some(12_182));
    }

    #[test]
    fn an_open_slot_refuses_and_lets_one_probe_through() {
        let slots = SlotBreakers::new(Duration::ZERO, Duration::ZERO);
        slots.admit(7).expect("healthy");
        slots.failure(7);
        slots.admit(8).expect("other slots are not affected");
        // Cool-down over (zero here): one caller moves the deadline and probes.
        let slots = SlotBreakers {
            cool_down_ms: 3_600_000,
            ..SlotBreakers::new(Duration::ZERO, Duration::ZERO)
        };
        slots.until[7].store(1, Ordering::Release);
        slots.admit(7).expect("the probe");
        let err = slots.admit(7).expect_err("the others are refused");
        assert!(is_unavailable(&err), "{err}");
        slots.success(7);
        slots.admit(7).expect("closed again");
        assert_eq!(slots.open_slots(), 0);
    }
}
