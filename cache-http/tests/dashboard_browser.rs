//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver). Signing in, the charts moving after a burst of requests, looking up and
//! invalidating a record, a dry-run flush and its confirmation, and the refusal of requests
//! without a session and of forms forged by another origin or site.
//!
//! Every test saves screenshots under `<target>/<profile>/dashboard-screenshots/`; a failure
//! saves one more and names it in its message. Without `chromedriver` (on `PATH`, or named by
//! `CHROMEDRIVER`) the tests print a notice and pass: `.ci/run` installs Debian's `chromium`
//! and `chromium-driver`. `CHROME_BIN` names the browser when it is not `/usr/bin/chromium`.
#![allow(clippy::unwrap_used)]

mod common;
mod dashboard_support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use axum::{Router, response::Html, routing::get};
use cache_core::{
    Cacheable,
    store::{Lookup, Store},
};
use cache_http::dashboard::{DeliveryEvent, DeliveryLog};
use common::{Event, Harness, Project, TOKEN, id, serve};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element, key::Key};
use serde_json::json;
use tokio::sync::Mutex;

/// One browser at a time: Chromium is heavy and the machine is shared.
static BROWSER: Mutex<()> = Mutex::const_new(());

/// How long a page or a condition may take.
const LIMIT: Duration = Duration::from_secs(20);

/// `chromedriver` on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromedriver"))
        .find(|path| path.is_file())
}

fn screenshot_dir() -> PathBuf {
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let dir = profile.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A headless Chromium session, saving screenshots named after its test.
struct Browser {
    client: Client,
    test: &'static str,
    shots: AtomicUsize,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a browser; `None` (with a notice) when chromedriver is missing.
    async fn start(test: &'static str) -> Option<Self> {
        let Some(binary) = chromedriver() else {
            eprintln!(
                "NOTICE: {test} skipped: chromedriver is not installed \
                 (apt-get install chromium chromium-driver, or set CHROMEDRIVER)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Wait until chromedriver answers.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + LIMIT;
        while http.get(format!("{}/status", driver.url)).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {}",
                driver.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let browser = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,2400", "--force-device-scale-factor=1"]
        });
        if Path::new(&browser).is_file() {
            options["binary"] = json!(browser);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".to_owned(), json!("chrome"));
        caps.insert("goog:chromeOptions".to_owned(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start a browser session through chromedriver: {e}"));
        Some(Self {
            client,
            test,
            shots: AtomicUsize::new(0),
            _driver: driver,
        })
    }

    /// Saves a screenshot of the window; answers where.
    async fn shot(&self, name: &str) -> PathBuf {
        let n = self.shots.fetch_add(1, Ordering::Relaxed);
        let path = screenshot_dir().join(format!("{}-{n:02}-{name}.png", self.test));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).unwrap(),
            Err(err) => eprintln!("no screenshot {}: {err}", path.display()),
        }
        path
    }

    /// Fails the test with `message`, pointing to a screenshot of the moment.
    async fn fail(&self, message: &str) -> ! {
        let path = self.shot("failure").await;
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        panic!("{}: {message}\n  at {url}\n  screenshot: {}", self.test, path.display());
    }

    async fn goto(&self, url: &str) {
        if let Err(err) = self.client.goto(url).await {
            self.fail(&format!("cannot open {url}: {err}")).await;
        }
    }

    /// The element `css` selects, waiting for it to appear.
    async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(LIMIT).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(err) => self.fail(&format!("no element {css}: {err}")).await,
        }
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        match element.text().await {
            Ok(text) => text,
            Err(err) => self.fail(&format!("no text in {css}: {err}")).await,
        }
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        if let Err(err) = element.click().await {
            self.fail(&format!("cannot click {css}: {err}")).await;
        }
    }

    /// Types `text` into the field `css` after clearing it.
    async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        let typed = async {
            element.clear().await?;
            element.send_keys(text).await
        };
        if let Err(err) = typed.await {
            self.fail(&format!("cannot type into {css}: {err}")).await;
        }
    }

    /// Checks `condition`, failing with `message` and a screenshot when it does not hold.
    async fn check(&self, condition: bool, message: impl AsRef<str>) {
        if !condition {
            self.fail(message.as_ref()).await;
        }
    }

    /// Polls the text or attribute `read` answers until `accept` takes it.
    async fn until(&self, what: &str, css: &str, attribute: Option<&str>, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                let value = match attribute {
                    Some(name) => element.attr(name).await.ok().flatten(),
                    None => element.text().await.ok(),
                };
                if let Some(value) = value {
                    if accept(&value) {
                        return value;
                    }
                    last = value;
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out waiting for {what} ({css}); last seen: {last:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign_in(&self, base: &str) {
        self.goto(&format!("{base}/admin/")).await;
        self.fill("#token", TOKEN).await;
        self.click("#signin").await;
        self.find("#chart-hit-rate").await;
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

async fn app() -> (Harness, String, DeliveryLog) {
    let h = Harness::new();
    let (router, log) = dashboard_support::app(&h);
    let base = serve(router).await;
    (h, base, log)
}

#[tokio::test]
async fn signs_in_and_watches_the_charts_move() {
    let _one = BROWSER.lock().await;
    let Some(b) = Browser::start("charts").await else {
        return;
    };
    let (_h, base, log) = app().await;

    b.goto(&format!("{base}/admin/")).await;
    b.fill("#token", "not-the-token-0123456789-abcdef").await;
    b.click("#signin").await;
    let error = b.text("#signin-error").await;
    b.check(
        error.contains("not the admin token"),
        format!("a wrong token is refused: {error:?}"),
    )
    .await;
    b.shot("wrong-token").await;

    b.fill("#token", TOKEN).await;
    b.click("#signin").await;
    let before = b
        .find("#chart-hit-rate")
        .await
        .attr("data-latest")
        .await
        .unwrap()
        .unwrap_or_default();
    b.check(!before.contains("events=1"), format!("no reads yet: {before}"))
        .await;
    let cookies = b.client.execute("return document.cookie", vec![]).await.unwrap();
    b.check(
        !cookies.as_str().unwrap_or_default().contains("model_cache_admin"),
        format!("the session cookie is HttpOnly: {cookies}"),
    )
    .await;
    b.shot("signed-in").await;

    // A burst of requests through the application.
    let http = reqwest::Client::new();
    for n in 0..40 {
        let path = if n % 4 == 0 {
            "/events/recE1/projects"
        } else {
            "/events/recE1"
        };
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    log.record(
        DeliveryEvent::new("webhook", "applied")
            .entity("events")
            .record("recE1"),
    );

    // The script refreshes the live panels: the hit-rate line appears without a reload.
    let latest = b
        .until(
            "the hit-rate chart to show the burst",
            "#chart-hit-rate",
            Some("data-latest"),
            |v| {
                v.split(',')
                    .any(|part| part.starts_with("events=") && part != "events=none")
            },
        )
        .await;
    b.check(latest.contains("events="), &latest).await;
    let refreshed = b
        .find("#live")
        .await
        .attr("data-refreshed")
        .await
        .unwrap()
        .unwrap_or_default();
    b.check(
        !refreshed.is_empty(),
        "the panels were refreshed by the script, not by a reload",
    )
    .await;
    b.check(
        !b.client
            .find_all(Locator::Css("#chart-hit-rate polyline, #chart-hit-rate circle"))
            .await
            .unwrap()
            .is_empty(),
        "the chart draws the burst",
    )
    .await;
    b.until("the delivery to be listed", "#deliveries", None, |t| {
        t.contains("recE1") && t.contains("applied")
    })
    .await;
    b.until("the response cache to be listed", "#responses", None, |t| {
        t.contains("events")
    })
    .await;
    let hits = b.text("#entities tbody tr:first-child td[data-count=hits]").await;
    b.check(
        hits.parse::<u64>().unwrap_or(0) > 0,
        format!("events hits since start: {hits}"),
    )
    .await;

    // Pausing stops the updates, for people who need the page to hold still.
    b.click("#pause").await;
    let pressed = b.find("#pause").await.attr("aria-pressed").await.unwrap();
    b.check(
        pressed.as_deref() == Some("true"),
        "the pause button says it is pressed",
    )
    .await;
    b.shot("charts").await;

    // Every field has a label, and the page fits a phone's width.
    let unlabelled = b
        .client
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select')]\
             .filter(e => !e.id || !document.querySelector('label[for=\"' + e.id + '\"]')).map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    b.check(unlabelled == json!([]), format!("fields without a label: {unlabelled}"))
        .await;
    b.client.set_window_size(390, 844).await.unwrap();
    let fits = b
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    b.shot("phone").await;
    b.check(fits == json!(true), "the page scrolls sideways on a phone")
        .await;
    b.close().await;
}

#[tokio::test]
async fn looks_up_invalidates_and_flushes_a_record() {
    let _one = BROWSER.lock().await;
    let Some(b) = Browser::start("records").await else {
        return;
    };
    let (h, base, _) = app().await;
    let _ = h.cache.get::<Event>(&id("recE1")).await.unwrap();
    let _ = h.cache.get::<Event>(&id("recE2")).await.unwrap();
    let _ = h.cache.get::<Project>(&id("recP1")).await.unwrap();
    b.sign_in(&base).await;

    // Look up with the keyboard: choose the entity, type the id, press Enter.
    let select = b.find("#entity").await;
    select.select_by_value("events").await.unwrap();
    b.fill("#record-id", &format!("recE1{}", char::from(Key::Enter))).await;
    let held = b.text("#held").await;
    b.check(held == "cached", format!("recE1 is cached: {held:?}")).await;
    b.shot("lookup").await;

    b.click("#invalidate").await;
    let notice = b.text("#notice").await;
    b.check(notice.contains("Invalidated events recE1"), &notice).await;
    let held = b.text("#held").await;
    b.check(held == "not cached", format!("after the invalidation: {held:?}"))
        .await;
    let schema = Event::schema();
    b.check(
        h.store.get(schema, &id("recE1")).await.unwrap() == Lookup::Miss,
        "the store forgot recE1",
    )
    .await;

    // A dry run counts; nothing goes until the confirmation.
    b.fill("#pattern", "events:*").await;
    b.click("#dry-run").await;
    let count = b.text("#dry-run-count").await;
    b.check(count == "1", format!("one event record is left: {count:?}"))
        .await;
    b.check(
        matches!(h.store.get(schema, &id("recE2")).await.unwrap(), Lookup::Hit(_)),
        "the dry run removed nothing",
    )
    .await;
    b.shot("dry-run").await;

    b.click("#confirm-flush").await;
    let notice = b.text("#notice").await;
    b.check(notice.contains("Flushed events:*: 1 key removed."), &notice)
        .await;
    b.check(
        h.store.get(schema, &id("recE2")).await.unwrap() == Lookup::Miss,
        "the flush removed recE2",
    )
    .await;
    b.check(
        matches!(
            h.store.get(Project::schema(), &id("recP1")).await.unwrap(),
            Lookup::Hit(_)
        ),
        "projects stay",
    )
    .await;
    b.shot("flushed").await;
    b.close().await;
}

/// A page on another origin holding a form that posts a flush of everything to `target`.
async fn attacker(target: &str) -> String {
    let page = format!(
        r#"<!doctype html><title>Win a prize</title>
<form method="post" action="{target}/admin/flush"><input type="hidden" name="pattern" value="*">
<button id="go">Claim</button></form>"#
    );
    serve(Router::new().route("/", get(move || async move { Html(page) }))).await
}

#[tokio::test]
async fn refuses_requests_without_a_session_and_forged_forms() {
    let _one = BROWSER.lock().await;
    let Some(b) = Browser::start("refusals").await else {
        return;
    };
    let (h, base, _) = app().await;
    let _ = h.cache.get::<Event>(&id("recE1")).await.unwrap();
    let cached = || async {
        matches!(
            h.store.get(Event::schema(), &id("recE1")).await.unwrap(),
            Lookup::Hit(_)
        )
    };

    // Without a session: the live panels are refused, the page asks to sign in.
    b.goto(&format!("{base}/admin/live")).await;
    let refusal = b.text("#refusal").await;
    b.check(refusal.contains("sign in first"), &refusal).await;
    b.shot("no-session").await;
    b.goto(&format!("{base}/admin/")).await;
    b.find("#token").await;

    b.sign_in(&base).await;

    // Another origin on the same host (same site: the SameSite cookie is sent), posting a
    // flush without the CSRF token.
    let same_site = attacker(&base).await;
    b.goto(&format!("{same_site}/")).await;
    b.click("#go").await;
    // Polled: the form's navigation may not have replaced the page yet.
    b.until("the same-site refusal", "#refusal", None, |t| {
        t.contains("another site")
    })
    .await;
    b.check(cached().await, "nothing was flushed").await;
    b.shot("forged-same-site").await;

    // Another site (`localhost` is not `127.0.0.1`): the browser does not even send the cookie.
    let cross_site = attacker(&base).await.replace("127.0.0.1", "localhost");
    b.goto(&format!("{cross_site}/")).await;
    b.click("#go").await;
    b.until("the cross-site refusal", "#refusal", None, |t| {
        t.contains("another site")
    })
    .await;
    b.check(cached().await, "nothing was flushed").await;
    b.shot("forged-cross-site").await;

    // The session itself still works from the dashboard.
    b.goto(&format!("{base}/admin/")).await;
    b.find("#chart-hit-rate").await;
    b.close().await;
}

/// The README's screenshot: a minute and a half of varied traffic, then the page. Run it on purpose:
/// `DASHBOARD_SCREENSHOT=docs/src/images/dashboard.png cargo test -p cache-http --test
/// dashboard_browser -- --ignored readme`.
#[tokio::test]
#[ignore = "takes a minute and a half; makes the README's screenshot"]
async fn readme_screenshot() {
    let _one = BROWSER.lock().await;
    let Some(b) = Browser::start("readme").await else {
        return;
    };
    let h = Harness::new();
    let dashboard = cache_http::dashboard::Dashboard::new(&h.cache)
        .prometheus(cache_http::metrics::install_recorder().unwrap())
        .sample_every(Duration::from_secs(1))
        .history(90);
    let log = dashboard.delivery_log();
    let router = Router::new().merge(h.app()).merge(
        cache_http::admin::routes(cache_http::admin::AdminConfig::new(h.cache.clone(), TOKEN).dashboard(dashboard))
            .unwrap(),
    );
    let base = serve(router).await;
    b.client.set_window_size(1280, 2000).await.unwrap();
    b.sign_in(&base).await;

    // A minute and a half of traffic: steady reads with a few invalidations, then a burst of
    // invalidations (a bulk edit at the source: the hit rate dips, the origin is called), then
    // the steady state again.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(92) {
        round += 1;
        let second = started.elapsed().as_secs();
        let bulk_edit = (40..55).contains(&second);
        if bulk_edit || round.is_multiple_of(12) {
            h.cache.invalidate::<Event>(&id("recE1")).await.unwrap();
        }
        if bulk_edit && round.is_multiple_of(2) || round.is_multiple_of(17) {
            h.cache
                .invalidate::<Project>(&id(if round.is_multiple_of(3) { "recP2" } else { "recP1" }))
                .await
                .unwrap();
        }
        let _ = http.get(format!("{base}/events/recE1")).send().await;
        let _ = http.get(format!("{base}/events/recE1/projects")).send().await;
        let _ = h
            .cache
            .get::<Project>(&id(if round.is_multiple_of(3) { "recP2" } else { "recP1" }))
            .await;
        if round.is_multiple_of(300) {
            log.record(
                DeliveryEvent::new("webhook", "applied")
                    .entity("projects")
                    .record("recP1"),
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    log.record(
        DeliveryEvent::new("webhook", "stale")
            .entity("projects")
            .record("recP1")
            .detail("version 3 is older than the cached 4"),
    );
    log.record(
        DeliveryEvent::new("webhook", "applied")
            .entity("events")
            .record("recE1"),
    );
    log.record(
        DeliveryEvent::new("webhook", "invalid_record")
            .entity("Events")
            .detail("field `Name` is missing"),
    );
    let outbox = h.cache.feeds().reporter("sql:outbox");
    let now = std::time::SystemTime::now();
    outbox.applied(
        &[
            cache_core::change::ChangeOutcome::Applied,
            cache_core::change::ChangeOutcome::Applied,
        ],
        Some("1042"),
        Some(now - Duration::from_millis(300)),
    );
    outbox.checked(cache_core::feed::Backlog::Exactly(0), None, now);
    b.goto(&format!("{base}/admin/")).await;
    b.find("#chart-hit-rate polyline").await;
    let path = b.shot("page").await;
    if let Some(to) = std::env::var_os("DASHBOARD_SCREENSHOT") {
        std::fs::copy(&path, &to).unwrap();
        eprintln!("saved {}", PathBuf::from(to).display());
    }
    b.close().await;
}
