//! The command line and its environment variables. Every setting is a flag and an
//! environment variable (the flag wins); a bad value stops the program with a message naming
//! both.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::{database::DatabaseUrl, origin::OriginSettings};

/// Where the records come from: the source of truth the demo's origin reads. `SOURCE` picks
/// SQL (the default; then `DATABASE_URL`'s scheme says which database) or Airtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A SQLite file (`sqlite://PATH`, the default): created and seeded when missing.
    Sqlite,
    /// A PostgreSQL database (`postgres://…`).
    Postgres,
    /// An Airtable base (`SOURCE=airtable`, `AIRTABLE_BASE_ID`): Airtable's API, or the
    /// simulator's offline (`AIRTABLE_API_URL`).
    Airtable,
}

/// What `SOURCE` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// The SQL database `DATABASE_URL` names (SQLite or PostgreSQL, by its scheme).
    Sql,
    /// The Airtable base `AIRTABLE_BASE_ID` names; `DATABASE_URL` is not used.
    Airtable,
}

/// A hackathon-judging API on model-cache: SQL or Airtable as the source of truth, Redis (or
/// memory) as the cache.
#[derive(Debug, Parser)]
#[command(name = "demo-app", version, about)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub config: Config,
    /// What to do (`serve` when absent).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Remove cached records the database no longer has.
    Sweep(SweepArgs),
    /// Load records from the database into the cache ahead of traffic.
    Warm(WarmArgs),
    /// Print a new webhook secret and where to put it.
    Secret,
    /// Print the entities' schema as JSON.
    Schema,
    /// Drop and recreate the demo database with its generated data.
    Seed,
    /// Remove cached entries from the cache (every entry of the demo when no pattern is given).
    Flush(FlushArgs),
    /// The outbox: triggers that record every writer's changes, for `serve` to apply.
    Outbox(OutboxArgs),
    /// Airtable as the source: the offline simulator, seeding a base, its webhook.
    #[command(subcommand)]
    Airtable(AirtableCommand),
}

/// `demo-app airtable …`.
#[derive(Debug, Clone, Subcommand)]
pub enum AirtableCommand {
    /// Run an Airtable simulator with the demo's base and empty tables, for the offline demo
    /// (until Ctrl-C); it prints the settings to export.
    Sim {
        /// The address it listens on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: SocketAddr,
    },
    /// Fill the base's tables with the demo's data through Airtable's API (10 records a
    /// request, within the base's rate limit); the tables must exist and be empty.
    Seed {
        /// Delete the records the tables hold first.
        #[arg(long)]
        replace: bool,
    },
    /// The base's webhook, which keeps `serve`'s cache current (the webhooks API).
    Webhook {
        /// What to do with it.
        #[command(subcommand)]
        action: WebhookAction,
    },
}

/// What `demo-app airtable webhook` does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum WebhookAction {
    /// Create the base's webhook, pointing at `serve`'s notification route, and keep its id
    /// and MAC secret in AIRTABLE_WEBHOOK_FILE, where `serve` finds them.
    Setup {
        /// Where Airtable sends its notifications: a URL Airtable can reach, ending in
        /// `/airtable/notifications`. Default: `http://127.0.0.1:PORT/airtable/notifications`
        /// (fine for the simulator; for Airtable itself, a public URL).
        #[arg(long, env = "AIRTABLE_NOTIFICATION_URL")]
        notification_url: Option<String>,
        /// No notifications (the URL is ignored): `serve` finds the changes by polling every
        /// minute.
        #[arg(long)]
        poll_only: bool,
        /// Create a new webhook even though the file names one the base still has (the old
        /// one is removed).
        #[arg(long)]
        replace: bool,
    },
    /// List the base's webhooks, marking the one `serve` uses.
    List,
    /// Remove the webhook the file names (or `--id`), and the file.
    Remove {
        /// Remove this webhook (`ach…`) instead.
        #[arg(long)]
        id: Option<String>,
    },
}

/// `demo-app outbox`.
#[derive(Debug, Clone, Args)]
pub struct OutboxArgs {
    /// What to do with the outbox.
    #[command(subcommand)]
    pub action: OutboxAction,
}

/// What `demo-app outbox` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum OutboxAction {
    /// Create the outbox table and the triggers on the demo's tables (again: it replaces them).
    Install,
    /// Drop the triggers (the outbox table is kept, with what it holds).
    Remove,
    /// Print the SQL that `install` runs (or `remove` runs, with `--remove`), for review.
    Print {
        /// Print the statements that remove the triggers instead.
        #[arg(long)]
        remove: bool,
    },
}

/// Whether `serve` applies the outbox's changes to the cache (`CACHE_OUTBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutboxMode {
    /// Listen when the outbox is installed (`demo-app outbox install`), not otherwise.
    Auto,
    /// Listen; refuse to start when the outbox is not installed.
    On,
    /// Never listen (the outbox, if installed, fills up until a listener runs).
    Off,
}

/// `demo-app flush`.
#[derive(Debug, Clone, Args)]
pub struct FlushArgs {
    /// Only logical keys matching this glob (`projects:*`, `projects:rec123`, `v:resp:*`), as
    /// `DELETE /admin/cache?pattern=` takes it; everything of the demo when absent.
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<String>,
}

/// `demo-app sweep`.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Sweep only this entity (`projects`); every entity when absent. Repeatable.
    #[arg(long = "entity", value_name = "ENTITY")]
    pub entities: Vec<String>,
    /// Ids checked per database call.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
}

/// `demo-app warm`.
#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// Warm only this entity (`projects`); every entity when absent. Repeatable.
    #[arg(long = "entity", value_name = "ENTITY")]
    pub entities: Vec<String>,
    /// Only the N most recently created records of each entity; all when absent.
    #[arg(long, value_name = "N")]
    pub recent: Option<usize>,
    /// Records read and written per call.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
}

/// Settings for every command.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// The port the API listens on.
    #[arg(long, env = "PORT", default_value_t = 3000, value_parser = parse_port, global = true)]
    pub port: u16,

    /// The address the API listens on (0.0.0.0 to accept other machines).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1", global = true)]
    pub bind_addr: IpAddr,

    /// The source of truth: `sql` (the database DATABASE_URL names) or `airtable` (the base
    /// AIRTABLE_BASE_ID names, through AIRTABLE_API_URL).
    #[arg(long = "source", env = "SOURCE", value_name = "SOURCE", value_enum, default_value_t = SourceKind::Sql, global = true)]
    pub source_kind: SourceKind,

    /// The SQL source of truth: sqlite://PATH (created and seeded when missing) or
    /// postgres://…. Not used with SOURCE=airtable.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://demo.db", global = true)]
    pub database_url: DatabaseUrl,

    /// The Airtable base (appXXXXXXXXXXXXXX), with SOURCE=airtable and the `airtable` commands.
    #[arg(long, env = "AIRTABLE_BASE_ID", global = true)]
    pub airtable_base_id: Option<String>,

    /// A personal access token for the base (scopes: data.records:read and write,
    /// schema.bases:read, webhook:manage).
    #[arg(long, env = "AIRTABLE_TOKEN", hide_env_values = true, global = true)]
    pub airtable_token: Option<AirtableToken>,

    /// Airtable's API; the simulator's (`http://127.0.0.1:8787`) offline. HTTPS needs the
    /// demo built with `--features tls`.
    #[arg(long, env = "AIRTABLE_API_URL", default_value = cache_airtable::AIRTABLE_API_URL, global = true)]
    pub airtable_api_url: String,

    /// Requests a second to the base from this process, 1 to 5 (Airtable allows 5 per base:
    /// lower it when several processes share the base).
    #[arg(
        long,
        env = "AIRTABLE_REQUESTS_PER_SECOND",
        default_value_t = cache_airtable::DEFAULT_REQUESTS_PER_SECOND,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(cache_airtable::DEFAULT_REQUESTS_PER_SECOND)),
        global = true
    )]
    pub airtable_requests_per_second: u32,

    /// The file `demo-app airtable webhook setup` writes the base's webhook to (its id and MAC
    /// secret, readable by the owner only) and `serve` reads it from.
    #[arg(
        long,
        env = "AIRTABLE_WEBHOOK_FILE",
        default_value = "airtable-webhook.json",
        global = true
    )]
    pub airtable_webhook_file: PathBuf,

    /// The cache: redis://HOST:PORT (or rediss://); a Redis Cluster when it lists several
    /// nodes separated by commas or uses redis+cluster://. In memory when absent.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<RedisUrl>,

    /// Whether reads go through the cache (false: every read goes to the database).
    #[arg(
        long,
        env = "CACHE_ENABLED",
        default_value = "true",
        value_parser = cache_core::config::parse_switch,
        action = ArgAction::Set,
        global = true
    )]
    pub cache_enabled: bool,

    /// Mebibytes the in-memory cache may hold (when REDIS_URL is unset); beyond it the least
    /// useful entries are evicted.
    #[arg(
        long,
        env = "CACHE_MEMORY_BUDGET_MB",
        default_value_t = DEFAULT_MEMORY_BUDGET_MB,
        value_parser = parse_memory_budget,
        global = true
    )]
    pub cache_memory_budget_mb: u64,

    /// Mebibytes each instance keeps in process in front of Redis (the near cache: decoded
    /// records, query results and cached responses, kept consistent by Redis's client-side
    /// caching); 0 turns it off. Unused when REDIS_URL is unset.
    #[arg(
        long,
        env = "CACHE_NEAR_MB",
        default_value_t = DEFAULT_NEAR_MB,
        value_parser = parse_near_budget,
        global = true
    )]
    pub cache_near_mb: u64,

    /// Whether `serve` applies the changes the outbox records (made by any writer: sqlite3,
    /// psql, another service) to the cache: auto (when the outbox is installed), on, off.
    #[arg(long, env = "CACHE_OUTBOX", value_enum, default_value_t = OutboxMode::Auto, global = true)]
    pub cache_outbox: OutboxMode,

    /// The secret that signs webhooks (`demo-app secret` makes one). When absent and the API
    /// listens on loopback only, one is generated for the run and printed to stderr.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_webhook_secret, global = true)]
    pub webhook_secret: Option<Secret>,

    /// The bearer token of the admin API. When absent and the API listens on loopback only,
    /// one is generated for the run and printed to stderr.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token, global = true)]
    pub admin_token: Option<Secret>,

    /// Milliseconds added to every database call, to play a slow hosted API.
    #[arg(long, env = "ORIGIN_LATENCY_MS", default_value_t = 150, value_parser = parse_latency, global = true)]
    pub origin_latency_ms: u64,

    /// Database calls per second at most (0: no limit); calls over it wait for their turn.
    #[arg(long, env = "ORIGIN_RATE_LIMIT", default_value_t = 0, value_parser = parse_rate_limit, global = true)]
    pub origin_rate_limit: u32,

    /// The most milliseconds one cache operation may wait on Redis, connecting included;
    /// past it the request is answered from the database.
    #[arg(long, env = "REDIS_OPERATION_BUDGET_MS", default_value_t = 250, value_parser = parse_redis_ms, global = true)]
    pub redis_operation_budget_ms: u64,

    /// Milliseconds to establish a connection to Redis (at start-up and when reconnecting).
    #[arg(long, env = "REDIS_CONNECT_TIMEOUT_MS", default_value_t = 1000, value_parser = parse_redis_ms, global = true)]
    pub redis_connect_timeout_ms: u64,

    /// Milliseconds to wait for one answer of Redis in bulk commands (warm, sweep, flush).
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT_MS", default_value_t = 1000, value_parser = parse_redis_ms, global = true)]
    pub redis_response_timeout_ms: u64,

    /// Redis failures in a row that open the circuit breaker (one slow failure opens it at
    /// once); while open, requests skip Redis.
    #[arg(long, env = "REDIS_BREAKER_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub redis_breaker_failures: u32,

    /// Milliseconds the open breaker waits before letting one probe through to Redis.
    #[arg(long, env = "REDIS_BREAKER_COOL_DOWN_MS", default_value_t = 1000, value_parser = parse_redis_ms, global = true)]
    pub redis_breaker_cool_down_ms: u64,
}

/// How the demo talks to Redis: timeouts and the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSettings {
    /// [`RedisStoreBuilder::operation_budget`](cache_redis::RedisStoreBuilder::operation_budget).
    pub operation_budget: Duration,
    /// The connect timeout.
    pub connect_timeout: Duration,
    /// The response timeout.
    pub response_timeout: Duration,
    /// The circuit breaker.
    pub breaker: cache_redis::CircuitBreakerConfig,
}

impl Default for RedisSettings {
    /// cache-redis's defaults.
    fn default() -> Self {
        Self {
            operation_budget: cache_redis::DEFAULT_OPERATION_BUDGET,
            connect_timeout: cache_redis::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: cache_redis::DEFAULT_RESPONSE_TIMEOUT,
            breaker: cache_redis::CircuitBreakerConfig::default(),
        }
    }
}

impl RedisSettings {
    /// `builder` with these settings.
    pub fn apply(&self, builder: cache_redis::RedisStoreBuilder) -> cache_redis::RedisStoreBuilder {
        builder
            .timeouts(self.connect_timeout, self.response_timeout)
            .operation_budget(self.operation_budget)
            .circuit_breaker(self.breaker)
    }
}

/// How the store is built: the in-memory budget, or how it talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// The in-memory store's budget, in bytes
    /// ([`MemoryStoreBuilder::max_capacity_bytes`](cache_core::MemoryStoreBuilder::max_capacity_bytes)).
    pub memory_budget_bytes: u64,
    /// Redis's timeouts and circuit breaker.
    pub redis: RedisSettings,
}

impl Default for StoreSettings {
    /// cache-core's and cache-redis's defaults.
    fn default() -> Self {
        Self {
            memory_budget_bytes: cache_core::memory::DEFAULT_MEMORY_BUDGET,
            redis: RedisSettings::default(),
        }
    }
}

/// How the cache is built over its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether reads go through the cache (`CACHE_ENABLED`).
    pub enabled: bool,
    /// The near cache's budget in bytes, 0 for none
    /// ([`CacheBuilder::near_cache`](cache_core::CacheBuilder::near_cache)).
    pub near_bytes: u64,
}

impl Default for CacheSettings {
    /// Enabled, no near cache.
    fn default() -> Self {
        Self {
            enabled: true,
            near_bytes: 0,
        }
    }
}

/// How the demo reaches its Airtable base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AirtableSettings {
    /// `appXXXXXXXXXXXXXX`.
    pub base_id: String,
    /// The personal access token.
    pub token: AirtableToken,
    /// Airtable's API, or the simulator's.
    pub api_url: String,
    /// Requests a second to the base, 1 to 5.
    pub requests_per_second: u32,
    /// Where the webhook's id and secret are kept.
    pub webhook_file: PathBuf,
}

impl Config {
    /// Where the records come from: Airtable with `SOURCE=airtable`, otherwise the database
    /// `DATABASE_URL`'s scheme names.
    pub fn source(&self) -> Source {
        match self.source_kind {
            SourceKind::Airtable => Source::Airtable,
            SourceKind::Sql => self.database_url.source(),
        }
    }

    /// How to reach the Airtable base; refused, naming what to set, when the base or the
    /// token is missing.
    pub fn airtable_settings(&self) -> Result<AirtableSettings, String> {
        let missing: Vec<&str> = [
            ("AIRTABLE_BASE_ID", self.airtable_base_id.is_none()),
            ("AIRTABLE_TOKEN", self.airtable_token.is_none()),
        ]
        .into_iter()
        .filter_map(|(var, missing)| missing.then_some(var))
        .collect();
        match (&self.airtable_base_id, &self.airtable_token) {
            (Some(base_id), Some(token)) => Ok(AirtableSettings {
                base_id: base_id.trim().to_owned(),
                token: token.clone(),
                api_url: self.airtable_api_url.trim().to_owned(),
                requests_per_second: self.airtable_requests_per_second,
                webhook_file: self.airtable_webhook_file.clone(),
            }),
            _ => Err(format!(
                "Airtable needs {} (offline, `demo-app airtable sim` runs a simulator and prints them)",
                missing.join(" and ")
            )),
        }
    }

    /// How the store is built.
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            memory_budget_bytes: self.cache_memory_budget_mb.saturating_mul(MIB),
            redis: self.redis_settings(),
        }
    }

    /// How the cache is built: a near cache only in front of Redis (the in-memory store is in
    /// process already).
    pub fn cache_settings(&self) -> CacheSettings {
        CacheSettings {
            enabled: self.cache_enabled,
            near_bytes: match self.redis_url {
                Some(_) => self.cache_near_mb.saturating_mul(MIB),
                None => 0,
            },
        }
    }

    /// How the store talks to Redis.
    pub fn redis_settings(&self) -> RedisSettings {
        RedisSettings {
            operation_budget: Duration::from_millis(self.redis_operation_budget_ms),
            connect_timeout: Duration::from_millis(self.redis_connect_timeout_ms),
            response_timeout: Duration::from_millis(self.redis_response_timeout_ms),
            breaker: cache_redis::CircuitBreakerConfig {
                failure_threshold: self.redis_breaker_failures,
                cool_down: Duration::from_millis(self.redis_breaker_cool_down_ms),
            },
        }
    }

    /// How slow the origin is.
    pub fn origin_settings(&self) -> OriginSettings {
        OriginSettings {
            latency: Duration::from_millis(self.origin_latency_ms),
            rate_limit: self.origin_rate_limit,
        }
    }
}

/// A secret (the webhook secret, the admin token), accepted as cache-http's routers accept
/// it; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// `value` without surrounding whitespace, as the secret for `what` (`webhook secret`),
    /// when [`cache_http::Secret`] takes it: at least [`cache_http::MIN_SECRET_LEN`] bytes.
    pub fn new(what: &'static str, value: &str) -> Result<Self, cache_http::SecretError> {
        let value = value.trim();
        cache_http::Secret::new(what, value)?;
        Ok(Self(value.to_owned()))
    }

    /// A new random secret for `what` ([`cache_http::generate_secret`]).
    pub fn generate(what: &'static str) -> Result<Self, cache_http::SecretError> {
        Self::new(what, &cache_http::generate_secret()?)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An Airtable personal access token; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AirtableToken(String);

impl AirtableToken {
    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for AirtableToken {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "" => Err("it is empty: set a personal access token (pat…)".to_owned()),
            token => Ok(Self(token.to_owned())),
        }
    }
}

impl fmt::Debug for AirtableToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AirtableToken(***)")
    }
}

/// Where the Redis (or Valkey) cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrl {
    /// One server: `redis://host:6379/0`.
    Single(String),
    /// A Redis Cluster, by some of its nodes (`redis://host:port` each).
    Cluster(Vec<String>),
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value.is_empty() {
            return Err("it is empty; leave REDIS_URL unset to cache in memory".to_owned());
        }
        let mut cluster = false;
        let nodes = value
            .split(',')
            .map(|node| {
                let node = node.trim();
                let (scheme, rest) = node
                    .split_once("://")
                    .ok_or_else(|| format!("`{node}` is not a URL: expected redis://HOST:PORT"))?;
                let scheme = match scheme {
                    "redis" | "rediss" | "valkey" | "valkeys" => scheme,
                    "redis+cluster" | "redis-cluster" => {
                        cluster = true;
                        "redis"
                    }
                    "rediss+cluster" | "rediss-cluster" => {
                        cluster = true;
                        "rediss"
                    }
                    other => {
                        return Err(format!(
                            "`{other}://` is not a Redis scheme: use redis://, rediss:// or redis+cluster://"
                        ));
                    }
                };
                if rest.is_empty() || rest.starts_with('/') {
                    return Err(format!("`{node}` names no host"));
                }
                Ok(format!("{scheme}://{rest}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cluster || nodes.len() > 1 {
            Ok(Self::Cluster(nodes))
        } else {
            Ok(Self::Single(nodes.into_iter().next().unwrap_or_default()))
        }
    }
}

impl fmt::Display for RedisUrl {
    // Passwords never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |url: &str| match (url.split_once("://"), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
            _ => url.to_owned(),
        };
        match self {
            Self::Single(url) => f.write_str(&redact(url)),
            Self::Cluster(nodes) => {
                write!(f, "cluster ")?;
                f.write_str(&nodes.iter().map(|n| redact(n)).collect::<Vec<_>>().join(","))
            }
        }
    }
}

const MIB: u64 = 1024 * 1024;
/// cache-core's default budget, in mebibytes.
const DEFAULT_MEMORY_BUDGET_MB: u64 = cache_core::memory::DEFAULT_MEMORY_BUDGET / MIB;
/// The largest in-memory budget accepted: 1 TiB.
const MAX_MEMORY_BUDGET_MB: u64 = 1024 * 1024;

fn parse_memory_budget(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(mb) if (1..=MAX_MEMORY_BUDGET_MB).contains(&mb) => Ok(mb),
        _ => Err(format!(
            "expected whole mebibytes from 1 to {MAX_MEMORY_BUDGET_MB} (the in-memory cache's budget; {DEFAULT_MEMORY_BUDGET_MB} by default)"
        )),
    }
}

/// The near cache's default budget over Redis, in mebibytes.
pub const DEFAULT_NEAR_MB: u64 = 64;

fn parse_near_budget(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(mb) if mb <= MAX_MEMORY_BUDGET_MB => Ok(mb),
        _ => Err(format!(
            "expected whole mebibytes from 0 (off) to {MAX_MEMORY_BUDGET_MB} (the near cache's budget; {DEFAULT_NEAR_MB} by default)"
        )),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a port number from 1 to 65535".to_owned()),
        Ok(port) => Ok(port),
    }
}

/// The longest latency accepted: past a minute every request would time out anyway.
const MAX_LATENCY_MS: u64 = 60_000;

fn parse_latency(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(ms) if ms <= MAX_LATENCY_MS => Ok(ms),
        _ => Err(format!(
            "expected whole milliseconds from 0 to {MAX_LATENCY_MS} (0: no added latency)"
        )),
    }
}

/// The longest Redis timeout accepted: a cache that waits longer than this is an outage.
const MAX_REDIS_MS: u64 = 60_000;

fn parse_redis_ms(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(ms) if (1..=MAX_REDIS_MS).contains(&ms) => Ok(ms),
        _ => Err(format!("expected whole milliseconds from 1 to {MAX_REDIS_MS}")),
    }
}

fn parse_rate_limit(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| "expected a whole number of calls per second (0: no limit)".to_owned())
}

fn parse_webhook_secret(value: &str) -> Result<Secret, String> {
    parse_secret("webhook secret", value)
}

fn parse_admin_token(value: &str) -> Result<Secret, String> {
    parse_secret("admin token", value)
}

fn parse_secret(what: &'static str, value: &str) -> Result<Secret, String> {
    Secret::new(what, value).map_err(|err| format!("{err} (`demo-app secret` prints a good one)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("demo-app").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        // Read from the definitions: parsing would pick up the environment of the test run.
        let cmd = <Cli as clap::CommandFactory>::command();
        let default = |id: &str| {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(default("port"), ["3000"]);
        assert_eq!(default("database_url"), ["sqlite://demo.db"]);
        assert_eq!(default("source_kind"), ["sql"]);
        assert_eq!(default("airtable_api_url"), ["https://api.airtable.com"]);
        assert_eq!(default("cache_enabled"), ["true"]);
        assert_eq!(default("origin_latency_ms"), ["150"]);
        assert_eq!(default("origin_rate_limit"), ["0"]);
        assert_eq!(default("cache_outbox"), ["auto"]);
        assert_eq!(default("cache_near_mb"), [DEFAULT_NEAR_MB.to_string()]);
        // The budget's default is cache-core's.
        assert_eq!(
            default("cache_memory_budget_mb"),
            [(cache_core::memory::DEFAULT_MEMORY_BUDGET / MIB).to_string()]
        );
        assert!(default("redis_url").is_empty());
        // The flags' defaults are cache-redis's.
        let ms = |d: Duration| [d.as_millis().to_string()];
        let redis = RedisSettings::default();
        assert_eq!(default("redis_operation_budget_ms"), ms(redis.operation_budget));
        assert_eq!(default("redis_connect_timeout_ms"), ms(redis.connect_timeout));
        assert_eq!(default("redis_response_timeout_ms"), ms(redis.response_timeout));
        assert_eq!(
            default("redis_breaker_failures"),
            [redis.breaker.failure_threshold.to_string()]
        );
        assert_eq!(default("redis_breaker_cool_down_ms"), ms(redis.breaker.cool_down));
    }

    #[test]
    fn redis_settings_reach_the_store_builder() {
        let cli = parse(&[
            "--redis-operation-budget-ms",
            "100",
            "--redis-breaker-failures",
            "3",
            "--redis-breaker-cool-down-ms",
            "2500",
        ])
        .unwrap();
        let settings = cli.config.redis_settings();
        assert_eq!(settings.operation_budget, Duration::from_millis(100));
        assert_eq!(settings.breaker.failure_threshold, 3);
        assert_eq!(settings.breaker.cool_down, Duration::from_millis(2500));
        let err = parse(&["--redis-operation-budget-ms", "0"]).unwrap_err().to_string();
        assert!(
            err.contains("for '--redis-operation-budget-ms <REDIS_OPERATION_BUDGET_MS>': expected whole milliseconds from 1 to 60000"),
            "{err}"
        );
        let err = parse(&["--redis-breaker-failures", "0"]).unwrap_err().to_string();
        assert!(err.contains("--redis-breaker-failures"), "{err}");
    }

    #[test]
    fn the_near_budget_reaches_the_cache_settings_only_over_redis() {
        let cli = parse(&["--cache-near-mb", "8", "--redis-url", "redis://127.0.0.1:6379"]).unwrap();
        assert_eq!(cli.config.cache_settings().near_bytes, 8 * MIB);
        let cli = parse(&["--cache-near-mb", "0", "--redis-url", "redis://127.0.0.1:6379"]).unwrap();
        assert_eq!(cli.config.cache_settings().near_bytes, 0, "0 turns it off");
        let cli = parse(&["--cache-near-mb", "8"]).unwrap();
        assert_eq!(
            cli.config.cache_settings(),
            CacheSettings {
                enabled: true,
                near_bytes: 0
            },
            "the in-memory store needs none"
        );
        for bad in ["lots", "-1", "1.5", "1048577"] {
            let err = parse(&[&format!("--cache-near-mb={bad}")]).unwrap_err().to_string();
            assert!(
                err.contains("for '--cache-near-mb <CACHE_NEAR_MB>': expected whole mebibytes from 0 (off) to 1048576"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn the_memory_budget_reaches_the_store_settings() {
        let cli = parse(&["--cache-memory-budget-mb", " 64 "]).unwrap();
        assert_eq!(cli.config.store_settings().memory_budget_bytes, 64 * 1024 * 1024);
        for bad in ["0", "lots", "-1", "1.5", " ", "1048577"] {
            let err = parse(&[&format!("--cache-memory-budget-mb={bad}")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(
                    "for '--cache-memory-budget-mb <CACHE_MEMORY_BUDGET_MB>': expected whole mebibytes from 1 to 1048576"
                ),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn outbox_mode_and_commands() {
        assert_eq!(
            parse(&["--cache-outbox", "on"]).unwrap().config.cache_outbox,
            OutboxMode::On
        );
        assert_eq!(
            parse(&["--cache-outbox", "off"]).unwrap().config.cache_outbox,
            OutboxMode::Off
        );
        let err = parse(&["--cache-outbox", "maybe"]).unwrap_err().to_string();
        assert!(err.contains("[possible values: auto, on, off]"), "{err}");
        let outbox = |args: &[&str]| match parse(args).unwrap().command {
            Some(Command::Outbox(OutboxArgs { action })) => action,
            other => panic!("not an outbox command: {other:?}"),
        };
        assert_eq!(outbox(&["outbox", "install"]), OutboxAction::Install);
        assert_eq!(outbox(&["outbox", "remove"]), OutboxAction::Remove);
        assert_eq!(outbox(&["outbox", "print"]), OutboxAction::Print { remove: false });
        assert_eq!(
            outbox(&["outbox", "print", "--remove"]),
            OutboxAction::Print { remove: true }
        );
        assert!(parse(&["outbox"]).is_err(), "an action is required");
        assert_eq!(
            parse(&["--database-url", "postgres://db/x"]).unwrap().config.source(),
            Source::Postgres
        );
    }

    #[test]
    fn source_airtable_overrides_the_database_url() {
        let cli = parse(&["--source", "airtable", "--database-url", "postgres://db/x"]).unwrap();
        assert_eq!(cli.config.source(), Source::Airtable);
        let err = cli.config.airtable_settings().unwrap_err();
        assert!(
            err.starts_with("Airtable needs AIRTABLE_BASE_ID and AIRTABLE_TOKEN"),
            "{err}"
        );
        let cli = parse(&[
            "--source",
            "airtable",
            "--airtable-base-id",
            "appDemoHackathon1",
            "--airtable-token",
            " patSecret ",
            "--airtable-api-url",
            "http://127.0.0.1:8787",
        ])
        .unwrap();
        let settings = cli.config.airtable_settings().unwrap();
        assert_eq!(settings.base_id, "appDemoHackathon1");
        assert_eq!(settings.token.expose(), "patSecret");
        assert!(
            !format!("{settings:?}").contains("patSecret"),
            "the token is never printed"
        );
        assert_eq!(settings.requests_per_second, 5);
        assert_eq!(parse(&["--source", "sql"]).unwrap().config.source(), Source::Sqlite);
        let err = parse(&["--source", "mysql"]).unwrap_err().to_string();
        assert!(err.contains("[possible values: sql, airtable]"), "{err}");
        assert!(parse(&["--airtable-requests-per-second", "6"]).is_err());
        let webhook = |args: &[&str]| match parse(args).unwrap().command {
            Some(Command::Airtable(AirtableCommand::Webhook { action })) => action,
            other => panic!("not a webhook command: {other:?}"),
        };
        assert_eq!(webhook(&["airtable", "webhook", "list"]), WebhookAction::List);
        assert_eq!(
            webhook(&["airtable", "webhook", "remove", "--id", "achX"]),
            WebhookAction::Remove {
                id: Some("achX".to_owned())
            }
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = parse(&["--port", "http"]).unwrap_err().to_string();
        assert!(
            err.contains("invalid value 'http' for '--port <PORT>': expected a port number from 1 to 65535"),
            "{err}"
        );
        let err = parse(&["--port", "0"]).unwrap_err().to_string();
        assert!(err.contains("expected a port number"), "{err}");
        let err = parse(&["--database-url", "mysql://x/y"]).unwrap_err().to_string();
        assert!(err.contains("the scheme must be sqlite: or postgres:"), "{err}");
        let err = parse(&["--redis-url", "http://x"]).unwrap_err().to_string();
        assert!(err.contains("`http://` is not a Redis scheme"), "{err}");
        let err = parse(&["--origin-latency-ms=-5"]).unwrap_err().to_string();
        assert!(
            err.contains("for '--origin-latency-ms <ORIGIN_LATENCY_MS>': expected whole milliseconds"),
            "{err}"
        );
        let err = parse(&["--origin-rate-limit", "lots"]).unwrap_err().to_string();
        assert!(err.contains("expected a whole number of calls per second"), "{err}");
        let err = parse(&["--cache-enabled", "maybe"]).unwrap_err().to_string();
        assert!(
            err.contains("\"maybe\" is not understood: use one of true, false, 1, 0, yes, no, on, off"),
            "{err}"
        );
        assert!(!parse(&["--cache-enabled", " OFF "]).unwrap().config.cache_enabled);
        let err = parse(&["--admin-token", "short"]).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "the admin token is 5 bytes; it must be at least {}",
                cache_http::MIN_SECRET_LEN
            )),
            "{err}"
        );
        let err = parse(&["--webhook-secret", " "]).unwrap_err().to_string();
        assert!(err.contains("no webhook secret is configured"), "{err}");
        let long = "x".repeat(cache_http::MIN_SECRET_LEN);
        let cli = parse(&["--webhook-secret", &format!(" {long}\t")]).unwrap();
        assert_eq!(cli.config.webhook_secret.map(|s| s.expose().to_owned()), Some(long));
    }

    #[test]
    fn redis_urls() {
        assert_eq!(
            "redis://127.0.0.1:6379".parse::<RedisUrl>(),
            Ok(RedisUrl::Single("redis://127.0.0.1:6379".to_owned()))
        );
        assert_eq!(
            "redis://a:1, redis://b:2".parse::<RedisUrl>(),
            Ok(RedisUrl::Cluster(vec![
                "redis://a:1".to_owned(),
                "redis://b:2".to_owned()
            ]))
        );
        assert_eq!(
            "redis+cluster://a:1".parse::<RedisUrl>(),
            Ok(RedisUrl::Cluster(vec!["redis://a:1".to_owned()]))
        );
        assert!("".parse::<RedisUrl>().is_err());
        assert!("redis://".parse::<RedisUrl>().is_err());
        let url: RedisUrl = "redis://user:pw@h:1".parse().unwrap();
        assert_eq!(url.to_string(), "redis://***@h:1");
    }

    #[test]
    fn commands_take_the_shared_settings() {
        let cli = parse(&["sweep", "--entity", "projects", "--batch", "100", "--port", "8080"]).unwrap();
        assert_eq!(cli.config.port, 8080);
        let Some(Command::Sweep(args)) = cli.command else {
            panic!("not a sweep");
        };
        assert_eq!(args.entities, ["projects"]);
        assert_eq!(args.batch, 100);
        assert!(parse(&["sweep", "--batch", "0"]).is_err());
        let Some(Command::Flush(args)) = parse(&["flush", "--pattern", "projects:*"]).unwrap().command else {
            panic!("not a flush");
        };
        assert_eq!(args.pattern.as_deref(), Some("projects:*"));
    }
}
