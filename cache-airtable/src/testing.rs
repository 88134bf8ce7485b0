//! An Airtable simulator for tests and the offline demo: an axum server on a loopback port
//! that follows Airtable's documented behaviour for what this crate uses.
//!
//! - Records: get, list (`GET` and `POST …/listRecords`) with `filterByFormula` (the subset the
//!   origin emits; anything else is 422 `INVALID_FILTER_BY_FORMULA`), `sort[i][field]`,
//!   `fields[]`, `pageSize` (at most 100) and `offset` paging; create, update (`PATCH`) and
//!   delete (`records[]`), at most 10 records a request. Empty cells (`""`, `[]`, `false`,
//!   `null`) are left out of `fields`, as Airtable does.
//! - Limits: a bearer token (401 `AUTHENTICATION_REQUIRED`), URLs of at most 16,000
//!   characters (414), 5 requests a second per base (a bucket of 5 refilled at 5 a second; an
//!   empty bucket answers 429 `RATE_LIMIT_REACHED` and keeps answering it for 30 s).
//! - Webhooks: create, list, refresh, delete; payloads per webhook with cursors, kept 7 days;
//!   webhooks expire 7 days after creation or refresh; notification pings signed with
//!   `X-Airtable-Content-MAC`. The simulator's calendar can be moved forward
//!   ([`Simulator::advance`]) to test expiry and retention.
//!
//! The simulator has no field schema: a field that no record has reads as empty.
//! Seed it from Rust ([`Simulator::insert`]) or over HTTP (create a table with
//! `POST /v0/meta/bases/{base}/tables`, then create records).

mod formula;
mod server;

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};

/// How long Airtable keeps webhook payloads, and how long a webhook lives unrefreshed.
pub const WEBHOOK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The token the simulator accepts unless told otherwise.
pub const DEFAULT_TOKEN: &str = "patSimulatorToken";
/// The most webhooks a base may have.
const MAX_WEBHOOKS_PER_BASE: usize = 10;
/// The most payloads kept per webhook (besides the 7 days).
const MAX_PAYLOADS_PER_WEBHOOK: usize = 100_000;
/// Notification pings waiting to be sent; more are dropped (the consumer's poll catches up).
const MAX_PENDING_PINGS: usize = 1024;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The personal access token it accepts.
    pub token: String,
    /// Requests a second per base before 429; `0` turns the limit off.
    pub requests_per_second: u32,
    /// How long a 429 keeps the base refusing.
    pub rate_limit_pause: Duration,
    /// The longest URL accepted.
    pub max_url_len: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_owned(),
            requests_per_second: 5,
            rate_limit_pause: Duration::from_secs(30),
            max_url_len: crate::MAX_URL_LEN,
        }
    }
}

/// What a base has seen, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BaseStats {
    /// Requests that reached the base (authenticated), whatever their answer.
    pub requests: u64,
    /// Requests answered 429.
    pub rate_limited: u64,
    /// The most requests seen within any one second.
    pub max_per_second: u64,
    /// List requests (GET and POST listRecords).
    pub list_requests: u64,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<Shared>,
    server: JoinHandle<()>,
    pinger: JoinHandle<()>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) state: Mutex<State>,
    pings: mpsc::Sender<Ping>,
}

pub(crate) struct Ping {
    url: String,
    body: Vec<u8>,
    mac: String,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) bases: BTreeMap<String, Base>,
    /// Statuses the next requests answer with (failure injection).
    pub(crate) failures: VecDeque<u16>,
    /// Added to the wall clock: the simulator's calendar.
    pub(crate) calendar_offset: Duration,
    pub(crate) pings_enabled: bool,
    next_id: u64,
}

#[derive(Default)]
pub(crate) struct Base {
    pub(crate) tables: Vec<Table>,
    pub(crate) stats: BaseStats,
    window: VecDeque<Instant>,
    tokens: f64,
    refilled: Option<Instant>,
    paused_until: Option<Instant>,
    transaction: u64,
    pub(crate) webhooks: BTreeMap<String, Webhook>,
}

pub(crate) struct Table {
    pub(crate) id: String,
    pub(crate) name: String,
    /// By id; ids grow with creation, so this is creation order (Airtable's default order).
    pub(crate) records: BTreeMap<String, SimRecord>,
}

#[derive(Clone)]
pub(crate) struct SimRecord {
    pub(crate) created_time: String,
    pub(crate) fields: Map<String, Value>,
}

pub(crate) struct Webhook {
    pub(crate) notification_url: Option<String>,
    pub(crate) mac_secret: Vec<u8>,
    pub(crate) expires: SystemTime,
    pub(crate) created: SystemTime,
    pub(crate) specification: Value,
    /// `(cursor, when, payload)`.
    pub(crate) payloads: VecDeque<(u64, SystemTime, Value)>,
    pub(crate) next_cursor: u64,
}

/// One change to a table, for the webhooks' payloads.
#[derive(Default)]
pub(crate) struct TableChange {
    pub(crate) created: Vec<(String, String)>,
    pub(crate) changed: Vec<String>,
    pub(crate) destroyed: Vec<String>,
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `true` for a cell Airtable leaves out: `""`, `[]`, `false`, `null`.
pub(crate) fn is_empty_cell(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

pub(crate) fn timestamp(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl State {
    pub(crate) fn now(&self) -> SystemTime {
        SystemTime::now() + self.calendar_offset
    }

    /// A new id with Airtable's shape: a prefix and 14 characters, growing with creation.
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        self.next_id += 1;
        let mut n = self.next_id;
        let mut digits = [b'0'; 14];
        for d in digits.iter_mut().rev() {
            *d = DIGITS[(n % 62) as usize];
            n /= 62;
        }
        format!("{prefix}{}", String::from_utf8_lossy(&digits))
    }

    pub(crate) fn table_mut(&mut self, base: &str, table: &str) -> Option<&mut Table> {
        self.bases
            .get_mut(base)?
            .tables
            .iter_mut()
            .find(|t| t.id == table || t.name == table)
    }

    /// The table, created (with its base) when missing: seeding from Rust.
    pub(crate) fn ensure_table(&mut self, base: &str, table: &str) -> String {
        if let Some(t) = self.table_mut(base, table) {
            return t.id.clone();
        }
        let id = self.new_id("tbl");
        self.bases.entry(base.to_owned()).or_default().tables.push(Table {
            id: id.clone(),
            name: table.to_owned(),
            records: BTreeMap::new(),
        });
        id
    }

    /// Records one transaction on the base's webhooks and queues their pings.
    pub(crate) fn record_transaction(
        &mut self,
        shared_pings: &mpsc::Sender<Ping>,
        base_id: &str,
        table_id: &str,
        change: TableChange,
    ) {
        let now = self.now();
        let pings_enabled = self.pings_enabled;
        let Some(base) = self.bases.get_mut(base_id) else {
            return;
        };
        base.transaction += 1;
        let transaction = base.transaction;
        base.webhooks.retain(|_, w| w.expires > now);
        let mut table = Map::new();
        if !change.created.is_empty() {
            let created: Map<String, Value> = change
                .created
                .iter()
                .map(|(id, created_time)| {
                    (
                        id.clone(),
                        serde_json::json!({ "createdTime": created_time, "cellValuesByFieldId": {} }),
                    )
                })
                .collect();
            table.insert("createdRecordsById".to_owned(), Value::Object(created));
        }
        if !change.changed.is_empty() {
            let changed: Map<String, Value> = change
                .changed
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        serde_json::json!({ "current": { "cellValuesByFieldId": {} } }),
                    )
                })
                .collect();
            table.insert("changedRecordsById".to_owned(), Value::Object(changed));
        }
        if !change.destroyed.is_empty() {
            table.insert("destroyedRecordIds".to_owned(), Value::from(change.destroyed.clone()));
        }
        let payload = serde_json::json!({
            "timestamp": timestamp(now),
            "baseTransactionNumber": transaction,
            "payloadFormat": "v0",
            "actionMetadata": { "source": "client", "sourceMetadata": {} },
            "changedTablesById": { table_id: table },
        });
        for (webhook_id, webhook) in &mut base.webhooks {
            webhook.payloads.push_back((webhook.next_cursor, now, payload.clone()));
            webhook.next_cursor += 1;
            while webhook.payloads.len() > MAX_PAYLOADS_PER_WEBHOOK {
                webhook.payloads.pop_front();
            }
            let Some(url) = webhook.notification_url.clone().filter(|_| pings_enabled) else {
                continue;
            };
            let body = serde_json::json!({
                "base": { "id": base_id },
                "webhook": { "id": webhook_id },
                "timestamp": timestamp(now),
            })
            .to_string()
            .into_bytes();
            let mac = sign(&webhook.mac_secret, &body);
            // Best effort, as Airtable's pings: a full queue drops the ping.
            let _ = shared_pings.try_send(Ping { url, body, mac });
        }
    }
}

/// `hmac-sha256=<hex>` of `body` keyed by `secret`.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("hmac-sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Simulator {
    /// Starts a simulator with the default configuration on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SimConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator with `config` on `addr` (port 0 picks a free one).
    pub async fn start_with(config: SimConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (pings, mut ping_rx) = mpsc::channel::<Ping>(MAX_PENDING_PINGS);
        let state = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                pings_enabled: true,
                ..State::default()
            }),
            pings,
        });
        let app = server::routes(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "airtable_sim_stopped");
            }
        });
        let pinger = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Some(ping) = ping_rx.recv().await {
                let sent = http
                    .post(&ping.url)
                    .header("content-type", "application/json")
                    .header("x-airtable-content-mac", ping.mac)
                    .body(ping.body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if let Err(err) = sent {
                    tracing::debug!(url = %ping.url, error = %err, "airtable_sim_ping_failed");
                }
            }
        });
        Ok(Self {
            addr,
            state,
            server,
            pinger,
        })
    }

    /// The API URL to configure clients with: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token the simulator accepts.
    pub fn token(&self) -> &str {
        &self.state.config.token
    }

    /// Creates an empty base if missing (requests to an unknown base answer 403).
    pub fn create_base(&self, base: &str) {
        self.state.lock().bases.entry(base.to_owned()).or_default();
    }

    /// Creates the table (and its base) if missing; answers the table's id.
    pub fn create_table(&self, base: &str, table: &str) -> String {
        self.state.lock().ensure_table(base, table)
    }

    /// The id of a table, by name or id.
    pub fn table_id(&self, base: &str, table: &str) -> Option<String> {
        self.state.lock().table_mut(base, table).map(|t| t.id.clone())
    }

    /// Creates a record (empty cells dropped), as an Airtable user would; answers its id.
    pub fn insert(&self, base: &str, table: &str, fields: Map<String, Value>) -> String {
        let id = self.state.lock().new_id("rec");
        self.insert_with_id(base, table, &id, fields);
        id
    }

    /// Creates a record with a chosen id (fixtures whose ids are not Airtable's shape);
    /// `false`, changing nothing, when the table already has it.
    pub fn insert_with_id(&self, base: &str, table: &str, id: &str, fields: Map<String, Value>) -> bool {
        let mut state = self.state.lock();
        let table_id = state.ensure_table(base, table);
        let created_time = timestamp(state.now());
        let fields = fields.into_iter().filter(|(_, v)| !is_empty_cell(v)).collect();
        let Some(t) = state.table_mut(base, &table_id) else {
            return false;
        };
        if t.records.contains_key(id) {
            return false;
        }
        t.records.insert(
            id.to_owned(),
            SimRecord {
                created_time: created_time.clone(),
                fields,
            },
        );
        let change = TableChange {
            created: vec![(id.to_owned(), created_time)],
            ..TableChange::default()
        };
        state.record_transaction(&self.state.pings, base, &table_id, change);
        true
    }

    /// Sets cells of a record (an empty value clears the cell); `false` when it does not exist.
    pub fn update(&self, base: &str, table: &str, id: &str, fields: Map<String, Value>) -> bool {
        let mut state = self.state.lock();
        let Some(t) = state.table_mut(base, table) else {
            return false;
        };
        let table_id = t.id.clone();
        let Some(record) = t.records.get_mut(id) else {
            return false;
        };
        for (name, value) in fields {
            if is_empty_cell(&value) {
                record.fields.remove(&name);
            } else {
                record.fields.insert(name, value);
            }
        }
        let change = TableChange {
            changed: vec![id.to_owned()],
            ..TableChange::default()
        };
        state.record_transaction(&self.state.pings, base, &table_id, change);
        true
    }

    /// Deletes a record; `false` when it did not exist.
    pub fn remove(&self, base: &str, table: &str, id: &str) -> bool {
        let mut state = self.state.lock();
        let Some(t) = state.table_mut(base, table) else {
            return false;
        };
        let table_id = t.id.clone();
        if t.records.remove(id).is_none() {
            return false;
        }
        let change = TableChange {
            destroyed: vec![id.to_owned()],
            ..TableChange::default()
        };
        state.record_transaction(&self.state.pings, base, &table_id, change);
        true
    }

    /// A record's cells as stored (empty ones left out).
    pub fn record(&self, base: &str, table: &str, id: &str) -> Option<Map<String, Value>> {
        let mut state = self.state.lock();
        state.table_mut(base, table)?.records.get(id).map(|r| r.fields.clone())
    }

    /// The number of records in a table.
    pub fn count(&self, base: &str, table: &str) -> usize {
        let mut state = self.state.lock();
        state.table_mut(base, table).map_or(0, |t| t.records.len())
    }

    /// What the base has seen.
    pub fn stats(&self, base: &str) -> BaseStats {
        self.state.lock().bases.get(base).map(|b| b.stats).unwrap_or_default()
    }

    /// Makes the next requests (to any base) answer these statuses, with Airtable's error
    /// body for them, before anything else is checked.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().failures.extend(statuses);
    }

    /// Moves the simulator's calendar forward (webhook expiry, payload retention); the rate
    /// limit keeps real time.
    pub fn advance(&self, by: Duration) {
        self.state.lock().calendar_offset += by;
    }

    /// Turns notification pings on or off (off: payloads still accrue, as when pings are lost).
    pub fn set_pings(&self, enabled: bool) {
        self.state.lock().pings_enabled = enabled;
    }

    /// The base's webhooks, by id.
    pub fn webhook_ids(&self, base: &str) -> Vec<String> {
        let state = self.state.lock();
        let now = state.now();
        state
            .bases
            .get(base)
            .map(|b| {
                b.webhooks
                    .iter()
                    .filter(|(_, w)| w.expires > now)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.server.abort();
        self.pinger.abort();
    }
}

impl Base {
    /// Counts a request and applies the rate limit; `Err(())` means 429.
    pub(crate) fn admit(&mut self, config: &SimConfig) -> Result<(), ()> {
        let now = Instant::now();
        self.stats.requests += 1;
        self.window.push_back(now);
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.window.pop_front();
        }
        self.stats.max_per_second = self.stats.max_per_second.max(self.window.len() as u64);
        if config.requests_per_second == 0 {
            return Ok(());
        }
        if self.paused_until.is_some_and(|p| p > now) {
            self.stats.rate_limited += 1;
            return Err(());
        }
        let rate = f64::from(config.requests_per_second);
        let elapsed = self
            .refilled
            .map_or(rate, |t| now.duration_since(t).as_secs_f64() * rate);
        self.tokens = (self.tokens + elapsed).min(rate);
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            self.paused_until = Some(now + config.rate_limit_pause);
            self.stats.rate_limited += 1;
            Err(())
        }
    }
}
