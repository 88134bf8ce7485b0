//! The command line and its environment variables. Every setting is a flag and an
//! environment variable (the flag wins); a bad value stops the program with a message naming
//! both.

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::{database::DatabaseUrl, origin::OriginSettings};

/// A hackathon-judging API on model-cache: SQL as the source of truth, Redis (or memory) as
/// the cache.
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

    /// The source of truth: sqlite://PATH (created and seeded when missing) or postgres://….
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://demo.db", global = true)]
    pub database_url: DatabaseUrl,

    /// The cache: redis://HOST:PORT (or rediss://); a Redis Cluster when it lists several
    /// nodes separated by commas or uses redis+cluster://. In memory when absent.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<RedisUrl>,

    /// Whether reads go through the cache (false: every read goes to the database).
    #[arg(
        long,
        env = "CACHE_ENABLED",
        default_value = "true",
        value_parser = cache_core::parse_switch,
        action = ArgAction::Set,
        global = true
    )]
    pub cache_enabled: bool,

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

impl Config {
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
        assert_eq!(default("cache_enabled"), ["true"]);
        assert_eq!(default("origin_latency_ms"), ["150"]);
        assert_eq!(default("origin_rate_limit"), ["0"]);
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
