//! Connecting: URLs, timeouts, namespace, buckets, circuit breaker.

use std::{collections::HashMap, time::Duration};

use redis::{
    RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
};

use crate::{
    CircuitBreakerConfig, RedisStore,
    connection::{Node, RedisConnection},
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

    /// Connects, checks the server version and loads the scripts.
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
        // `waits`: dedicated connections for blocking waits on computed values (`wait.rs`).
        let (conn, waits) = if self.cluster {
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
            let conn = client.get_async_connection().await.map_err(ConnectError::Connect)?;
            (RedisConnection::Cluster(conn), waits)
        } else {
            let client = self.client().map_err(ConnectError::Connect)?;
            let waits = WaitConnections::single(client.clone(), self.connect_timeout);
            // No reconnect retries inside a call: while the server is down each call fails
            // at once and the circuit breaker decides when to try again.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_number_of_retries(0);
            let conn = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(ConnectError::Connect)?;
            (RedisConnection::Single(conn), waits)
        };
        check_version(&conn).await?;
        warn_about_eviction(&conn).await;
        let scripts = Scripts::new();
        for script in scripts.all() {
            script
                .load_async(&mut conn.clone())
                .await
                .map_err(ConnectError::Connect)?;
        }
        Ok(RedisStore::from_parts(
            conn,
            self.namespace,
            self.buckets,
            scripts,
            self.breaker,
            waits,
        ))
    }
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

async fn check_version(conn: &RedisConnection) -> Result<(), ConnectError> {
    for node in conn.masters().await.map_err(ConnectError::Connect)? {
        let info = conn
            .on_node(&node, redis::cmd("INFO").arg("server").clone())
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
async fn warn_about_eviction(conn: &RedisConnection) {
    let Ok(nodes) = conn.masters().await else { return };
    for node in nodes {
        let reply = conn
            .on_node(&node, redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").clone())
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
