//! The connection to one server or to a cluster, and what differs between the two: commands
//! that must run on every master (`SCAN`, `INFO`).

use redis::{
    Cmd, ErrorKind, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo},
};

use cache_core::StoreError;

/// One connection of either topology: to one server or to a cluster. Every redis-rs command
/// runs on it ([`redis::aio::ConnectionLike`]), whichever it is.
#[derive(Clone)]
pub enum Topology<S, C> {
    /// One server.
    Single(S),
    /// A Redis Cluster.
    Cluster(C),
}

/// The store's connection: a [`ConnectionManager`] (one server; reconnects by itself) or a
/// cluster connection (follows the slot map). Cheap to clone: clones share the connection.
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
pub type RedisConnection = Topology<ConnectionManager, ClusterConnection>;

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

/// One master, as the connection addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// The single server.
    Server,
    /// A cluster master at this address.
    Master { host: String, port: u16 },
}

impl RedisConnection {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The masters: the server itself, or every cluster master now in the slot map.
    pub(crate) async fn masters(&self) -> RedisResult<Vec<Node>> {
        match self {
            Self::Single(_) => Ok(vec![Node::Server]),
            Self::Cluster(c) => {
                let mut c = c.clone();
                let answers = c
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
        }
    }

    /// Runs `cmd` on one master.
    pub(crate) async fn on_node(&self, node: &Node, cmd: Cmd) -> RedisResult<Value> {
        match (self, node) {
            (Self::Single(c), _) => cmd.query_async(&mut c.clone()).await,
            (Self::Cluster(c), Node::Master { host, port }) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                c.clone().route_command(cmd, routing).await
            }
            (Self::Cluster(_), Node::Server) => Err(unexpected("a cluster has no single server")),
        }
    }
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Client, what))
}

/// Whether an error means the server could not be reached (as opposed to answering with an
/// error): these open the circuit breaker.
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
