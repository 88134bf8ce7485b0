//! The thin typed client over `reqwest`: one function per endpoint, and the one place where
//! Airtable's limits are kept (requests per second per base, the 30 s pause after a 429,
//! batch sizes, the URL length, retries).

use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::AirtableError;

/// Airtable's API, the default [`AirtableConfig::api_url`].
pub const AIRTABLE_API_URL: &str = "https://api.airtable.com";
/// The longest request URL Airtable accepts, in characters.
pub const MAX_URL_LEN: usize = 16_000;
/// The most records a list request returns in one page.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The most records one create, update or delete request may carry.
pub const MAX_RECORDS_PER_BATCH: usize = 10;
/// Airtable's limit of requests per second per base.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 5;
/// How long Airtable makes a base wait after answering 429.
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(30);

/// What a call does while its base waits out a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRateLimit {
    /// Wait until the pause is over, then send (a cache miss gets slow, not an error).
    #[default]
    Wait,
    /// Fail at once with [`AirtableError::RateLimited`] (`OriginError::RateLimited` through
    /// the origin), so that callers can serve something else.
    FailFast,
}

/// How to reach one base, and how hard to press it.
#[derive(Clone)]
pub struct AirtableConfig {
    base_id: String,
    token: String,
    api_url: String,
    requests_per_second: u32,
    on_rate_limit: OnRateLimit,
    rate_limit_pause: Duration,
    timeout: Duration,
    max_attempts: u32,
    retry_min_delay: Duration,
    max_url_len: usize,
}

impl std::fmt::Debug for AirtableConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirtableConfig")
            .field("base_id", &self.base_id)
            .field("token", &"<redacted>")
            .field("api_url", &self.api_url)
            .field("requests_per_second", &self.requests_per_second)
            .field("on_rate_limit", &self.on_rate_limit)
            .field("rate_limit_pause", &self.rate_limit_pause)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl AirtableConfig {
    /// A base (`appXXXXXXXXXXXXXX`) and a personal access token, with Airtable's defaults: its
    /// API URL, 5 requests a second, waiting out a 429 for 30 s, a 30 s timeout, 4 attempts.
    pub fn new(base_id: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_id: base_id.into(),
            token: token.into(),
            api_url: AIRTABLE_API_URL.to_owned(),
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            on_rate_limit: OnRateLimit::Wait,
            rate_limit_pause: RATE_LIMIT_PAUSE,
            timeout: Duration::from_secs(30),
            max_attempts: 4,
            retry_min_delay: Duration::from_millis(200),
            max_url_len: MAX_URL_LEN,
        }
    }

    /// Another API URL: the simulator's (`http://127.0.0.1:PORT`), or a proxy.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// Requests per second to this base from this process (1 to 5; sent evenly spaced, with
    /// a 10% margin): lower it when several instances share a base, so that together they stay
    /// under Airtable's 5.
    pub fn requests_per_second(mut self, n: u32) -> Self {
        self.requests_per_second = n;
        self
    }

    /// Whether calls wait out a 429 pause or fail fast.
    pub fn on_rate_limit(mut self, mode: OnRateLimit) -> Self {
        self.on_rate_limit = mode;
        self
    }

    /// How long a 429 pauses the base (Airtable documents 30 s).
    pub fn rate_limit_pause(mut self, pause: Duration) -> Self {
        self.rate_limit_pause = pause;
        self
    }

    /// How long one request may take before it counts as failed (and is retried).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts per call for 5xx answers and timeouts (at least 1), with exponential backoff
    /// from `min_delay` between them. Creating records or webhooks is never retried: a create
    /// that timed out may have happened.
    pub fn retries(mut self, max_attempts: u32, min_delay: Duration) -> Self {
        self.max_attempts = max_attempts;
        self.retry_min_delay = min_delay;
        self
    }

    /// The base this configuration reaches.
    pub fn base_id(&self) -> &str {
        &self.base_id
    }
}

/// A record as Airtable sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `recXXXXXXXXXXXXXX`.
    pub id: String,
    /// When the record was created (ISO 8601).
    #[serde(rename = "createdTime", default)]
    pub created_time: String,
    /// The non-empty cells, by field name (Airtable leaves empty ones out).
    #[serde(default)]
    pub fields: Map<String, Value>,
}

/// One page of a record list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    /// The records of this page (at most 100).
    pub records: Vec<Record>,
    /// Where the next page starts; `None` on the last page.
    #[serde(default)]
    pub offset: Option<String>,
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// One sort key of a list request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SortBy {
    /// The field name.
    pub field: String,
    /// The direction.
    pub direction: Direction,
}

/// The parameters of a list request (`GET /v0/{base}/{table}` or `POST …/listRecords`).
#[derive(Debug, Clone, Default)]
pub struct ListRecords {
    /// `filterByFormula`.
    pub filter_by_formula: Option<String>,
    /// `fields[]`: the fields to return; `Some(vec![])` asks for none (ids only).
    pub fields: Option<Vec<String>>,
    /// `sort[i][field]`, `sort[i][direction]`.
    pub sort: Vec<SortBy>,
    /// `pageSize` (at most 100, Airtable's default).
    pub page_size: Option<u32>,
    /// `offset`: the page to continue from.
    pub offset: Option<String>,
}

/// A table of the base, from the schema endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TableInfo {
    /// `tblXXXXXXXXXXXXXX`.
    pub id: String,
    /// The table's name.
    pub name: String,
}

/// The client for one base. Clone it to share it: every clone shares one rate limit, which is
/// how the limit holds for everything in the process that talks to the base (the origin, the
/// feed).
#[derive(Clone)]
pub struct AirtableClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: AirtableConfig,
    api_url: Url,
    limiter: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for AirtableClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirtableClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The answer of one attempt.
enum Attempt<T> {
    Done(T),
    RateLimited,
    Failed(AirtableError),
}

impl AirtableClient {
    /// A client for the configured base.
    pub fn new(config: AirtableConfig) -> Result<Self, AirtableError> {
        let rps = NonZeroU32::new(config.requests_per_second)
            .filter(|n| n.get() <= DEFAULT_REQUESTS_PER_SECOND)
            .ok_or_else(|| {
                AirtableError::Config(format!(
                    "requests_per_second must be 1 to {DEFAULT_REQUESTS_PER_SECOND}, not {}",
                    config.requests_per_second
                ))
            })?;
        if config.max_attempts == 0 {
            return Err(AirtableError::Config("max_attempts must be at least 1".to_owned()));
        }
        if config.base_id.is_empty() || config.base_id.contains(['/', '?', '#']) {
            return Err(AirtableError::Config(format!("invalid base id {:?}", config.base_id)));
        }
        let mut api_url = Url::parse(&config.api_url)
            .map_err(|e| AirtableError::Config(format!("invalid api_url {:?}: {e}", config.api_url)))?;
        if api_url.cannot_be_a_base() {
            return Err(AirtableError::Config(format!("invalid api_url {:?}", config.api_url)));
        }
        if api_url.scheme() == "https" && !cfg!(feature = "tls") {
            return Err(AirtableError::Config(format!(
                "{} needs HTTPS: enable cache-airtable's `tls` feature",
                config.api_url
            )));
        }
        if !matches!(api_url.scheme(), "http" | "https") {
            return Err(AirtableError::Config(format!(
                "api_url {:?} is not http(s)",
                config.api_url
            )));
        }
        api_url.set_query(None);
        // No burst, and 10% apart beyond 1/n s: requests leave at least 220 ms apart at 5 a
        // second, so that the delays they meet on the way do not bunch n + 1 of them into one
        // second at Airtable.
        let period = Duration::from_millis(1100) / rps.get();
        let quota = Quota::with_period(period)
            .ok_or_else(|| AirtableError::Config("zero rate period".to_owned()))?
            .allow_burst(NonZeroU32::MIN);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| AirtableError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_url,
                limiter: RateLimiter::direct(quota),
                paused_until: Mutex::new(None),
                config,
            }),
        })
    }

    /// The base this client talks to.
    pub fn base_id(&self) -> &str {
        &self.inner.config.base_id
    }

    /// The configuration.
    pub fn config(&self) -> &AirtableConfig {
        &self.inner.config
    }

    /// The longest URL a request may have.
    pub fn max_url_len(&self) -> usize {
        self.inner.config.max_url_len
    }

    /// `{api_url}/v0/{segments...}`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v0").extend(segments);
        }
        url
    }

    fn table_url(&self, table: &str, rest: &[&str]) -> Url {
        let mut segments = vec![self.base_id(), table];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    /// Sends a request through the base's limits and decodes the JSON answer.
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, AirtableError> {
        let len = url.as_str().len();
        if len > self.inner.config.max_url_len {
            return Err(AirtableError::Limit(format!(
                "{endpoint}: the URL is {len} characters, over Airtable's {}",
                self.inner.config.max_url_len
            )));
        }
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| AirtableError::Decode {
                endpoint,
                reason: e.to_string(),
            })?;
        let config = &self.inner.config;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(config.retry_min_delay)
            .with_max_delay(config.retry_min_delay.saturating_mul(16))
            .with_max_times(config.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
            .build();
        // 429s are retried after the pause, but not forever.
        let mut rate_limited = 0u32;
        loop {
            self.admit().await?;
            match self.attempt(endpoint, method.clone(), url.clone(), body.clone()).await {
                Attempt::Done(value) => return Ok(value),
                Attempt::RateLimited => {
                    let pause = self.pause();
                    rate_limited += 1;
                    if config.on_rate_limit == OnRateLimit::FailFast || rate_limited >= config.max_attempts {
                        return Err(AirtableError::RateLimited { retry_after: pause });
                    }
                }
                // A create that timed out may have created: sending it again could duplicate.
                Attempt::Failed(err) if err.is_retryable() && !creates(endpoint) => match backoff.next() {
                    Some(delay) => {
                        tracing::debug!(endpoint, error = %err, ?delay, "airtable_retry");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(err),
                },
                Attempt::Failed(err) => return Err(err),
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Attempt<T> {
        let mut request = self
            .inner
            .http
            .request(method, url)
            .bearer_auth(&self.inner.config.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Attempt::Failed(AirtableError::Transport(err)),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return Attempt::Failed(AirtableError::Transport(err)),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::RateLimited;
        }
        if !status.is_success() {
            return Attempt::Failed(AirtableError::from_body(status.as_u16(), &bytes));
        }
        match serde_json::from_slice(&bytes) {
            Ok(value) => Attempt::Done(value),
            Err(err) => Attempt::Failed(AirtableError::Decode {
                endpoint,
                reason: err.to_string(),
            }),
        }
    }

    /// Waits for the base's pause to end (or fails fast), then for a request slot.
    async fn admit(&self) -> Result<(), AirtableError> {
        loop {
            let until = *lock(&self.inner.paused_until);
            if let Some(until) = until.filter(|u| *u > Instant::now()) {
                match self.inner.config.on_rate_limit {
                    OnRateLimit::FailFast => {
                        return Err(AirtableError::RateLimited {
                            retry_after: until.saturating_duration_since(Instant::now()),
                        });
                    }
                    OnRateLimit::Wait => tokio::time::sleep_until(until).await,
                }
                continue;
            }
            self.inner.limiter.until_ready().await;
            // A 429 may have paused the base while this call waited for its slot.
            let paused = lock(&self.inner.paused_until).is_some_and(|u| u > Instant::now());
            if !paused {
                return Ok(());
            }
        }
    }

    /// Pauses the base after a 429; answers how long.
    fn pause(&self) -> Duration {
        let pause = self.inner.config.rate_limit_pause;
        let until = Instant::now() + pause;
        let mut paused = lock(&self.inner.paused_until);
        if paused.is_none_or(|p| p < until) {
            if paused.is_none_or(|p| p <= Instant::now()) {
                tracing::warn!(
                    base = %self.base_id(),
                    pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    "airtable_rate_limited"
                );
            }
            *paused = Some(until);
        }
        pause
    }

    /// Whether the base is waiting out a 429 now.
    pub fn is_paused(&self) -> bool {
        lock(&self.inner.paused_until).is_some_and(|u| u > Instant::now())
    }

    /// `GET /v0/{base}/{table}/{id}`: the record, `None` when Airtable answers 404 for it.
    pub async fn get_record(&self, table: &str, id: &str) -> Result<Option<Record>, AirtableError> {
        let url = self.table_url(table, &[id]);
        match self.send("get_record", Method::GET, url, None).await {
            Ok(record) => Ok(Some(record)),
            Err(err) if err.is_record_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// One page of `GET /v0/{base}/{table}`; `POST …/listRecords` (the same list, its
    /// parameters in the body) when the GET URL would be over Airtable's length limit, or
    /// when no fields are asked for (a GET cannot say "none").
    pub async fn list_records(&self, table: &str, params: &ListRecords) -> Result<Page, AirtableError> {
        if let Some(size) = params.page_size
            && !(1..=MAX_PAGE_SIZE).contains(&size)
        {
            return Err(AirtableError::Limit(format!(
                "pageSize must be 1 to {MAX_PAGE_SIZE}, not {size}"
            )));
        }
        let mut url = self.table_url(table, &[]);
        let asks_for_no_fields = params.fields.as_ref().is_some_and(Vec::is_empty);
        {
            let mut query = url.query_pairs_mut();
            if let Some(formula) = &params.filter_by_formula {
                query.append_pair("filterByFormula", formula);
            }
            for field in params.fields.iter().flatten() {
                query.append_pair("fields[]", field);
            }
            for (i, sort) in params.sort.iter().enumerate() {
                query.append_pair(&format!("sort[{i}][field]"), &sort.field);
                query.append_pair(&format!("sort[{i}][direction]"), sort.direction.as_str());
            }
            if let Some(size) = params.page_size {
                query.append_pair("pageSize", &size.to_string());
            }
            if let Some(offset) = &params.offset {
                query.append_pair("offset", offset);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        if !asks_for_no_fields && url.as_str().len() <= self.inner.config.max_url_len {
            return self.send("list_records", Method::GET, url, None).await;
        }
        let mut body = Map::new();
        if let Some(formula) = &params.filter_by_formula {
            body.insert("filterByFormula".to_owned(), Value::from(formula.as_str()));
        }
        if let Some(fields) = &params.fields {
            body.insert("fields".to_owned(), Value::from(fields.clone()));
        }
        if !params.sort.is_empty() {
            let sort = serde_json::to_value(&params.sort).map_err(|e| AirtableError::Decode {
                endpoint: "list_records",
                reason: e.to_string(),
            })?;
            body.insert("sort".to_owned(), sort);
        }
        if let Some(size) = params.page_size {
            body.insert("pageSize".to_owned(), Value::from(size));
        }
        if let Some(offset) = &params.offset {
            body.insert("offset".to_owned(), Value::from(offset.as_str()));
        }
        let url = self.table_url(table, &["listRecords"]);
        self.send("list_records", Method::POST, url, Some(&Value::Object(body)))
            .await
    }

    /// Every page of a list, following `offset`.
    pub async fn list_all(&self, table: &str, params: &ListRecords) -> Result<Vec<Record>, AirtableError> {
        let mut params = params.clone();
        let mut records = Vec::new();
        loop {
            let page = self.list_records(table, &params).await?;
            records.extend(page.records);
            match page.offset {
                Some(offset) => params.offset = Some(offset),
                None => return Ok(records),
            }
        }
    }

    /// `DELETE /v0/{base}/{table}?records[]=…`: deletes at most 10 records; answers the ids
    /// Airtable deleted.
    pub async fn delete_records(&self, table: &str, ids: &[&str]) -> Result<Vec<String>, AirtableError> {
        check_batch("delete_records", ids.len())?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut url = self.table_url(table, &[]);
        url.query_pairs_mut()
            .extend_pairs(ids.iter().map(|id| ("records[]", *id)));
        #[derive(Deserialize)]
        struct Deleted {
            id: String,
            #[serde(default)]
            deleted: bool,
        }
        #[derive(Deserialize)]
        struct Answer {
            records: Vec<Deleted>,
        }
        let answer: Answer = self.send("delete_records", Method::DELETE, url, None).await?;
        Ok(answer.records.into_iter().filter(|r| r.deleted).map(|r| r.id).collect())
    }

    /// `POST /v0/{base}/{table}`: creates at most 10 records.
    pub async fn create_records(
        &self,
        table: &str,
        records: Vec<Map<String, Value>>,
    ) -> Result<Vec<Record>, AirtableError> {
        check_batch("create_records", records.len())?;
        let body = serde_json::json!({
            "records": records.into_iter().map(|fields| serde_json::json!({ "fields": fields })).collect::<Vec<_>>(),
        });
        let answer: Records = self
            .send("create_records", Method::POST, self.table_url(table, &[]), Some(&body))
            .await?;
        Ok(answer.records)
    }

    /// `PATCH /v0/{base}/{table}`: updates the given cells of at most 10 records.
    pub async fn update_records(
        &self,
        table: &str,
        records: Vec<(String, Map<String, Value>)>,
    ) -> Result<Vec<Record>, AirtableError> {
        check_batch("update_records", records.len())?;
        let body = serde_json::json!({
            "records": records
                .into_iter()
                .map(|(id, fields)| serde_json::json!({ "id": id, "fields": fields }))
                .collect::<Vec<_>>(),
        });
        let answer: Records = self
            .send("update_records", Method::PATCH, self.table_url(table, &[]), Some(&body))
            .await?;
        Ok(answer.records)
    }

    /// `GET /v0/meta/bases/{base}/tables`: the base's tables (ids and names).
    pub async fn list_tables(&self) -> Result<Vec<TableInfo>, AirtableError> {
        #[derive(Deserialize)]
        struct Answer {
            tables: Vec<TableInfo>,
        }
        let url = self.url(&["meta", "bases", self.base_id(), "tables"]);
        let answer: Answer = self.send("list_tables", Method::GET, url, None).await?;
        Ok(answer.tables)
    }
}

#[derive(Deserialize)]
struct Records {
    records: Vec<Record>,
}

/// Whether the endpoint creates something, so that sending it twice could create it twice.
fn creates(endpoint: &str) -> bool {
    matches!(endpoint, "create_records" | "create_webhook")
}

fn check_batch(endpoint: &str, len: usize) -> Result<(), AirtableError> {
    if len > MAX_RECORDS_PER_BATCH {
        return Err(AirtableError::Limit(format!(
            "{endpoint}: {len} records, Airtable takes at most {MAX_RECORDS_PER_BATCH} a request"
        )));
    }
    Ok(())
}
