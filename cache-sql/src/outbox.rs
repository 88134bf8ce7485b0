//! Change capture that catches every writer: triggers record each change in an outbox table,
//! in the same transaction as the change; [`OutboxListener`] applies them to the cache.
//!
//! - **The outbox.** `cache_outbox (seq, table_name, record_id, operation, version, at)`: one
//!   row per inserted, updated or deleted row of a registered model's table, written by a
//!   trigger generated from the schema ([`Outbox::install_sql`]), so psql, an admin tool,
//!   another service or a migration are all caught. `at` is the database's clock at the write
//!   (PostgreSQL `clock_timestamp()`, SQLite's clock to the millisecond); `version` is the
//!   row's `#[cache(version)]` value as the model computes it. On PostgreSQL the trigger also
//!   `NOTIFY`s `cache_outbox`, which wakes the listeners at once; SQLite is polled.
//! - **Reading it without skipping.** `seq` is handed out when a row is written, not when its
//!   transaction commits: a transaction that took `seq` 5 can commit after one that took 6. A
//!   cursor ("everything after 6") would skip 5 for ever. So the outbox is the queue itself: a
//!   listener reads the oldest rows it can see, applies them, and deletes exactly those rows
//!   (not "everything up to 6"). A row that becomes visible later is still there for the next
//!   round. Two changes of one row cannot be seen out of order: the second writer waits on the
//!   row's lock for the first to commit, so it takes a later `seq` and a later `at`, and the
//!   cache orders each record's changes by `at` in any case. The feed's position in the store
//!   ([`FeedState`]) records the last `seq` applied, for operators; the feed's lock lets one
//!   listener consume at a time.
//! - **Applying.** Changes go through [`Cache::apply_changes`]: a delete with the deleted
//!   version and time; an upsert as the row is *now* (read in one statement per entity), with
//!   the change's time: the row read is never older than that time, and a later change of it
//!   has a later time. A batch whose store write failed is not pruned and is applied again
//!   at the next wake (redelivery is harmless).
//! - **Status.** Every batch, every failed round, and the end of every round are reported to
//!   the cache's feed status ([`Cache::feeds`], under [`OUTBOX_FEED`]): the last `seq` applied,
//!   what the changes became, the rows still waiting (one `count(*)` of the outbox after a
//!   round that applied something; none when it found the outbox empty) and the lag: the age of the oldest waiting row's `at`, or the time since the listener last
//!   found the outbox empty (see [`cache_core::feed`]).
//! - **Cost.** One outbox insert per written row, in the writer's transaction, and a `NOTIFY`
//!   per transaction on PostgreSQL. Running without it: don't install the triggers, and write
//!   through [`SqlTransaction`](crate::SqlTransaction) (changes made elsewhere then reach the
//!   cache only when their records expire).

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use cache_core::{
    Cache, RecordId,
    change::{Change, ChangeOutcome},
    feed::{Backlog, ChangeCounts, FeedReporter, FeedState, Hold},
    origin::Origin,
    schema::EntitySchema,
};
use sqlx::{AssertSqlSafe, Executor, Row, postgres::PgListener};

use crate::{
    Dialect, SqlError, SqlOrigin, SqlPool,
    plan::{Plan, raw_score},
    transaction::from_micros,
};

/// The outbox table's name.
pub const OUTBOX_TABLE: &str = "cache_outbox";
/// The PostgreSQL channel the triggers notify.
pub const OUTBOX_CHANNEL: &str = "cache_outbox";
/// The feed's name in the store ([`FeedState`]).
pub const OUTBOX_FEED: &str = "sql:outbox";

/// The triggers of the origin's tables: prints, installs and removes them.
#[derive(Debug, Clone)]
pub struct Outbox {
    origin: SqlOrigin,
}

impl Outbox {
    /// The outbox of every table the origin reads (views are left out: put the triggers on
    /// their base tables' models).
    pub fn new(origin: &SqlOrigin) -> Self {
        Self { origin: origin.clone() }
    }

    fn tables(&self) -> Vec<&Plan> {
        let mut plans: Vec<&Plan> = self.origin.plans().filter(|p| p.is_table).collect();
        plans.sort_by_key(|p| p.schema.source_table);
        // Two models of one table need one trigger.
        plans.dedup_by_key(|p| p.schema.source_table);
        plans
    }

    /// The statements that create the outbox table and the triggers, in order.
    pub fn install_statements(&self) -> Vec<String> {
        let dialect = self.origin.pool().dialect();
        let mut out = vec![match dialect {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (\n    seq bigserial PRIMARY KEY,\n    \
                 table_name text NOT NULL,\n    record_id text NOT NULL,\n    \
                 operation text NOT NULL CHECK (operation IN ('upsert', 'delete')),\n    \
                 version double precision,\n    at timestamptz NOT NULL DEFAULT clock_timestamp()\n)"
            ),
            Dialect::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (\n    seq INTEGER PRIMARY KEY AUTOINCREMENT,\n    \
                 table_name TEXT NOT NULL,\n    record_id TEXT NOT NULL,\n    \
                 operation TEXT NOT NULL CHECK (operation IN ('upsert', 'delete')),\n    \
                 version REAL,\n    at INTEGER NOT NULL\n)"
            ),
        }];
        for plan in self.tables() {
            out.extend(triggers(dialect, plan));
        }
        out
    }

    /// The statements that remove the triggers (the outbox table is kept, with what it holds).
    pub fn remove_statements(&self) -> Vec<String> {
        let dialect = self.origin.pool().dialect();
        let mut out = Vec::new();
        for plan in self.tables() {
            let table = dialect.quote(plan.schema.source_table);
            match dialect {
                Dialect::Postgres => {
                    out.push(format!("DROP TRIGGER IF EXISTS cache_outbox ON {table}"));
                    out.push(format!("DROP FUNCTION IF EXISTS {}()", pg_function(plan)));
                }
                Dialect::Sqlite => {
                    for op in ["insert", "update", "delete"] {
                        out.push(format!("DROP TRIGGER IF EXISTS {}", sqlite_trigger(plan, op)));
                    }
                }
            }
        }
        out
    }

    /// The install statements as one script, to print (`psql -f`, `sqlite3 db < …`).
    pub fn install_sql(&self) -> String {
        script(self.install_statements())
    }

    /// The remove statements as one script.
    pub fn remove_sql(&self) -> String {
        script(self.remove_statements())
    }

    /// Creates the outbox table and the triggers (again: it replaces them), in one transaction.
    pub async fn install(&self) -> Result<(), SqlError> {
        self.execute(self.install_statements()).await?;
        tracing::info!(
            event = "sql_outbox_installed",
            tables = self.tables().len(),
            "outbox triggers installed"
        );
        Ok(())
    }

    /// Removes the triggers, in one transaction.
    pub async fn remove(&self) -> Result<(), SqlError> {
        self.execute(self.remove_statements()).await?;
        tracing::info!(event = "sql_outbox_removed", "outbox triggers removed");
        Ok(())
    }

    async fn execute(&self, statements: Vec<String>) -> Result<(), SqlError> {
        let failed = |source| SqlError::Query {
            table: OUTBOX_TABLE.to_owned(),
            source,
        };
        match self.origin.pool() {
            SqlPool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(failed)?;
                for statement in statements {
                    (&mut *tx).execute(AssertSqlSafe(statement)).await.map_err(failed)?;
                }
                tx.commit().await.map_err(failed)
            }
            SqlPool::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(failed)?;
                for statement in statements {
                    (&mut *tx).execute(AssertSqlSafe(statement)).await.map_err(failed)?;
                }
                tx.commit().await.map_err(failed)
            }
        }
    }
}

fn script(statements: Vec<String>) -> String {
    statements.into_iter().map(|s| format!("{s};\n")).collect()
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn pg_function(plan: &Plan) -> String {
    Dialect::Postgres.quote(&format!("cache_outbox_{}", plan.schema.source_table))
}

fn sqlite_trigger(plan: &Plan, op: &str) -> String {
    Dialect::Sqlite.quote(&format!("cache_outbox_{}_{op}", plan.schema.source_table))
}

/// One table's triggers.
fn triggers(dialect: Dialect, plan: &Plan) -> Vec<String> {
    let table = dialect.quote(plan.schema.source_table);
    let name = literal(plan.schema.source_table);
    let id = dialect.quote(plan.schema.id_field);
    let version = |row: &str| match plan.version_column {
        Some((column, class)) => raw_score(dialect, &format!("{row}.{}", dialect.quote(column)), class),
        None => "NULL".to_owned(),
    };
    match dialect {
        Dialect::Postgres => {
            let function = pg_function(plan);
            vec![
                format!(
                    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $cache_outbox$\n\
                     BEGIN\n    \
                     IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.{id} IS DISTINCT FROM NEW.{id}) THEN\n        \
                     INSERT INTO {OUTBOX_TABLE} (table_name, record_id, operation, version)\n        \
                     VALUES ({name}, OLD.{id}::text, 'delete', {});\n    \
                     END IF;\n    \
                     IF TG_OP <> 'DELETE' THEN\n        \
                     INSERT INTO {OUTBOX_TABLE} (table_name, record_id, operation, version)\n        \
                     VALUES ({name}, NEW.{id}::text, 'upsert', {});\n    \
                     END IF;\n    \
                     PERFORM pg_notify('{OUTBOX_CHANNEL}', '');\n    \
                     RETURN NULL;\n\
                     END\n$cache_outbox$",
                    version("OLD"),
                    version("NEW")
                ),
                format!("DROP TRIGGER IF EXISTS cache_outbox ON {table}"),
                format!(
                    "CREATE TRIGGER cache_outbox AFTER INSERT OR UPDATE OR DELETE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION {function}()"
                ),
            ]
        }
        Dialect::Sqlite => {
            // The clock to the millisecond, as every SQLite since 3.0 (and its CLI) has it.
            let now = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000";
            let insert = format!("INSERT INTO {OUTBOX_TABLE} (table_name, record_id, operation, version, at)");
            let upsert_new = format!(
                "{insert} VALUES ({name}, CAST(NEW.{id} AS TEXT), 'upsert', {}, {now});",
                version("NEW")
            );
            let delete_old = |condition: &str| {
                format!(
                    "{insert} SELECT {name}, CAST(OLD.{id} AS TEXT), 'delete', {}, {now}{condition};",
                    version("OLD")
                )
            };
            let mut out = Vec::new();
            for op in ["insert", "update", "delete"] {
                out.push(format!("DROP TRIGGER IF EXISTS {}", sqlite_trigger(plan, op)));
            }
            out.push(format!(
                "CREATE TRIGGER {} AFTER INSERT ON {table} BEGIN\n    {upsert_new}\nEND",
                sqlite_trigger(plan, "insert")
            ));
            out.push(format!(
                "CREATE TRIGGER {} AFTER UPDATE ON {table} BEGIN\n    {}\n    {upsert_new}\nEND",
                sqlite_trigger(plan, "update"),
                delete_old(&format!(" WHERE OLD.{id} IS NOT NEW.{id}"))
            ));
            out.push(format!(
                "CREATE TRIGGER {} AFTER DELETE ON {table} BEGIN\n    {}\nEND",
                sqlite_trigger(plan, "delete"),
                delete_old("")
            ));
            out
        }
    }
}

/// What a change in the outbox did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Inserted or updated.
    Upsert,
    /// Deleted.
    Delete,
}

/// One row of the outbox, as applied.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutboxChange {
    /// Its place in the outbox.
    pub seq: i64,
    /// The table.
    pub table: String,
    /// The row's id.
    pub id: RecordId,
    /// What happened.
    pub operation: Operation,
    /// The row's version (deletes).
    pub version: Option<f64>,
    /// When, by the database's clock.
    pub at: SystemTime,
}

/// What one round of a listener did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Whether this listener held the feed (another did otherwise, and nothing was read).
    pub held: bool,
    /// Outbox rows applied and pruned.
    pub rows: usize,
    /// Changes the cache refused, rightly (a newer state was there first).
    pub refused: usize,
}

type Observer = Arc<dyn Fn(&[OutboxChange]) + Send + Sync>;

/// Applies the outbox to a cache: see the [module docs](self).
#[derive(Clone)]
pub struct OutboxListener {
    origin: SqlOrigin,
    cache: Cache,
    feed: FeedState,
    status: FeedReporter,
    tables: Arc<HashMap<String, Vec<&'static EntitySchema>>>,
    batch: usize,
    poll: Duration,
    lock_ttl: Duration,
    observer: Option<Observer>,
}

impl std::fmt::Debug for OutboxListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxListener")
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// The most outbox rows read and applied at once, by default.
pub const DEFAULT_BATCH: usize = 500;
/// How often the outbox is read without a wake-up, by default: SQLite's poll, and
/// PostgreSQL's safety net for a missed notification.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// How long a listener holds the feed at most per round, by default.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);

impl OutboxListener {
    /// A listener applying the outbox of `origin`'s tables to `cache` (every model must be
    /// registered with both).
    pub fn new(origin: &SqlOrigin, cache: &Cache) -> Self {
        let mut tables: HashMap<String, Vec<&'static EntitySchema>> = HashMap::new();
        for plan in origin.plans().filter(|p| p.is_table) {
            tables
                .entry(plan.schema.source_table.to_owned())
                .or_default()
                .push(plan.schema);
        }
        let feed = FeedState::new(cache, OUTBOX_FEED);
        Self {
            origin: origin.clone(),
            cache: cache.clone(),
            status: feed.reporter(),
            feed,
            tables: Arc::new(tables),
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            lock_ttl: DEFAULT_LOCK_TTL,
            observer: None,
        }
    }

    /// How many outbox rows are applied at once (default [`DEFAULT_BATCH`]).
    #[must_use]
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// How often the outbox is read when nothing wakes the listener (default [`DEFAULT_POLL`]).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// How long one round may hold the feed (default [`DEFAULT_LOCK_TTL`]); a round stops
    /// taking batches at half of it.
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Calls `observer` with each batch once it is applied and pruned, while the feed is
    /// still held: in the order the changes reached the cache.
    #[must_use]
    pub fn on_batch(mut self, observer: impl Fn(&[OutboxChange]) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Runs until `shutdown` completes: a round at once, then one per notification
    /// (PostgreSQL) or poll interval. A failing round is logged and tried again at the next.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), SqlError> {
        let mut listener = match self.origin.pool() {
            SqlPool::Postgres(pool) => {
                let listen = |source| SqlError::Query {
                    table: OUTBOX_TABLE.to_owned(),
                    source,
                };
                let mut listener = PgListener::connect_with(pool).await.map_err(listen)?;
                listener.listen(OUTBOX_CHANNEL).await.map_err(listen)?;
                Some(listener)
            }
            SqlPool::Sqlite(_) => None,
        };
        tracing::info!(event = "sql_outbox_listening", "outbox listener started");
        tokio::pin!(shutdown);
        loop {
            loop {
                match self.run_once().await {
                    // A full batch leaves more to read; another holder will wake us again.
                    Ok(drained) if drained.held && drained.rows >= self.batch => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(event = "sql_outbox_round_failed", error = %err, "outbox round failed");
                        break;
                    }
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(listener) => {
                        // A dropped connection is re-established by `recv`; a notification
                        // missed meanwhile is caught by the poll.
                        let _ = tokio::time::timeout(self.poll, listener.recv()).await;
                    }
                    None => tokio::time::sleep(self.poll).await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = wake => {}
            }
        }
        tracing::info!(event = "sql_outbox_stopped", "outbox listener stopped");
        Ok(())
    }

    /// One round: if this listener can take the feed, applies batches of the outbox until it
    /// is empty (or half the lock's time has passed), pruning what it applied, then counts the
    /// rows still waiting. Reports each batch, the round's end or its failure to the cache's
    /// feed status.
    pub async fn run_once(&self) -> Result<Drained, SqlError> {
        let lock = match self.feed.try_lock(self.lock_ttl).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                self.status.held_elsewhere();
                return Ok(Drained::default());
            }
            Err(err) => {
                let err = SqlError::Feed(err);
                self.status.failed(&err, None, None);
                return Err(err);
            }
        };
        let started = Instant::now();
        let mut drained = Drained {
            held: true,
            ..Drained::default()
        };
        // The source time of the oldest change read and not yet applied, for the lag.
        let mut unapplied: Option<SystemTime> = None;
        let result = async {
            // When the round last found the outbox empty: it is caught up as of then.
            let mut empty_at = None;
            loop {
                let looked = SystemTime::now();
                let rows = self.read().await?;
                let Some(last) = rows.last().map(|r| r.seq) else {
                    empty_at = Some(looked);
                    break;
                };
                unapplied = rows.iter().map(|r| r.at).min();
                let full = rows.len() >= self.batch;
                let outcomes = self.apply(&rows).await?;
                let counts = ChangeCounts::of(&outcomes);
                if counts.failed > 0 {
                    self.status.applied(&outcomes, None, None);
                    return Err(SqlError::Retry);
                }
                self.prune(&rows).await?;
                unapplied = None;
                let position = last.to_string();
                if self.feed.set_position(&lock, &position).await.map_err(SqlError::Feed)? == Hold::Lost {
                    return Err(SqlError::FeedLost);
                }
                self.status
                    .applied(&outcomes, Some(&position), rows.iter().map(|r| r.at).max());
                if let Some(observer) = &self.observer {
                    observer(&rows);
                }
                drained.rows += rows.len();
                drained.refused += usize::try_from(counts.refused()).unwrap_or(usize::MAX);
                if !full || started.elapsed() > self.lock_ttl / 2 {
                    break;
                }
            }
            match empty_at {
                Some(looked) => self.status.checked(Backlog::Exactly(0), None, looked),
                // Stopped after a batch: what is left is counted (an idle listener does not).
                None => {
                    let looked = SystemTime::now();
                    let (waiting, oldest) = self.waiting().await?;
                    self.status.checked(Backlog::Exactly(waiting), oldest, looked);
                }
            }
            Ok(())
        }
        .await;
        if let Err(err) = &result {
            // Every row still in the outbox waits, the ones this round read included; when the
            // database is what failed, the rows read are all that is known.
            match self.waiting().await {
                Ok((waiting, oldest)) => {
                    self.status
                        .failed(err, oldest.or(unapplied), Some(Backlog::Exactly(waiting)));
                }
                Err(_) => self.status.failed(err, unapplied, None),
            }
        }
        self.feed.unlock(lock).await.map_err(SqlError::Feed)?;
        result.map(|()| drained)
    }

    /// The rows waiting in the outbox, and the time of the oldest: one statement.
    async fn waiting(&self) -> Result<(u64, Option<SystemTime>), SqlError> {
        let failed = |source| SqlError::Query {
            table: OUTBOX_TABLE.to_owned(),
            source,
        };
        let (count, oldest): (i64, Option<i64>) = match self.origin.pool() {
            SqlPool::Postgres(pool) => {
                sqlx::query_as("SELECT count(*), (extract(epoch FROM min(at)) * 1000000)::int8 FROM cache_outbox")
                    .fetch_one(pool)
                    .await
                    .map_err(failed)?
            }
            SqlPool::Sqlite(pool) => sqlx::query_as("SELECT count(*), min(at) FROM cache_outbox")
                .fetch_one(pool)
                .await
                .map_err(failed)?,
        };
        Ok((u64::try_from(count).unwrap_or(0), oldest.map(from_micros)))
    }

    /// The oldest rows the listener can see.
    async fn read(&self) -> Result<Vec<OutboxChange>, SqlError> {
        let failed = |source| SqlError::Query {
            table: OUTBOX_TABLE.to_owned(),
            source,
        };
        let limit = i64::try_from(self.batch).unwrap_or(i64::MAX);
        let rows = match self.origin.pool() {
            SqlPool::Postgres(pool) => sqlx::query(
                "SELECT seq, table_name, record_id, operation, version, \
                 (extract(epoch FROM at) * 1000000)::int8 FROM cache_outbox ORDER BY seq LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .map(outbox_row)
            .collect::<Result<Vec<_>, _>>(),
            SqlPool::Sqlite(pool) => sqlx::query(
                "SELECT seq, table_name, record_id, operation, version, at FROM cache_outbox ORDER BY seq LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .map(outbox_row)
            .collect::<Result<Vec<_>, _>>(),
        };
        rows.map_err(failed)
    }

    /// Applies a batch: per record, its last change in the batch. Answers what the cache made
    /// of each change (the caller does not prune when one is to be delivered again).
    async fn apply(&self, rows: &[OutboxChange]) -> Result<Vec<ChangeOutcome>, SqlError> {
        let mut last: BTreeMap<(&str, &RecordId), &OutboxChange> = BTreeMap::new();
        for row in rows {
            last.insert((row.table.as_str(), &row.id), row);
        }
        let mut last: Vec<&OutboxChange> = last.into_values().collect();
        last.sort_by_key(|r| r.seq);

        // The rows as they are now, one statement per entity.
        let mut upserted: BTreeMap<&'static str, (&'static EntitySchema, Vec<RecordId>)> = BTreeMap::new();
        for row in last.iter().filter(|r| r.operation == Operation::Upsert) {
            for schema in self.tables.get(&row.table).into_iter().flatten() {
                upserted
                    .entry(schema.entity)
                    .or_insert_with(|| (*schema, Vec::new()))
                    .1
                    .push(row.id.clone());
            }
        }
        let mut records = HashMap::new();
        for (entity, (schema, ids)) in upserted {
            for record in self.origin.fetch_many(schema, &ids).await.map_err(SqlError::Origin)? {
                records.insert((entity, record.id.clone()), record);
            }
        }

        let mut changes = Vec::with_capacity(last.len());
        for row in last {
            for schema in self.tables.get(&row.table).into_iter().flatten() {
                let change = match row.operation {
                    Operation::Upsert => match records.remove(&(schema.entity, row.id.clone())) {
                        Some(record) => Change::upsert(schema, record).at(row.at),
                        // Deleted since: its delete is in the outbox too.
                        None => Change::invalidate(schema, row.id.clone()),
                    },
                    Operation::Delete => {
                        let delete = Change::delete(schema, row.id.clone()).at(row.at);
                        match row.version {
                            Some(version) => delete.version(version),
                            None => delete,
                        }
                    }
                };
                changes.push(change);
            }
        }
        let targets: Vec<(&'static str, RecordId)> =
            changes.iter().map(|c| (c.entity().entity, c.id().clone())).collect();
        let outcomes = self.cache.apply_changes(changes).await.map_err(SqlError::Cache)?;
        for (outcome, (entity, id)) in outcomes.iter().zip(&targets) {
            if let ChangeOutcome::Invalid(err) = outcome {
                tracing::warn!(event = "sql_outbox_invalid_row", entity, id = %id, error = %err, "a changed row does not read as its model");
            }
        }
        Ok(outcomes)
    }

    /// Deletes exactly the rows applied (a row with a smaller `seq` that became visible
    /// meanwhile stays).
    async fn prune(&self, rows: &[OutboxChange]) -> Result<(), SqlError> {
        let failed = |source| SqlError::Query {
            table: OUTBOX_TABLE.to_owned(),
            source,
        };
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        match self.origin.pool() {
            SqlPool::Postgres(pool) => {
                sqlx::query("DELETE FROM cache_outbox WHERE seq = ANY($1)")
                    .bind(seqs)
                    .execute(pool)
                    .await
                    .map_err(failed)?;
            }
            SqlPool::Sqlite(pool) => {
                sqlx::query("DELETE FROM cache_outbox WHERE seq IN (SELECT value FROM json_each($1))")
                    .bind(serde_json::Value::from(seqs).to_string())
                    .execute(pool)
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(())
    }
}

fn outbox_row<R: Row>(row: &R) -> Result<OutboxChange, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let decode = |what: &str| sqlx::Error::Decode(format!("outbox {what}").into());
    let id: String = row.try_get(2)?;
    let operation: String = row.try_get(3)?;
    Ok(OutboxChange {
        seq: row.try_get(0)?,
        table: row.try_get(1)?,
        id: RecordId::new(&id).map_err(|e| decode(&format!("record_id `{id}`: {e}")))?,
        operation: match operation.as_str() {
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            other => return Err(decode(&format!("operation `{other}`"))),
        },
        version: row.try_get(4)?,
        at: from_micros(row.try_get(5)?),
    })
}
