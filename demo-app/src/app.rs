//! Putting the demo together: the database (created and seeded on first run), the store
//! (memory or Redis), the cache, and the HTTP application with model-cache's layers and
//! routers.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::Router;
use cache_core::{Cache, ConfigError, MemoryStore, Store};
use cache_http::{
    CacheTelemetryLayer, ResponseCacheLayer,
    admin::{self, AdminConfig},
    metrics,
    webhook::{self, WebhookConfig},
};
use cache_redis::RedisStore;

use crate::{
    api::{self, AppState},
    config::{Config, RedisUrl, Secret},
    database::{Database, DatabaseUrl},
    models::{Event, Project, Referral, User, Vote},
    origin::SqlOrigin,
    seed::{self, SeedCounts},
};

/// The key namespace of the demo in Redis.
pub const REDIS_NAMESPACE: &str = "demo";

/// Why the demo could not start or finish a command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database could not be reached or prepared.
    #[error("database {url}: {source}")]
    Database {
        /// The database (password masked).
        url: String,
        /// What failed.
        #[source]
        source: sqlx::Error,
    },
    /// Redis could not be reached.
    #[error(
        "Redis connection failed ({url}): {source}; check that the server is up, or unset REDIS_URL to cache in memory"
    )]
    Redis {
        /// The Redis URL (password masked).
        url: String,
        /// What failed.
        #[source]
        source: cache_redis::ConnectError,
    },
    /// The cache could not be configured.
    #[error("cache configuration: {0}")]
    Cache(#[from] ConfigError),
    /// A router of cache-http refused its configuration.
    #[error("HTTP configuration: {0}")]
    Http(#[from] cache_http::ConfigError),
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A secret could not be generated.
    #[error(transparent)]
    Secret(#[from] cache_http::SecretError),
    /// The cache failed during a command.
    #[error(transparent)]
    CacheOperation(#[from] cache_core::CacheError),
    /// Listening or writing output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A command was given something it cannot use.
    #[error("{0}")]
    Usage(String),
}

/// Connects to the database, creates the tables when missing and seeds them when empty.
pub async fn open_database(url: &DatabaseUrl) -> Result<Database, AppError> {
    let fail = |source| AppError::Database {
        url: url.to_string(),
        source,
    };
    let db = Database::connect(url).await.map_err(fail)?;
    db.create_tables().await.map_err(fail)?;
    if !db.is_seeded().await.map_err(fail)? {
        let started = Instant::now();
        let report = seed::seed(&db, SeedCounts::DEMO).await.map_err(fail)?;
        tracing::info!(
            users = report.counts.users,
            events = report.counts.events,
            projects = report.counts.projects,
            votes = report.counts.votes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "demo_database_seeded"
        );
    }
    Ok(db)
}

/// The store `REDIS_URL` names, or memory.
pub async fn connect_store(url: Option<&RedisUrl>) -> Result<Arc<dyn Store>, AppError> {
    let fail = |source| AppError::Redis {
        url: url.map(ToString::to_string).unwrap_or_default(),
        source,
    };
    Ok(match url {
        None => Arc::new(MemoryStore::new()),
        Some(RedisUrl::Single(url)) => Arc::new(
            RedisStore::builder(url)
                .namespace(REDIS_NAMESPACE)
                .connect()
                .await
                .map_err(fail)?,
        ),
        Some(RedisUrl::Cluster(nodes)) => Arc::new(
            RedisStore::cluster(nodes)
                .namespace(REDIS_NAMESPACE)
                .connect()
                .await
                .map_err(fail)?,
        ),
    })
}

/// The cache over `store` and `origin`, with every model of the demo registered.
pub fn build_cache(store: Arc<dyn Store>, origin: SqlOrigin, enabled: bool) -> Result<Cache, ConfigError> {
    Cache::builder(store, origin)
        .enabled(enabled)
        .register::<User>()
        .register::<Event>()
        .register::<Project>()
        .register::<Vote>()
        .register::<Referral>()
        .build()
}

/// The secrets of the webhook and admin routers.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Authenticates webhook deliveries (`X-Airtable-Secret`).
    pub webhook: Secret,
    /// Authenticates the admin API (`Authorization: Bearer …`).
    pub admin: Secret,
}

impl Secrets {
    /// The configured secrets; those missing are generated for this run, and printed so that
    /// a newcomer can use them at once.
    pub fn from_config(config: &Config) -> Result<Self, AppError> {
        let pick = |given: &Option<Secret>, var: &str| -> Result<Secret, AppError> {
            if let Some(secret) = given {
                return Ok(secret.clone());
            }
            let secret = Secret::new(cache_http::generate_secret()?);
            println!(
                "{var} is not set; generated one for this run: {}\n  (set {var} to keep it across restarts)",
                secret.expose()
            );
            Ok(secret)
        };
        Ok(Self {
            webhook: pick(&config.webhook_secret, "WEBHOOK_SECRET")?,
            admin: pick(&config.admin_token, "ADMIN_TOKEN")?,
        })
    }
}

/// The HTTP application: the demo's routes, with responses of the read routes cached, the
/// webhook, admin and metrics routers of cache-http, and per-request telemetry headers
/// (`X-Cache`, `X-Origin-Calls`) on everything.
pub fn router(state: AppState, secrets: &Secrets) -> Result<Router, AppError> {
    let cache = state.cache.clone();
    let reads = api::read_routes().route_layer(ResponseCacheLayer::new(&cache));
    let app = Router::new()
        .merge(reads)
        .merge(api::write_routes())
        .with_state(state)
        .merge(webhook::routes(WebhookConfig::new(
            cache.clone(),
            secrets.webhook.expose(),
        ))?)
        .merge(admin::routes(AdminConfig::new(cache, secrets.admin.expose()))?)
        .merge(metrics::routes()?)
        .layer(CacheTelemetryLayer::new());
    Ok(app)
}

/// `demo-app serve`: everything above, listening on `BIND_ADDR:PORT` until Ctrl-C or SIGTERM.
pub async fn serve(config: &Config) -> Result<(), AppError> {
    let db = open_database(&config.database_url).await?;
    let origin = SqlOrigin::new(db, config.origin_settings());
    let store = connect_store(config.redis_url.as_ref()).await?;
    let cache = build_cache(store, origin.clone(), config.cache_enabled)?;
    let secrets = Secrets::from_config(config)?;
    let app = router(AppState { cache, origin }, &secrets)?;

    let addr = SocketAddr::new(config.bind_addr, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Io {
            what: format!("cannot listen on {addr} (set PORT to another port)"),
            source,
        })?;
    tracing::info!(
        address = %format!("http://{addr}"),
        database = %config.database_url,
        store = %config.redis_url.as_ref().map_or_else(|| "memory".to_owned(), ToString::to_string),
        cache_enabled = config.cache_enabled,
        origin_latency_ms = config.origin_latency_ms,
        origin_rate_limit = config.origin_rate_limit,
        "demo_listening"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| AppError::Io {
            what: "serving".to_owned(),
            source,
        })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("demo_shutting_down");
}
