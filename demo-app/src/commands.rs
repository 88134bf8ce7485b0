//! The maintenance commands: `sweep`, `warm`, `secret`, `schema` and `seed`.

use std::{io::IsTerminal, time::Instant};

use cache_core::{Cache, Cacheable, EntitySchema, SweepReport};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{
    app::{AppError, build_cache, connect_store, open_database},
    config::{Config, SweepArgs, WarmArgs},
    database::Database,
    models::{self, Event, Project, Referral, User, Vote},
    origin::SqlOrigin,
    seed::{self, SeedCounts},
};

/// Writes a line to stdout; a reader that went away (`demo-app schema | head`) ends the
/// output quietly instead of panicking as `println!` does.
fn out(line: impl std::fmt::Display) -> Result<(), AppError> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(AppError::Io {
            what: "writing the output".to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

/// A progress bar on a terminal; nothing when the output goes to a file or a pipe (cron).
fn progress_bar(len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{prefix:>10} {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// The entities named on the command line, all of them when none is.
fn select(names: &[String]) -> Result<Vec<&'static EntitySchema>, AppError> {
    let all = models::schemas();
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    names
        .iter()
        .map(|name| {
            all.iter().copied().find(|s| s.entity == name).ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|s| s.entity).collect();
                AppError::Usage(format!("unknown entity `{name}`; known: {}", known.join(", ")))
            })
        })
        .collect()
}

/// The pieces a command needs: the origin and a cache over the configured store.
async fn open(config: &Config) -> Result<(SqlOrigin, Cache), AppError> {
    let db = open_database(&config.database_url).await?;
    let origin = SqlOrigin::new(db, config.origin_settings());
    let store = connect_store(config.redis_url.as_ref()).await?;
    if config.redis_url.is_none() {
        eprintln!("note: REDIS_URL is not set: this command works on a new, empty in-memory cache");
    }
    let cache = build_cache(store, origin.clone(), config.cache_enabled)?;
    Ok((origin, cache))
}

/// What a sweep of several entities did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    /// One report per entity.
    pub entities: Vec<SweepReport>,
    /// `exists_many` calls the origin answered.
    pub origin_calls: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// Sweeps `entities` of `cache`, `batch` ids per origin call.
pub async fn sweep_entities(
    cache: &Cache,
    origin: &SqlOrigin,
    entities: &[&'static EntitySchema],
    batch: usize,
) -> Result<SweepSummary, AppError> {
    let started = Instant::now();
    let calls_before = origin.calls().exists_many;
    let mut reports = Vec::new();
    for schema in entities {
        let bar = progress_bar(None);
        bar.set_prefix(schema.entity);
        let report = cache
            .sweep(schema, batch, |p| {
                bar.set_message(format!("checked {}, removed {}", p.checked, p.removed));
                bar.tick();
            })
            .await?;
        bar.finish_and_clear();
        reports.push(report);
    }
    Ok(SweepSummary {
        entities: reports,
        origin_calls: origin.calls().exists_many - calls_before,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// `demo-app sweep`.
pub async fn sweep(config: &Config, args: &SweepArgs) -> Result<(), AppError> {
    let entities = select(&args.entities)?;
    let (origin, cache) = open(config).await?;
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let summary = sweep_entities(&cache, &origin, &entities, batch).await?;
    out(format_args!(
        "{:<10} {:>8} {:>8} {:>8} {:>13} {:>9}",
        "entity", "cached", "checked", "removed", "origin calls", "time"
    ))?;
    for r in &summary.entities {
        // The sweep checks every id the store holds: cached and checked are the same count.
        out(format_args!(
            "{:<10} {:>8} {:>8} {:>8} {:>13} {:>7}ms",
            r.entity, r.checked, r.checked, r.removed, r.batches, r.elapsed_ms
        ))?;
    }
    let total = |f: fn(&SweepReport) -> u64| summary.entities.iter().map(f).sum::<u64>();
    out(format_args!(
        "{:<10} {:>8} {:>8} {:>8} {:>13} {:>7}ms",
        "total",
        total(|r| r.checked),
        total(|r| r.checked),
        total(|r| r.removed),
        summary.origin_calls,
        summary.elapsed_ms
    ))?;
    Ok(())
}

/// What warming one entity did.
#[derive(Debug, Clone, Serialize)]
pub struct WarmReport {
    /// The entity.
    pub entity: &'static str,
    /// Ids listed at the origin.
    pub listed: usize,
    /// Records now cached.
    pub loaded: usize,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// Loads the `recent` newest records of `T` (all when `None`) into the cache, `batch` at a
/// time: each batch is one `get_many`, so one origin `fetch_many` for what is missing and one
/// store write of the whole batch. Records already cached are left as they are.
pub async fn warm_entity<T: Cacheable>(
    cache: &Cache,
    origin: &SqlOrigin,
    recent: Option<usize>,
    batch: usize,
) -> Result<WarmReport, AppError> {
    let started = Instant::now();
    let schema = T::schema();
    let ids = origin
        .recent_ids(schema, recent)
        .await
        .map_err(cache_core::CacheError::from)?;
    let bar = progress_bar(Some(ids.len() as u64));
    bar.set_prefix(schema.entity);
    let mut loaded = 0;
    for chunk in ids.chunks(batch.max(1)) {
        loaded += cache.get_many::<T>(chunk).await?.len();
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(WarmReport {
        entity: schema.entity,
        listed: ids.len(),
        loaded,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Warms one entity named at run time.
pub async fn warm_named(
    cache: &Cache,
    origin: &SqlOrigin,
    schema: &'static EntitySchema,
    recent: Option<usize>,
    batch: usize,
) -> Result<WarmReport, AppError> {
    match schema.entity {
        e if e == User::schema().entity => warm_entity::<User>(cache, origin, recent, batch).await,
        e if e == Event::schema().entity => warm_entity::<Event>(cache, origin, recent, batch).await,
        e if e == Project::schema().entity => warm_entity::<Project>(cache, origin, recent, batch).await,
        e if e == Vote::schema().entity => warm_entity::<Vote>(cache, origin, recent, batch).await,
        e if e == Referral::schema().entity => warm_entity::<Referral>(cache, origin, recent, batch).await,
        other => Err(AppError::Usage(format!("no model for entity `{other}`"))),
    }
}

/// `demo-app warm`.
pub async fn warm(config: &Config, args: &WarmArgs) -> Result<(), AppError> {
    let entities = select(&args.entities)?;
    let (origin, cache) = open(config).await?;
    if !cache.is_enabled() {
        return Err(AppError::Usage(
            "the cache is disabled (CACHE_ENABLED=false): there is nothing to warm".to_owned(),
        ));
    }
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let started = Instant::now();
    let calls_before = origin.calls().total();
    out(format_args!(
        "{:<10} {:>8} {:>8} {:>9}",
        "entity", "listed", "cached", "time"
    ))?;
    for schema in entities {
        let r = warm_named(&cache, &origin, schema, args.recent, batch).await?;
        out(format_args!(
            "{:<10} {:>8} {:>8} {:>7}ms",
            r.entity, r.listed, r.loaded, r.elapsed_ms
        ))?;
    }
    out(format_args!(
        "done in {}ms with {} origin calls",
        started.elapsed().as_millis(),
        origin.calls().total() - calls_before
    ))?;
    Ok(())
}

/// `demo-app secret`.
pub fn secret() -> Result<(), AppError> {
    let secret = cache_http::generate_secret()?;
    out(&secret)?;
    eprintln!();
    eprintln!("Put it in the demo's environment and give it to whatever sends the webhooks:");
    eprintln!("  WEBHOOK_SECRET={secret}");
    eprintln!("Deliveries to POST /webhooks/airtable carry it in the X-Airtable-Secret header.");
    eprintln!("An admin token is made the same way: ADMIN_TOKEN=$(demo-app secret 2>/dev/null)");
    Ok(())
}

/// `demo-app schema`: the entities' schema as JSON.
pub fn schema() -> Result<(), AppError> {
    let json = serde_json::to_string_pretty(&models::schemas()).map_err(|e| AppError::Io {
        what: "rendering the schema".to_owned(),
        source: e.into(),
    })?;
    out(json)?;
    Ok(())
}

/// `demo-app seed`: drops the demo tables and fills them again.
pub async fn seed(config: &Config) -> Result<(), AppError> {
    let fail = |source| AppError::Database {
        url: config.database_url.to_string(),
        source,
    };
    let db = Database::connect(&config.database_url).await.map_err(fail)?;
    let started = Instant::now();
    let report = seed::seed(&db, SeedCounts::DEMO).await.map_err(fail)?;
    let c = report.counts;
    out(format_args!(
        "seeded {}: {} users, {} events, {} projects, {} votes, {} referrals in {}ms",
        config.database_url,
        c.users,
        c.events,
        c.projects,
        c.votes,
        c.referrals,
        started.elapsed().as_millis()
    ))?;
    if config.redis_url.is_some() {
        out(
            "note: Redis may still hold records of the old data: flush it (DELETE /admin/cache) or let their TTLs run out",
        )?;
    }
    Ok(())
}
