//! Airtable as the demo's source of truth (`SOURCE=airtable`): the origin on the base
//! (`cache-airtable`), its webhook feed and notification route for `serve`, and the
//! `demo-app airtable` commands: `sim` (an offline Airtable), `seed` (the demo's data through
//! the API) and `webhook setup|list|remove`.

pub mod seed;
pub mod webhook;
pub(crate) mod writes;

use std::{net::SocketAddr, time::Instant};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
    middleware::{self, Next},
    response::Response,
};
use cache_airtable::{AirtableClient, AirtableConfig, AirtableOrigin, FeedConfig, WebhookFeed, testing::Simulator};
use cache_core::{Cache, Cacheable};
use cache_http::dashboard::{DeliveryEvent, DeliveryLog};

use crate::{
    app::AppError,
    commands::{out, progress_bar},
    config::{AirtableCommand, AirtableSettings, Config, WebhookAction},
    models,
    origin::DemoOrigin,
    seed::SeedCounts,
};
pub use webhook::WebhookFile;

/// Where `serve` receives the webhook's notifications.
pub const NOTIFICATION_PATH: &str = "/airtable/notifications";

/// The base `demo-app airtable sim` serves when `AIRTABLE_BASE_ID` is not set.
pub const SIM_BASE_ID: &str = "appDemoHackathon1";

/// The source of the dashboard's deliveries for refused notifications.
const NOTIFICATION_SOURCE: &str = "airtable:notification";

/// The client for the configured base: Airtable's API (HTTPS: the demo's `tls` feature) or
/// the simulator's.
pub fn client(settings: &AirtableSettings) -> Result<AirtableClient, AppError> {
    if settings.api_url.starts_with("https:") && !cfg!(feature = "tls") {
        return Err(AppError::Usage(format!(
            "AIRTABLE_API_URL is {}: HTTPS needs the demo built with `--features tls` \
             (offline, run `demo-app airtable sim` and point AIRTABLE_API_URL at it)",
            settings.api_url
        )));
    }
    let config = AirtableConfig::new(&settings.base_id, settings.token.expose())
        .api_url(&settings.api_url)
        .requests_per_second(settings.requests_per_second);
    AirtableClient::new(config).map_err(|source| AppError::Airtable {
        base: settings.base_id.clone(),
        source,
    })
}

/// The demo's origin on the configured base.
pub fn open_origin(settings: &AirtableSettings) -> Result<DemoOrigin, AppError> {
    Ok(DemoOrigin::on_airtable(AirtableOrigin::new(client(settings)?)))
}

/// The webhook feed `serve` runs, from the webhook file: `None` (logged) when the file names no
/// webhook of this base: the cache then hears of Airtable's changes only through the app's own
/// writes, the sweep and the TTLs.
pub fn feed(settings: &AirtableSettings, origin: &DemoOrigin, cache: &Cache) -> Result<Option<WebhookFeed>, AppError> {
    let Some(airtable) = origin.airtable() else {
        return Ok(None);
    };
    let file = WebhookFile::read(&settings.webhook_file)?;
    let Some(file) = file.filter(|f| f.base_id == settings.base_id) else {
        tracing::warn!(
            base = %settings.base_id,
            file = %settings.webhook_file.display(),
            "demo_airtable_no_webhook: changes made in Airtable reach the cache only with the TTLs and the sweep; \
             run `demo-app airtable webhook setup`"
        );
        return Ok(None);
    };
    let config = FeedConfig::new(file.webhook_id, file.mac_secret_base64);
    WebhookFeed::new(cache.clone(), airtable.clone(), config)
        .map(Some)
        .map_err(|source| AppError::Feed {
            base: settings.base_id.clone(),
            source,
        })
}

/// The feed's notification route, with refused notifications (a wrong or missing MAC)
/// reported to the dashboard's deliveries as the webhook's refusals are; accepted ones wake
/// the feed, whose batches the dashboard lists from the cache's feed status.
pub fn notification_routes(feed: &WebhookFeed, deliveries: DeliveryLog) -> Router {
    feed.routes(NOTIFICATION_PATH)
        .layer(middleware::from_fn(move |request: Request<Body>, next: Next| {
            let deliveries = deliveries.clone();
            async move {
                let response: Response = next.run(request).await;
                if response.status() == StatusCode::UNAUTHORIZED {
                    deliveries.record(
                        DeliveryEvent::new(NOTIFICATION_SOURCE, "unauthorized")
                            .detail("X-Airtable-Content-MAC missing or wrong"),
                    );
                }
                response
            }
        }))
}

/// Starts an Airtable simulator on `addr` with `base_id` and an empty table per model of the
/// demo, accepting `token` (the simulator's own when `None`).
pub async fn start_simulator(addr: SocketAddr, base_id: &str, token: Option<&str>) -> std::io::Result<Simulator> {
    let mut config = cache_airtable::testing::SimConfig::default();
    if let Some(token) = token {
        config.token = token.to_owned();
    }
    let sim = Simulator::start_with(config, addr).await?;
    sim.create_base(base_id);
    for schema in models::schemas() {
        sim.create_table(base_id, schema.source_table);
    }
    Ok(sim)
}

/// The notification URL `webhook setup` gives Airtable by default: this machine's `serve`.
pub fn default_notification_url(config: &Config) -> String {
    let host = if config.bind_addr.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        config.bind_addr
    };
    format!("http://{}{NOTIFICATION_PATH}", SocketAddr::new(host, config.port))
}

fn settings(config: &Config) -> Result<AirtableSettings, AppError> {
    config.airtable_settings().map_err(AppError::Usage)
}

/// `demo-app airtable …`.
pub async fn command(config: &Config, command: &AirtableCommand) -> Result<(), AppError> {
    match command {
        AirtableCommand::Sim { addr } => sim(config, *addr).await,
        AirtableCommand::Seed { replace } => seed(config, *replace).await,
        AirtableCommand::Webhook { action } => webhook(config, action).await,
    }
}

/// `demo-app airtable sim`: the simulator, until Ctrl-C.
async fn sim(config: &Config, addr: SocketAddr) -> Result<(), AppError> {
    let base_id = config.airtable_base_id.as_deref().unwrap_or(SIM_BASE_ID);
    let token = config.airtable_token.as_ref().map(|t| t.expose());
    let sim = start_simulator(addr, base_id, token)
        .await
        .map_err(|source| AppError::Io {
            what: format!("cannot listen on {addr} (choose another with --addr)"),
            source,
        })?;
    let tables: Vec<&str> = models::schemas().iter().map(|s| s.source_table).collect();
    out(format_args!(
        "Airtable simulator on {} (base {base_id}: {}); Ctrl-C stops it, and its data goes with it.\n\
         In the other terminals:\n\n  export SOURCE=airtable AIRTABLE_API_URL={} AIRTABLE_BASE_ID={base_id} AIRTABLE_TOKEN={}\n",
        sim.url(),
        tables.join(", "),
        sim.url(),
        sim.token()
    ))?;
    tokio::signal::ctrl_c().await.map_err(|source| AppError::Io {
        what: "waiting for Ctrl-C".to_owned(),
        source,
    })?;
    drop(sim);
    Ok(())
}

/// `demo-app airtable seed`.
async fn seed(config: &Config, replace: bool) -> Result<(), AppError> {
    let settings = settings(config)?;
    let client = client(&settings)?;
    let counts = SeedCounts::AIRTABLE;
    let total = counts.users + counts.events + counts.projects + counts.votes + counts.referrals;
    // Creates, and the users' links to their events set afterwards.
    let requests = total.div_ceil(10) + counts.users.div_ceil(10);
    let bar = progress_bar(Some(requests as u64));
    bar.set_prefix("seeding");
    let started = Instant::now();
    let seeded = seed::seed_base(&client, counts, replace, |table| {
        bar.set_message(table);
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();
    let seeded = seeded.map_err(|source| AppError::Seed {
        base: settings.base_id.clone(),
        source,
    })?;
    let tables: Vec<String> = seeded
        .tables
        .iter()
        .map(|(table, n)| format!("{n} {}", table.to_lowercase()))
        .collect();
    let deleted = if seeded.deleted > 0 {
        format!(" (after deleting {} records)", seeded.deleted)
    } else {
        String::new()
    };
    out(format_args!(
        "seeded base {}: {}{deleted}, in {} requests and {}ms",
        settings.base_id,
        tables.join(", "),
        seeded.requests,
        started.elapsed().as_millis()
    ))?;
    let (first, second) = readme_projects(&seeded);
    if let (Some(first), Some(second)) = (first, second) {
        out(format_args!(
            "Two projects to try (the README's curl examples use them):\n\n  export PROJECT={first} GONE={second}\n"
        ))?;
    }
    if config.redis_url.is_some() {
        out("note: Redis may still hold records of earlier data: flush it (DELETE /admin/cache)")?;
    }
    Ok(())
}

/// The Airtable ids of the two first projects of the seed: the README changes the first and
/// deletes the second.
pub fn readme_projects(seeded: &seed::SeededBase) -> (Option<String>, Option<String>) {
    let tables = crate::seed::tables(SeedCounts::AIRTABLE);
    let mut projects = tables
        .iter()
        .filter(|(schema, _)| schema.entity == models::Project::schema().entity)
        .flat_map(|(_, rows)| rows.iter())
        .filter_map(|row| row.get("id").and_then(serde_json::Value::as_str))
        .filter_map(|id| seeded.id_of(id).map(str::to_owned));
    (projects.next(), projects.next())
}

/// `demo-app airtable webhook …`.
async fn webhook(config: &Config, action: &WebhookAction) -> Result<(), AppError> {
    let settings = settings(config)?;
    let client = client(&settings)?;
    let path = &settings.webhook_file;
    match action {
        WebhookAction::Setup {
            notification_url,
            poll_only,
            replace,
        } => {
            let url = (!poll_only).then(|| {
                notification_url
                    .clone()
                    .unwrap_or_else(|| default_notification_url(config))
            });
            match webhook::setup(&client, path, url, *replace).await? {
                webhook::Setup::Kept(file) => out(format_args!(
                    "base {} has the webhook {} of {} already (notifying {}); --replace makes a new one",
                    file.base_id,
                    file.webhook_id,
                    path.display(),
                    file.notification_url.as_deref().unwrap_or("nobody: serve polls")
                ))?,
                webhook::Setup::Created { webhook, replaced } => {
                    if let Some(old) = replaced {
                        out(format_args!("removed the webhook {old}"))?;
                    }
                    out(format_args!(
                        "created the webhook {} on base {}, notifying {}; its id and secret are in {} \
                         (readable by you only), where `serve` reads them",
                        webhook.webhook_id,
                        webhook.base_id,
                        webhook
                            .notification_url
                            .as_deref()
                            .unwrap_or("nobody (serve polls every minute)"),
                        path.display()
                    ))?;
                }
            }
        }
        WebhookAction::List => {
            let used = WebhookFile::read(path)?.map(|f| f.webhook_id);
            let webhooks = webhook::list(&client).await?;
            if webhooks.is_empty() {
                out(format_args!(
                    "base {} has no webhook (`demo-app airtable webhook setup` creates one)",
                    client.base_id()
                ))?;
            }
            for w in webhooks {
                let mark = if used.as_deref() == Some(w.id.as_str()) {
                    "  (serve's)"
                } else {
                    ""
                };
                out(format_args!(
                    "{}  notifies {}  next cursor {}  expires {}{mark}",
                    w.id,
                    w.notification_url.as_deref().unwrap_or("nobody"),
                    w.cursor_for_next_payload,
                    w.expiration_time.as_deref().unwrap_or("?"),
                ))?;
            }
        }
        WebhookAction::Remove { id } => {
            let removed = webhook::remove(&client, path, id.clone()).await?;
            out(format_args!(
                "removed the webhook {removed} from base {}",
                client.base_id()
            ))?;
        }
    }
    Ok(())
}
