//! Dedicated connections for the one blocking command the store sends: the `BLPOP` of a
//! waiter for another instance's computed value.
//!
//! A blocking command must never run on the store's shared multiplexed connection: every
//! command pipelined behind it would wait as long as it blocks. Each wait takes a connection
//! of its own from a small pool (opened on first use, with no response timeout) and gives it
//! back when the `BLPOP` answered; a wait abandoned half-way drops its connection, which may
//! still be blocked. In-process single-flight makes one waiter per key per process, so the
//! pool holds about as many connections as keys waited on at once.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Client, RedisResult,
    aio::MultiplexedConnection,
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
};

use crate::Topology;

/// Idle connections kept for later waits.
const MAX_IDLE: usize = 8;
/// How much longer than its own timeout a `BLPOP` may take to answer before the connection is
/// given up on (a server that stopped answering).
const GRACE: Duration = Duration::from_secs(2);

/// Where dedicated connections come from, and the idle ones.
pub(crate) struct WaitConnections {
    source: Source,
    connect_timeout: Duration,
    idle: Mutex<Vec<Dedicated>>,
}

impl std::fmt::Debug for WaitConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("WaitConnections")
            .field("idle", &idle)
            .finish_non_exhaustive()
    }
}

enum Source {
    Single(Box<Client>),
    Cluster(Box<ClusterClient>),
}

type Dedicated = Topology<MultiplexedConnection, ClusterConnection>;

impl WaitConnections {
    /// Waits on one server, connecting with `client`.
    pub(crate) fn single(client: Client, connect_timeout: Duration) -> Self {
        Self {
            source: Source::Single(Box::new(client)),
            connect_timeout,
            idle: Mutex::default(),
        }
    }

    /// Waits on a cluster: each connection follows the slot map, so a `BLPOP` goes to the node
    /// holding its key.
    pub(crate) fn cluster(client: ClusterClient, connect_timeout: Duration) -> Self {
        Self {
            source: Source::Cluster(Box::new(client)),
            connect_timeout,
            idle: Mutex::default(),
        }
    }

    async fn open(&self) -> RedisResult<Dedicated> {
        match &self.source {
            Source::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(None);
                Ok(Dedicated::Single(
                    client.get_multiplexed_async_connection_with_config(&config).await?,
                ))
            }
            Source::Cluster(client) => {
                let config = ClusterConfig::new().set_connection_timeout(self.connect_timeout);
                Ok(Dedicated::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }

    /// Pops the head of `list`, waiting at most `timeout` for one: whether one was popped.
    pub(crate) async fn pop(&self, list: &str, timeout: Duration) -> RedisResult<bool> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open().await?,
        };
        // Seconds with millisecond precision (Redis 6+); 0 would mean "forever".
        let seconds = format!("{:.3}", timeout.as_secs_f64().max(0.001));
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(list).arg(seconds);
        let blpop = cmd.query_async::<Option<(String, String)>>(&mut conn);
        match tokio::time::timeout(timeout.saturating_add(GRACE), blpop).await {
            Ok(Ok(popped)) => {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
                Ok(popped.is_some())
            }
            Ok(Err(err)) => Err(err),
            // The server did not answer in time: this connection is given up on.
            Err(_) => Ok(false),
        }
    }
}
