//! Putting the demo together: the source (a database created and seeded on first run, read
//! by `cache-sql`, or an Airtable base read by `cache-airtable`), the store (memory or Redis),
//! the cache, the change feed (the outbox listener, or Airtable's webhook feed), and the HTTP
//! application with model-cache's layers and routers.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use axum::Router;
use cache_airtable::{AirtableError, FeedError, WebhookFeed};
use cache_core::{Cache, ConfigError, MemoryStore, store::Store};
use cache_http::{
    CacheTelemetryLayer, ResponseCacheLayer,
    admin::{self, AdminConfig},
    dashboard::{Dashboard, DeliveryLog},
    metrics,
    webhook::{self, WebhookConfig},
};
use cache_redis::RedisStore;
use cache_sql::{OutboxListener, SqlError, SqlOrigin, SqlOriginBuilder};

use crate::{
    airtable::{self, seed::SeedError},
    api::{self, AppState},
    config::{CacheSettings, Config, OutboxMode, RedisUrl, Secret, Source, StoreSettings},
    database::{DATA_VERSION, Database, DatabaseUrl},
    models::{self, Event, Project, Referral, User, Vote},
    origin::{DemoOrigin, OriginSettings},
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
    /// The database's tables do not answer the models (a missing column, a wrong type), or
    /// the outbox failed.
    #[error("database {url}: {source}")]
    Sql {
        /// The database (password masked).
        url: String,
        /// What failed, naming the table and the column.
        #[source]
        source: SqlError,
    },
    /// `CACHE_OUTBOX=on` but the outbox is not installed.
    #[error(
        "CACHE_OUTBOX=on but database {url} has no outbox: run `demo-app outbox install` first, \
         or set CACHE_OUTBOX=auto (listen when it is installed) or off"
    )]
    NoOutbox {
        /// The database (password masked).
        url: String,
    },
    /// Airtable failed or refused (or its client's configuration is unusable).
    #[error("Airtable base {base}: {source}")]
    Airtable {
        /// The base.
        base: String,
        /// What failed.
        #[source]
        source: AirtableError,
    },
    /// The Airtable webhook feed could not be set up.
    #[error("Airtable base {base}: the webhook feed: {source}")]
    Feed {
        /// The base.
        base: String,
        /// What failed.
        #[source]
        source: FeedError,
    },
    /// Seeding an Airtable base failed.
    #[error("seeding Airtable base {base}: {source}")]
    Seed {
        /// The base.
        base: String,
        /// What failed; what was created before stays.
        #[source]
        source: SeedError,
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
    /// A bulk command did part of its work (its report says what); the rest failed.
    #[error("{0}")]
    Incomplete(String),
    /// The database was seeded by another version of the demo.
    #[error(
        "database {url} was seeded by another version of demo-app (its columns or ids differ): \
         recreate it with `demo-app seed` (this drops the demo's tables) or point DATABASE_URL elsewhere"
    )]
    OutdatedDatabase {
        /// The database (password masked).
        url: String,
    },
    /// The API would be reachable from other machines with secrets nobody chose.
    #[error(
        "{vars} must be set when BIND_ADDR ({bind_addr}) is not a loopback address: \
         secrets are generated only for a server other machines cannot reach \
         (`demo-app secret` prints a good one)"
    )]
    MissingSecrets {
        /// The variables that are not set: `WEBHOOK_SECRET and ADMIN_TOKEN`.
        vars: String,
        /// The address the API would listen on.
        bind_addr: IpAddr,
    },
}

/// Connects to the database, creates the tables when missing and seeds them when empty;
/// refuses a database seeded by another version of the demo.
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
    } else if db.data_version().await.map_err(fail)? != Some(DATA_VERSION) {
        return Err(AppError::OutdatedDatabase { url: url.to_string() });
    }
    Ok(db)
}

/// `cache-sql`'s origin over the demo's tables, for every model of [`models::schemas`]: it
/// checks the tables against the models (refusing, naming the table and the column, what they
/// cannot answer) and prepares the statements.
pub async fn sql_origin(db: &Database) -> Result<SqlOrigin, SqlError> {
    models::schemas()
        .into_iter()
        .fold(SqlOrigin::builder(db.sql_pool()), SqlOriginBuilder::entity)
        .build()
        .await
}

/// The demo's origin over `db`, as slow as `settings` say.
pub async fn open_origin(db: &Database, settings: OriginSettings) -> Result<DemoOrigin, SqlError> {
    Ok(DemoOrigin::new(sql_origin(db).await?, settings))
}

/// The store `REDIS_URL` names, or memory, with the default budget, timeouts and breaker.
pub async fn connect_store(url: Option<&RedisUrl>) -> Result<Arc<dyn Store>, AppError> {
    connect_store_with(url, &StoreSettings::default()).await
}

/// The store `REDIS_URL` names, or memory within its budget. A Redis that is down or hung does
/// not stop it: the store connects in the background and the cache answers from the database
/// meanwhile.
pub async fn connect_store_with(url: Option<&RedisUrl>, settings: &StoreSettings) -> Result<Arc<dyn Store>, AppError> {
    let fail = |source| AppError::Redis {
        url: url.map(ToString::to_string).unwrap_or_default(),
        source,
    };
    Ok(match url {
        None => Arc::new(
            MemoryStore::builder()
                .max_capacity_bytes(settings.memory_budget_bytes)
                .build(),
        ),
        Some(RedisUrl::Single(url)) => Arc::new(
            settings
                .redis
                .apply(RedisStore::builder(url))
                .namespace(REDIS_NAMESPACE)
                .connect()
                .await
                .map_err(fail)?,
        ),
        Some(RedisUrl::Cluster(nodes)) => Arc::new(
            settings
                .redis
                .apply(RedisStore::cluster(nodes))
                .namespace(REDIS_NAMESPACE)
                .connect()
                .await
                .map_err(fail)?,
        ),
    })
}

/// The cache over `store` and `origin`, with every model of the demo registered and no near
/// cache.
pub fn build_cache(store: Arc<dyn Store>, origin: DemoOrigin, enabled: bool) -> Result<Cache, ConfigError> {
    build_cache_with(
        store,
        origin,
        CacheSettings {
            enabled,
            ..CacheSettings::default()
        },
    )
}

/// The cache over `store` and `origin` as `settings` say, with every model of the demo
/// registered: what `serve` builds.
pub fn build_cache_with(
    store: Arc<dyn Store>,
    origin: DemoOrigin,
    settings: CacheSettings,
) -> Result<Cache, ConfigError> {
    Cache::builder(store, origin)
        .enabled(settings.enabled)
        .near_cache(settings.near_bytes)
        .register::<User>()
        .register::<Event>()
        .register::<Project>()
        .register::<Vote>()
        .register::<Referral>()
        .build()
}

/// The listener that applies the outbox's changes to `cache` (a round at once, then one per
/// poll on SQLite, per notification on PostgreSQL); it logs each batch applied. `None` when
/// the origin is not SQL.
pub fn outbox_listener(origin: &DemoOrigin, cache: &Cache) -> Option<OutboxListener> {
    let listener = OutboxListener::new(origin.sql()?, cache).on_batch(|rows| {
        tracing::info!(rows = rows.len(), "demo_outbox_applied");
    });
    Some(listener)
}

/// The outbox listener `mode` asks for over `db`: `None` when it is off, or `auto` and the
/// outbox is not installed.
pub async fn outbox_for(
    mode: OutboxMode,
    url: &DatabaseUrl,
    db: &Database,
    origin: &DemoOrigin,
    cache: &Cache,
) -> Result<Option<OutboxListener>, AppError> {
    let installed = || async {
        db.has_outbox().await.map_err(|source| AppError::Database {
            url: url.to_string(),
            source,
        })
    };
    Ok(match mode {
        OutboxMode::Off => {
            if installed().await? {
                tracing::warn!(
                    "demo_outbox_off: CACHE_OUTBOX=off but the outbox is installed: changes pile up in it \
                     until a listener runs (`demo-app outbox remove` drops the triggers)"
                );
            }
            None
        }
        OutboxMode::Auto if !installed().await? => None,
        OutboxMode::On if !installed().await? => return Err(AppError::NoOutbox { url: url.to_string() }),
        OutboxMode::Auto | OutboxMode::On => outbox_listener(origin, cache),
    })
}

/// Everything `serve` runs, built from the configuration: the HTTP application and, when
/// `CACHE_OUTBOX` asks for it, the outbox listener, or on Airtable the webhook feed.
pub struct Service {
    /// The HTTP application.
    pub router: Router,
    /// What the handlers share.
    pub state: AppState,
    /// The outbox listener to run beside the server.
    pub outbox: Option<OutboxListener>,
    /// The Airtable webhook feed to run beside the server (its notification route is in
    /// `router`).
    pub feed: Option<WebhookFeed>,
    /// The deliveries the dashboard lists (the webhook's, refused Airtable notifications).
    pub deliveries: DeliveryLog,
    /// What to print about secrets generated for this run.
    pub notice: Option<String>,
}

/// Opens the configured source: the SQL database (created and seeded when empty) and its
/// origin, or the origin on the Airtable base (no database).
pub async fn open_source(config: &Config) -> Result<(Option<Database>, DemoOrigin), AppError> {
    let url = &config.database_url;
    // Where a source is opened: another source of truth is another arm here.
    Ok(match config.source() {
        Source::Sqlite | Source::Postgres => {
            let db = open_database(url).await?;
            let origin = open_origin(&db, config.origin_settings())
                .await
                .map_err(|source| AppError::Sql {
                    url: url.to_string(),
                    source,
                })?;
            (Some(db), origin)
        }
        Source::Airtable => {
            let settings = config.airtable_settings().map_err(AppError::Usage)?;
            (None, airtable::open_origin(&settings)?)
        }
    })
}

/// Opens the source and the store and builds the application, as `serve` does.
pub async fn service(config: &Config) -> Result<Service, AppError> {
    let (secrets, notice) = Secrets::from_config(config)?;
    let (db, origin) = open_source(config).await?;
    let store = connect_store_with(config.redis_url.as_ref(), &config.store_settings()).await?;
    let cache = build_cache_with(store, origin.clone(), config.cache_settings())?;
    let outbox = match &db {
        Some(db) => outbox_for(config.cache_outbox, &config.database_url, db, &origin, &cache).await?,
        None => None,
    };
    let feed = match config.source() {
        Source::Airtable => {
            let settings = config.airtable_settings().map_err(AppError::Usage)?;
            airtable::feed(&settings, &origin, &cache)?
        }
        Source::Sqlite | Source::Postgres => None,
    };
    let state = AppState { cache, origin };
    let deliveries = DeliveryLog::default();
    Ok(Service {
        router: router_with(state.clone(), &secrets, feed.as_ref(), deliveries.clone())?,
        state,
        outbox,
        feed,
        deliveries,
        notice,
    })
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
    /// The configured secrets. When some are missing and the API listens on loopback only (a
    /// newcomer's `cargo run`), they are generated for this run, and the second value is what
    /// to print to stderr for the user to copy (`export WEBHOOK_SECRET=…`); listening on
    /// another address without them is refused.
    pub fn from_config(config: &Config) -> Result<(Self, Option<String>), AppError> {
        let given = [
            ("WEBHOOK_SECRET", "webhook secret", &config.webhook_secret),
            ("ADMIN_TOKEN", "admin token", &config.admin_token),
        ];
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, _, secret)| secret.is_none())
            .map(|(var, _, _)| *var)
            .collect();
        if !missing.is_empty() && !config.bind_addr.is_loopback() {
            return Err(AppError::MissingSecrets {
                vars: missing.join(" and "),
                bind_addr: config.bind_addr,
            });
        }
        let mut exports = String::new();
        let mut pick = |(var, what, given): (&str, &'static str, &Option<Secret>)| -> Result<Secret, AppError> {
            if let Some(secret) = given {
                return Ok(secret.clone());
            }
            let secret = Secret::generate(what)?;
            exports.push_str(&format!("\n  export {var}={}", secret.expose()));
            Ok(secret)
        };
        let [webhook, admin] = given;
        let secrets = Self {
            webhook: pick(webhook)?,
            admin: pick(admin)?,
        };
        let notice = (!missing.is_empty()).then(|| {
            let (subject, pronoun) = match missing.as_slice() {
                [one] => (format!("{one} is"), "it"),
                _ => (format!("{} are", missing.join(" and ")), "them"),
            };
            format!(
                "{subject} not set: generated for this run (set {pronoun} to keep {pronoun} across restarts).\n\
                 For the README's curl examples, run this in the other terminal:\n{exports}\n"
            )
        });
        Ok((secrets, notice))
    }
}

/// The HTTP application: the demo's routes, with responses of the read routes cached, the
/// webhook, admin and metrics routers of cache-http, and per-request telemetry headers
/// (`X-Cache`, `X-Origin-Calls`) on everything.
pub fn router(state: AppState, secrets: &Secrets) -> Result<Router, AppError> {
    router_with(state, secrets, None, DeliveryLog::default())
}

/// [`router`], with the Airtable webhook feed's notification route when there is a feed, and
/// the dashboard's deliveries kept in `deliveries`.
pub fn router_with(
    state: AppState,
    secrets: &Secrets,
    feed: Option<&WebhookFeed>,
    deliveries: DeliveryLog,
) -> Result<Router, AppError> {
    let cache = state.cache.clone();
    let reads = api::read_routes().route_layer(ResponseCacheLayer::new(&cache));
    // The operator's page at `/admin/`: it lists the webhook's deliveries and, from the
    // cache's feed status, the change feeds' (the outbox's, Airtable's).
    let dashboard = Dashboard::new(&cache)
        .prometheus(metrics::install_recorder()?)
        .deliveries(deliveries.clone());
    let webhook = WebhookConfig::new(cache.clone(), secrets.webhook.expose()).deliveries(deliveries.clone());
    let mut app = Router::new()
        .merge(reads)
        .merge(api::write_routes())
        .with_state(state)
        .merge(webhook::routes(webhook)?)
        .merge(admin::routes(
            AdminConfig::new(cache.clone(), secrets.admin.expose()).dashboard(dashboard),
        )?)
        .merge(metrics::routes_for(&cache)?);
    if let Some(feed) = feed {
        app = app.merge(airtable::notification_routes(feed, deliveries));
    }
    Ok(app.layer(CacheTelemetryLayer::new()))
}

/// `demo-app serve`: everything above, listening on `BIND_ADDR:PORT` until Ctrl-C or SIGTERM,
/// with the outbox listener or the Airtable feed beside it when there is one.
pub async fn serve(config: &Config) -> Result<(), AppError> {
    let service = service(config).await?;
    let addr = SocketAddr::new(config.bind_addr, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Io {
            what: format!("cannot listen on {addr} (set PORT to another port)"),
            source,
        })?;
    let source = match config.source() {
        Source::Airtable => format!(
            "airtable {} at {}",
            config.airtable_base_id.as_deref().unwrap_or_default(),
            config.airtable_api_url
        ),
        Source::Sqlite | Source::Postgres => config.database_url.to_string(),
    };
    tracing::info!(
        address = %format!("http://{addr}"),
        source = %source,
        store = %config.redis_url.as_ref().map_or_else(|| "memory".to_owned(), ToString::to_string),
        cache_enabled = config.cache_enabled,
        near_cache_bytes = config.cache_settings().near_bytes,
        outbox = service.outbox.is_some(),
        airtable_feed = service.feed.as_ref().map(WebhookFeed::name),
        // The SQL source's; Airtable's client keeps Airtable's own limit.
        origin_latency_ms = service.state.origin.sql().map(|_| config.origin_latency_ms),
        origin_rate_limit = service.state.origin.sql().map(|_| config.origin_rate_limit),
        "demo_listening"
    );
    eprintln!("The operator's dashboard: http://{addr}/admin/ (sign in with ADMIN_TOKEN)");
    if let Some(notice) = &service.notice {
        eprintln!("\n{notice}");
    }
    run(service, listener, shutdown_signal()).await
}

/// Serves `service` on `listener` until `shutdown` completes, with its outbox listener or
/// Airtable feed running beside it; they stop with the server.
pub async fn run(
    service: Service,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let outbox = service.outbox.map(|listener| {
        let stopped = until_stopped(stopped.clone());
        tokio::spawn(async move {
            if let Err(err) = listener.run(stopped).await {
                tracing::error!(error = %err, "demo_outbox_failed");
            }
        })
    });
    let feed = service.feed.map(|feed| {
        let stopped = until_stopped(stopped.clone());
        tokio::spawn(async move { feed.run(stopped).await })
    });
    let served = axum::serve(listener, service.router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    // They stop at their next wake-up; a panic in them was already reported.
    for task in [outbox, feed].into_iter().flatten() {
        let _ = task.await;
    }
    served.map_err(|source| AppError::Io {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Cli;

    fn config(bind_addr: &str, webhook: Option<&str>, admin: Option<&str>) -> Config {
        let mut config = Cli::try_parse_from(["demo-app"]).unwrap().config;
        config.bind_addr = bind_addr.parse().unwrap();
        config.webhook_secret = webhook.map(|s| Secret::new("webhook secret", s).unwrap());
        config.admin_token = admin.map(|s| Secret::new("admin token", s).unwrap());
        config
    }

    const CHOSEN: &str = "a-secret-the-operator-chose-1234";

    #[test]
    fn secrets_are_generated_on_loopback_with_lines_to_copy() {
        for addr in ["127.0.0.1", "::1"] {
            let (secrets, notice) = Secrets::from_config(&config(addr, None, None)).unwrap();
            let notice = notice.expect("a notice");
            assert!(
                notice.starts_with("WEBHOOK_SECRET and ADMIN_TOKEN are not set"),
                "{notice}"
            );
            assert!(
                notice.contains(&format!("\n  export WEBHOOK_SECRET={}\n", secrets.webhook.expose())),
                "{notice}"
            );
            assert!(
                notice.contains(&format!("\n  export ADMIN_TOKEN={}\n", secrets.admin.expose())),
                "{notice}"
            );
            assert_ne!(secrets.webhook, secrets.admin);
        }

        let (secrets, notice) = Secrets::from_config(&config("127.0.0.1", Some(CHOSEN), None)).unwrap();
        assert_eq!(secrets.webhook.expose(), CHOSEN);
        let notice = notice.expect("a notice");
        assert!(notice.starts_with("ADMIN_TOKEN is not set"), "{notice}");
        assert!(
            !notice.contains(CHOSEN) && !notice.contains("WEBHOOK_SECRET"),
            "{notice}"
        );
    }

    #[test]
    fn secrets_are_required_beyond_loopback() {
        let err = Secrets::from_config(&config("0.0.0.0", None, None)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "WEBHOOK_SECRET and ADMIN_TOKEN must be set when BIND_ADDR (0.0.0.0) is not a loopback address"
            ),
            "{err}"
        );
        let err = Secrets::from_config(&config("192.0.2.7", Some(CHOSEN), None)).unwrap_err();
        assert!(err.to_string().starts_with("ADMIN_TOKEN must be set"), "{err}");

        let (secrets, notice) = Secrets::from_config(&config("0.0.0.0", Some(CHOSEN), Some(CHOSEN))).unwrap();
        assert_eq!((secrets.webhook.expose(), secrets.admin.expose()), (CHOSEN, CHOSEN));
        assert_eq!(notice, None, "nothing to print when everything is configured");
    }
}
