//! What the dashboard's tests share: the application under test (the common harness's routes
//! with the admin router and its dashboard, sampling fast) and a small browser-less client
//! that keeps the session cookie.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::Router;
use cache_http::{
    admin::{self, AdminConfig},
    dashboard::{Dashboard, DeliveryLog},
};

use crate::common::{Harness, TOKEN};

/// How often the dashboard under test samples: the charts move within a second.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The application: `GET /events/{id}`, `GET /events/{id}/projects`, the admin API and the
/// dashboard. Answers the dashboard's delivery log.
pub fn app(h: &Harness) -> (Router, DeliveryLog) {
    let dashboard = Dashboard::new(&h.cache)
        .prometheus(cache_http::metrics::install_recorder().unwrap())
        .sample_every(SAMPLE_EVERY)
        .history(600);
    let log = dashboard.delivery_log();
    let router = Router::new()
        .merge(h.app())
        .merge(admin::routes(AdminConfig::new(h.cache.clone(), TOKEN).dashboard(dashboard)).unwrap());
    (router, log)
}

/// Percent-encodes form and query values.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser-less client: no redirects followed, the session cookie sent when it has one.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path}", self.base));
        match &self.cookie {
            Some(cookie) => req.header("cookie", cookie),
            None => req,
        }
    }

    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        match &self.cookie {
            Some(cookie) => req.header("cookie", cookie),
            None => req,
        }
    }

    /// Signs in with `token`; keeps the cookie. Answers the `Set-Cookie` value.
    pub async fn sign_in(&mut self, token: &str) -> String {
        let response = self
            .post_form("/admin/session", &[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "signing in redirects to the page");
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        self.cookie = Some(pair);
        set_cookie
    }

    /// The signed-in page's HTML.
    pub async fn page(&self, path_and_query: &str) -> (u16, String) {
        let response = self.get(path_and_query).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The CSRF token on the page.
    pub async fn csrf(&self) -> String {
        let (_, html) = self.page("/admin/").await;
        csrf_of(&html)
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Polls `check` until it answers `Some`, for at most `limit`; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(SAMPLE_EVERY / 2).await;
    }
}
