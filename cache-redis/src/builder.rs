//! Connecting: URLs, timeouts, namespace, buckets, circuit breaker.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, Weak},
    time::{Duration, Instant},
};

use redis::{
    RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
};

use crate::{
    CircuitBreakerConfig, RedisStore, Topology,
    connection::{Established, Node, RedisConnection, is_unavailable, masters_of_established, on_established_node},
    layout::validate_namespace,
    scripts::Scripts,
    wait::WaitConnections,
};

/// The default namespace: every key starts with `mc:`.
pub const DEFAULT_NAMESPACE: &str = "mc";
/// The default time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time to wait for an answer.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The default [operation budget](RedisStoreBuilder::operation_budget).
pub const DEFAULT_OPERATION_BUDGET: Duration = Duration::from_millis(250);

/// The oldest servers the store runs on: Redis 6.2 (`ZINTER`), Valkey 7.2 (which reports
/// `redis_version:7.2.x`).
const MIN_VERSION: (u32, u32) = (6, 2);

/// Why [`RedisStoreBuilder::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A URL did not parse, or names an unknown scheme.
    #[error("invalid redis url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, its password masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A `rediss://` / `valkeys://` URL without the `tls` feature.
    #[error("{0:?} needs TLS: enable cache-redis's `tls` feature")]
    TlsNotEnabled(String),
    /// The namespace cannot prefix keys.
    #[error("invalid namespace: {0}")]
    Namespace(String),
    /// Zero buckets, or no URL for a cluster.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server could not be reached, refused the credentials or failed a first command.
    #[error("could not connect to redis: {0}")]
    Connect(#[source] RedisError),
    /// The server is older than the store supports.
    #[error("redis {found} is too old: the store needs redis 6.2+ or valkey 7.2+")]
    UnsupportedServer {
        /// The version the server reported.
        found: String,
    },
}

/// Configures and connects a [`RedisStore`]; see [`RedisStore::builder`] and
/// [`RedisStore::cluster`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    urls: Vec<String>,
    cluster: bool,
    namespace: String,
    buckets: u32,
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_budget: Duration,
    breaker: CircuitBreakerConfig,
    #[cfg(feature = "tls")]
    root_certificate: Option<Vec<u8>>,
}

impl RedisStoreBuilder {
    pub(crate) fn new(urls: Vec<String>, cluster: bool) -> Self {
        Self {
            urls,
            cluster,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            buckets: 1,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            operation_budget: DEFAULT_OPERATION_BUDGET,
            breaker: CircuitBreakerConfig::default(),
            #[cfg(feature = "tls")]
            root_certificate: None,
        }
    }

    /// The prefix of every key (`mc` by default): several caches, or several environments,
    /// share one server under different namespaces.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Spreads every entity over `buckets` hash slots (1 by default), so that on a cluster one
    /// large entity is not pinned to one node. Index queries then run on every bucket and
    /// merge. Part of the key layout: changing it starts from an empty cache.
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// The time to establish a connection and the time to wait for an answer (1 s each by
    /// default). Keep them short: a cache that waits long for Redis is slower than no cache.
    /// A request never waits longer than the [operation budget](Self::operation_budget),
    /// whatever these are; they bound the start-up wait, the background connection attempts
    /// and each round trip of a bulk operation.
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }

    /// When the circuit breaker opens and for how long.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Trusts this CA (PEM) for `rediss://` instead of the platform's roots: for servers with
    /// certificates from a private CA.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// The most time one store operation may take in all, connection attempts and the
    /// circuit breaker's probe included (250 ms by default): past it the operation fails as
    /// [`StoreError::Unavailable`](cache_core::store::StoreError::Unavailable), the cache answers from
    /// the origin, and the breaker opens. Bulk operations (`flush`, `scan_ids`, exact counts)
    /// are bounded per round trip by the response timeout instead.
    pub fn operation_budget(mut self, budget: Duration) -> Self {
        self.operation_budget = budget;
        self
    }

    /// Builds the store and connects to Redis.
    ///
    /// Waits at most the connect timeout for Redis: when it is down or does not answer, the
    /// store is returned anyway and keeps connecting in the background (logging
    /// `redis_connect_deferred`, a `redis_still_unreachable` summary every 10 s, then
    /// `redis_connected`); until then its operations fail at once as
    /// [`StoreError::Unavailable`](cache_core::store::StoreError::Unavailable), so a cache over it
    /// answers from the origin, and it starts caching without a restart. Errors are only
    /// what no waiting fixes: a bad URL or namespace, credentials the server refused, a server
    /// too old.
    pub async fn connect(self) -> Result<RedisStore, ConnectError> {
        validate_namespace(&self.namespace)?;
        if self.buckets == 0 {
            return Err(ConnectError::Config("an entity needs at least one bucket".to_owned()));
        }
        if self.urls.is_empty() {
            return Err(ConnectError::Config("no redis url given".to_owned()));
        }
        for url in &self.urls {
            check_url(url)?;
        }
        #[cfg(feature = "tls")]
        if self
            .urls
            .iter()
            .any(|url| url.starts_with("rediss") || url.starts_with("valkeys"))
        {
            // redis-rs builds its TLS configuration with the process's default rustls provider,
            // which rustls cannot choose when another crate compiles in a second one (reqwest's
            // aws-lc-rs): choose ring, unless the application installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let connector = self.connector()?;
        let conn = RedisConnection::pending(self.cluster, self.breaker.cool_down, self.operation_budget / 2);
        match tokio::time::timeout(self.connect_timeout, connector.attempt()).await {
            Ok(Ok(established)) => conn.establish(established),
            Ok(Err(err)) if !err.waiting_may_fix() => return Err(err),
            Ok(Err(err)) => defer(connector.clone(), &conn, &err.to_string()),
            Err(_) => defer(
                connector.clone(),
                &conn,
                &format!(
                    "no answer within the connect timeout ({} ms)",
                    self.connect_timeout.as_millis()
                ),
            ),
        }
        let tracking = crate::tracking::Source::new(
            &self.client().map_err(ConnectError::Connect)?,
            self.cluster.then_some(self.urls.as_slice()),
            self.connect_timeout,
            self.response_timeout,
        );
        Ok(RedisStore::from_parts(
            conn,
            self.namespace,
            self.buckets,
            tracking,
            self.breaker,
            self.operation_budget,
            connector.waits,
        ))
    }

    /// The clients for the store's connection and for its waits.
    fn connector(&self) -> Result<Connector, ConnectError> {
        // `waits`: dedicated connections for blocking waits on computed values (`wait.rs`).
        let (client, waits) = if self.cluster {
            let builder = ClusterClientBuilder::new(self.urls.iter().map(String::as_str));
            #[cfg(feature = "tls")]
            let builder = match &self.root_certificate {
                Some(pem) => builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                }),
                None => builder,
            };
            let client = builder
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()
                .map_err(ConnectError::Connect)?;
            let waits = WaitConnections::cluster(client.clone(), self.connect_timeout);
            (Client::Cluster(client), waits)
        } else {
            let client = self.client().map_err(ConnectError::Connect)?;
            let waits = WaitConnections::single(client.clone(), self.connect_timeout);
            // No reconnect retries inside a call: while the server is down each call fails
            // at once and the circuit breaker decides when to try again.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_number_of_retries(0);
            (Client::Single(client, Box::new(config)), waits)
        };
        Ok(Connector {
            client: Arc::new(client),
            connect_timeout: self.connect_timeout,
            waits: Arc::new(waits),
        })
    }
}

/// How the store's connection is made: once in [`RedisStoreBuilder::connect`], then in the
/// background until it works.
#[derive(Clone)]
struct Connector {
    client: Arc<Client>,
    connect_timeout: Duration,
    waits: Arc<WaitConnections>,
}

enum Client {
    Single(redis::Client, Box<ConnectionManagerConfig>),
    Cluster(ClusterClient),
}

/// Pause between two background connection attempts: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often at most the background connector says that Redis is still unreachable.
const UNREACHABLE_SUMMARY_EVERY: Duration = Duration::from_secs(10);

impl Connector {
    /// Connects, checks the server version and loads the scripts.
    async fn attempt(&self) -> Result<Established, ConnectError> {
        let conn = match &*self.client {
            Client::Single(client, config) => Topology::Single(
                ConnectionManager::new_with_config(client.clone(), (**config).clone())
                    .await
                    .map_err(ConnectError::Connect)?,
            ),
            Client::Cluster(client) => {
                Topology::Cluster(client.get_async_connection().await.map_err(ConnectError::Connect)?)
            }
        };
        check_version(&conn).await?;
        warn_about_eviction(&conn).await;
        for script in Scripts::new().all() {
            script
                .load_async(&mut conn.clone())
                .await
                .map_err(ConnectError::Connect)?;
        }
        Ok(conn)
    }

    /// Tries again and again (backing off to [`RETRY_MAX`]) until a connection works, then
    /// installs it in `link`; gives up when every store using `link` is gone.
    async fn keep_connecting(self, link: Weak<OnceLock<Established>>) {
        let started = Instant::now();
        let mut last_summary = started;
        let mut attempts: u64 = 1;
        let mut delay = RETRY_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            if link.strong_count() == 0 {
                return;
            }
            attempts += 1;
            let error = match tokio::time::timeout(self.connect_timeout, self.attempt()).await {
                Ok(Ok(established)) => {
                    if let Some(link) = link.upgrade() {
                        let _ = link.set(established);
                        tracing::info!(
                            attempts,
                            waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "redis_connected"
                        );
                    }
                    return;
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => "no answer within the connect timeout".to_owned(),
            };
            if last_summary.elapsed() >= UNREACHABLE_SUMMARY_EVERY {
                last_summary = Instant::now();
                tracing::warn!(
                    attempts,
                    waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "redis_still_unreachable"
                );
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// Starts connecting in the background.
fn defer(connector: Connector, conn: &RedisConnection, error: &str) {
    tracing::warn!(error, "redis_connect_deferred");
    tokio::spawn(connector.keep_connecting(conn.watch()));
}

impl ConnectError {
    /// Whether the server may accept a later attempt: it was unreachable or busy, as opposed
    /// to a configuration nobody but the operator can fix.
    fn waiting_may_fix(&self) -> bool {
        let Self::Connect(err) = self else {
            return false;
        };
        is_unavailable(err) && !is_tls_refusal(err)
    }
}

/// Whether `err` is an I/O error about the data exchanged (a TLS certificate refused, a TLS
/// handshake with a plain server): an I/O error to redis-rs, a configuration error to the
/// operator.
fn is_tls_refusal(err: &RedisError) -> bool {
    let Some(source) = std::error::Error::source(err) else {
        return false;
    };
    // redis-rs keeps the cause behind an `Arc`, which is what `source` hands out.
    let io = source.downcast_ref::<std::io::Error>().or_else(|| {
        source
            .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?
            .downcast_ref::<std::io::Error>()
    });
    io.is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
        )
    })
}

impl RedisStoreBuilder {
    #[cfg(feature = "tls")]
    fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.root_certificate {
            Some(pem) => redis::Client::build_with_tls(
                self.urls[0].as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(self.urls[0].as_str()),
        }
    }

    #[cfg(not(feature = "tls"))]
    fn client(&self) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.urls[0].as_str())
    }
}

fn masked(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn check_url(url: &str) -> Result<(), ConnectError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "valkey" | "redis+unix" | "valkey+unix" | "unix") => Ok(()),
        Some("rediss" | "valkeys") if cfg!(feature = "tls") => Ok(()),
        Some("rediss" | "valkeys") => Err(ConnectError::TlsNotEnabled(masked(url))),
        _ => Err(ConnectError::InvalidUrl {
            url: masked(url),
            reason: "expected redis://, rediss://, valkey:// or valkeys://".to_owned(),
        }),
    }
}

async fn check_version(conn: &Established) -> Result<(), ConnectError> {
    for node in masters_of_established(conn).await.map_err(ConnectError::Connect)? {
        let info = on_established_node(conn, &node, redis::cmd("INFO").arg("server").clone())
            .await
            .map_err(ConnectError::Connect)?;
        let info: String = redis::from_redis_value(info).map_err(|e| ConnectError::Connect(e.into()))?;
        let found = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let mut parts = found.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if version < MIN_VERSION {
            return Err(ConnectError::UnsupportedServer { found });
        }
        if node == Node::Server {
            break;
        }
    }
    Ok(())
}

/// Whether a `maxmemory-policy` lets the server evict index keys before their TTL: every key
/// the store writes has one, so the `volatile-*` policies reach them as `allkeys-*` do, except
/// `volatile-ttl`, under which index keys (extended by every write) go last. `noeviction`
/// refuses writes instead, which the cache survives as store errors.
fn evicts_index_keys(policy: &str) -> bool {
    policy.starts_with("allkeys-") || matches!(policy, "volatile-lru" | "volatile-lfu" | "volatile-random")
}

/// Warns when a master may evict index keys. Reads `CONFIG GET maxmemory-policy` where the
/// user may: ACL users and managed services often lack `CONFIG`, and then nothing is said.
async fn warn_about_eviction(conn: &Established) {
    let Ok(nodes) = masters_of_established(conn).await else {
        return;
    };
    for node in nodes {
        let reply = on_established_node(
            conn,
            &node,
            redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").clone(),
        )
        .await
        .and_then(|reply| redis::from_redis_value::<HashMap<String, String>>(reply).map_err(Into::into));
        let policy = match reply {
            Ok(mut config) => config.remove("maxmemory-policy").unwrap_or_default(),
            Err(err) => {
                tracing::debug!(error = %err, "redis_eviction_policy_unreadable");
                return;
            }
        };
        if evicts_index_keys(&policy) {
            // Answers stay correct, but a query whose index keys were evicted misses until it
            // is filled again.
            tracing::warn!(
                policy,
                node = ?node,
                hint = "maxmemory-policy volatile-ttl evicts index keys last",
                "redis_eviction_policy"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_policies_that_reach_index_keys() {
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-random",
        ] {
            assert!(evicts_index_keys(policy), "{policy}");
        }
        for policy in ["noeviction", "volatile-ttl", ""] {
            assert!(!evicts_index_keys(policy), "{policy}");
        }
    }

    #[test]
    fn urls_are_checked_and_masked() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("valkey://user:pw@host:6379/0").is_ok());
        assert!(matches!(check_url("http://x"), Err(ConnectError::InvalidUrl { .. })));
        if !cfg!(feature = "tls") {
            let err = check_url("rediss://user:secret@host").unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        assert_eq!(masked("redis://u:p@h:1"), "redis://***@h:1");
    }
}
