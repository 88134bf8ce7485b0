//! The maintenance commands: `sweep`, `warm`, `flush`, `secret`, `schema`, `seed` and
//! `outbox` (the Airtable ones are in [`crate::airtable`]).
//!
//! The bulk commands report what was actually done, checked where it can be (warm reads what
//! it wrote back from the store), and fail (a non-zero exit) when part of the work failed,
//! after printing what did get done.

use std::{io::IsTerminal, time::Instant};

use cache_core::{
    Cache, Cacheable, RecordId,
    schema::EntitySchema,
    store::Lookup,
    sweep::{SweepProgress, SweepReport},
};
use cache_sql::Outbox;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{
    app::{AppError, build_cache, connect_store_with, open_database, open_source, sql_origin},
    config::{Config, FlushArgs, OutboxAction, OutboxArgs, Source, SweepArgs, WarmArgs},
    database::{Database, quote},
    models::{self, Event, Project, Referral, User, Vote},
    origin::DemoOrigin,
    seed::{self, SeedCounts},
};

/// Writes a line to stdout; a reader that went away (`demo-app schema | head`) ends the
/// output quietly instead of panicking as `println!` does.
pub(crate) fn out(line: impl std::fmt::Display) -> Result<(), AppError> {
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
pub(crate) fn progress_bar(len: Option<u64>) -> ProgressBar {
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
async fn open(config: &Config) -> Result<(DemoOrigin, Cache), AppError> {
    let (_, origin) = open_source(config).await?;
    let store = connect_store_with(config.redis_url.as_ref(), &config.store_settings()).await?;
    if config.redis_url.is_none() {
        eprintln!("note: REDIS_URL is not set: this command works on a new, empty in-memory cache");
    }
    let cache = build_cache(store, origin.clone(), config.cache_enabled)?;
    Ok((origin, cache))
}

/// What a sweep of several entities did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    /// One report per entity swept to the end.
    pub entities: Vec<SweepReport>,
    /// The entities whose sweep stopped on a store failure: how far each got, and why.
    pub failed: Vec<SweepFailure>,
    /// `exists_many` calls the origin answered.
    pub origin_calls: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// A sweep that stopped part-way; what it removed stays removed.
#[derive(Debug, Clone, Serialize)]
pub struct SweepFailure {
    /// How far it got.
    pub progress: SweepProgress,
    /// Why it stopped.
    pub error: String,
}

/// Sweeps `entities` of `cache`, `batch` ids per origin call. An entity whose sweep fails is
/// reported in [`SweepSummary::failed`] and the others are still swept.
pub async fn sweep_entities(
    cache: &Cache,
    origin: &DemoOrigin,
    entities: &[&'static EntitySchema],
    batch: usize,
) -> Result<SweepSummary, AppError> {
    let started = Instant::now();
    let calls_before = origin.calls().exists_many;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for schema in entities {
        let bar = progress_bar(None);
        bar.set_prefix(schema.entity);
        let mut at = SweepProgress {
            entity: schema.entity,
            checked: 0,
            removed: 0,
            batches: 0,
        };
        let result = cache
            .sweep(schema, batch, |p| {
                at = p;
                bar.set_message(format!("checked {}, removed {}", p.checked, p.removed));
                bar.tick();
            })
            .await;
        bar.finish_and_clear();
        match result {
            Ok(report) => reports.push(report),
            Err(err) => failed.push(SweepFailure {
                progress: at,
                error: err.to_string(),
            }),
        }
    }
    Ok(SweepSummary {
        entities: reports,
        failed,
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
        "{:<10} {:>8} {:>8} {:>8} {:>9}  {}",
        "entity", "checked", "removed", "batches", "time", "status"
    ))?;
    for r in &summary.entities {
        out(format_args!(
            "{:<10} {:>8} {:>8} {:>8} {:>7}ms  done",
            r.entity, r.checked, r.removed, r.batches, r.elapsed_ms
        ))?;
    }
    for f in &summary.failed {
        let p = &f.progress;
        out(format_args!(
            "{:<10} {:>8} {:>8} {:>8} {:>9}  FAILED: {}",
            p.entity, p.checked, p.removed, p.batches, "-", f.error
        ))?;
    }
    let checked: u64 = summary.entities.iter().map(|r| r.checked).sum::<u64>()
        + summary.failed.iter().map(|f| f.progress.checked).sum::<u64>();
    let removed: u64 = summary.entities.iter().map(|r| r.removed).sum::<u64>()
        + summary.failed.iter().map(|f| f.progress.removed).sum::<u64>();
    out(format_args!(
        "{:<10} {:>8} {:>8} {:>8} {:>7}ms  {} origin calls",
        "total", checked, removed, "", summary.elapsed_ms, summary.origin_calls
    ))?;
    if summary.failed.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = summary.failed.iter().map(|f| f.progress.entity).collect();
    Err(AppError::Incomplete(format!(
        "the sweep of {} stopped on a cache failure (see above); what it removed stays removed, run it again",
        names.join(", ")
    )))
}

/// What warming one entity did.
#[derive(Debug, Clone, Serialize)]
pub struct WarmReport {
    /// The entity.
    pub entity: &'static str,
    /// Ids listed at the origin.
    pub listed: usize,
    /// Records read (from the cache, or from the origin and written to the cache).
    pub loaded: usize,
    /// Records the store holds afterwards, checked by reading each batch back from it.
    pub cached: usize,
    /// The first store failure met, when some batch could not be written or checked.
    pub error: Option<String>,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

impl WarmReport {
    /// Whether every record read is in the store.
    pub fn is_complete(&self) -> bool {
        self.cached == self.loaded && self.error.is_none()
    }
}

/// Loads the `recent` newest records of `T` (all when `None`) into the cache, `batch` at a
/// time: each batch is one `get_many`, so one origin `fetch_many` for what is missing and one
/// store write of the whole batch, then one store read to count what the store now holds (a
/// cache answers reads from the origin when the store fails, so the read alone proves
/// nothing). Records already cached are left as they are.
pub async fn warm_entity<T: Cacheable>(
    cache: &Cache,
    origin: &DemoOrigin,
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
    let (mut loaded, mut cached, mut error) = (0, 0, None);
    for chunk in ids.chunks(batch.max(1)) {
        let records = cache.get_many::<T>(chunk).await?;
        loaded += records.len();
        let read: Vec<RecordId> = records.iter().map(|r| r.id().clone()).collect();
        match cache.store().get_many(schema, &read).await {
            Ok(lookups) => cached += lookups.iter().filter(|l| matches!(l, Lookup::Hit(_))).count(),
            Err(err) => {
                error.get_or_insert_with(|| err.to_string());
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(WarmReport {
        entity: schema.entity,
        listed: ids.len(),
        loaded,
        cached,
        error,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Warms one entity named at run time.
pub async fn warm_named(
    cache: &Cache,
    origin: &DemoOrigin,
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
        "{:<10} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "entity", "listed", "read", "cached", "missing", "time"
    ))?;
    let mut incomplete = Vec::new();
    for schema in entities {
        let r = warm_named(&cache, &origin, schema, args.recent, batch).await?;
        out(format_args!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>7}ms{}",
            r.entity,
            r.listed,
            r.loaded,
            r.cached,
            r.loaded.saturating_sub(r.cached),
            r.elapsed_ms,
            r.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default()
        ))?;
        if !r.is_complete() {
            incomplete.push(r.entity);
        }
    }
    out(format_args!(
        "done in {}ms with {} origin calls",
        started.elapsed().as_millis(),
        origin.calls().total() - calls_before
    ))?;
    if incomplete.is_empty() {
        return Ok(());
    }
    Err(AppError::Incomplete(format!(
        "the cache does not hold every record read of {}: the store failed or evicted them \
         (see the `missing` column); run the command again once the store is healthy",
        incomplete.join(", ")
    )))
}

/// `demo-app flush`: removes the demo's cached entries (those matching `--pattern`).
pub async fn flush(config: &Config, args: &FlushArgs) -> Result<(), AppError> {
    if config.redis_url.is_none() {
        return Err(AppError::Usage(
            "REDIS_URL is not set: an in-memory cache lives in the server process; flush it there \
             (DELETE /admin/cache)"
                .to_owned(),
        ));
    }
    let store = connect_store_with(config.redis_url.as_ref(), &config.store_settings()).await?;
    let started = Instant::now();
    let what = args.pattern.as_deref().unwrap_or("everything");
    match store.flush(args.pattern.as_deref()).await {
        Ok(removed) => {
            out(format_args!(
                "flushed {what}: {removed} keys removed in {}ms",
                started.elapsed().as_millis()
            ))?;
            Ok(())
        }
        Err(err @ cache_core::store::StoreError::Invalid(_)) => Err(AppError::Usage(err.to_string())),
        Err(err) => Err(AppError::Incomplete(format!(
            "flushing {what} failed after {}ms: {err}; some keys may already be removed, run it again",
            started.elapsed().as_millis()
        ))),
    }
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

/// Refuses a command of the SQL source when the source is Airtable.
fn sql_only(config: &Config, command: &str, instead: &str) -> Result<(), AppError> {
    if config.source() == Source::Airtable {
        return Err(AppError::Usage(format!(
            "`demo-app {command}` works on the SQL database, and SOURCE=airtable: {instead}"
        )));
    }
    Ok(())
}

/// `demo-app seed`: drops the demo tables and fills them again.
pub async fn seed(config: &Config) -> Result<(), AppError> {
    sql_only(config, "seed", "seed the base with `demo-app airtable seed`")?;
    let fail = |source| AppError::Database {
        url: config.database_url.to_string(),
        source,
    };
    let db = Database::connect(&config.database_url).await.map_err(fail)?;
    let started = Instant::now();
    let report = seed::seed(&db, SeedCounts::DEMO).await.map_err(|source| {
        AppError::Incomplete(format!(
            "seeding {} failed: {source}; the demo tables may be empty now: run `demo-app seed` again",
            config.database_url
        ))
    })?;
    let c = report.counts;
    // What the tables hold, not what was sent.
    let expected = [
        ("Users", c.users),
        ("Events", c.events),
        ("Projects", c.projects),
        ("Votes", c.votes),
        ("Referrals", c.referrals),
    ];
    let mut short = Vec::new();
    for (table, want) in expected {
        // The table names are the demo's own constants, quoted.
        let count = format!("SELECT COUNT(*) FROM {}", quote(table));
        let have = db.scalar(&count).await.map_err(fail)?.unwrap_or(0);
        if usize::try_from(have).ok() != Some(want) {
            short.push(format!("{table}: {have} rows of {want}"));
        }
    }
    if !short.is_empty() {
        return Err(AppError::Incomplete(format!(
            "seeded {} but the tables do not hold the data: {}",
            config.database_url,
            short.join(", ")
        )));
    }
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
    if db.has_outbox().await.map_err(fail)? {
        out("note: the outbox's triggers went with the old tables: run `demo-app outbox install` again")?;
    }
    Ok(())
}

/// `demo-app outbox install|remove|print`: the triggers that record every writer's changes in
/// the outbox table, generated from the models (`cache_sql::Outbox`).
pub async fn outbox(config: &Config, args: &OutboxArgs) -> Result<(), AppError> {
    sql_only(
        config,
        "outbox",
        "Airtable's changes reach the cache through its webhook (`demo-app airtable webhook setup`)",
    )?;
    let url = &config.database_url;
    let failed = |source| AppError::Sql {
        url: url.to_string(),
        source,
    };
    let db = open_database(url).await?;
    let outbox = Outbox::new(&sql_origin(&db).await.map_err(failed)?);
    match args.action {
        OutboxAction::Print { remove: false } => out(outbox.install_sql().trim_end())?,
        OutboxAction::Print { remove: true } => out(outbox.remove_sql().trim_end())?,
        OutboxAction::Install => {
            outbox.install().await.map_err(failed)?;
            out(format_args!(
                "installed the outbox in {url}: every insert, update and delete of the demo's tables, \
                 by any writer, is recorded in `{}`; `demo-app serve` applies them to the cache \
                 (CACHE_OUTBOX=auto, the default)",
                cache_sql::outbox::OUTBOX_TABLE
            ))?;
        }
        OutboxAction::Remove => {
            outbox.remove().await.map_err(failed)?;
            out(format_args!(
                "removed the outbox's triggers from {url}; the table `{}` is kept with what it still holds \
                 (a running listener applies it; drop the table yourself when it is empty)",
                cache_sql::outbox::OUTBOX_TABLE
            ))?;
        }
    }
    Ok(())
}
