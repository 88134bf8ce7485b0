//! The dashboard's HTML: the sign-in form, the page, the live panels the script refreshes,
//! and refusals. Everything interpolated is escaped here.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use http::StatusCode;

use super::{
    DryRunResult, LookupResult, Overview,
    chart::{Chart, Series, format_value},
    inspect::Held,
};

/// How many of the last deliveries the page lists.
const MAX_DELIVERIES_SHOWN: usize = 10;

/// Escapes text for HTML content and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn head(title: &str, refresh_without_script: bool) -> String {
    let refresh = if refresh_without_script {
        r#"<noscript><meta http-equiv="refresh" content="30"></noscript>"#
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{}</title>
<link rel="stylesheet" href="/admin/assets/dashboard.css">
<script src="/admin/assets/dashboard.js" defer></script>
{refresh}
</head>
"#,
        escape(title)
    )
}

/// The sign-in form, with an error when the last attempt failed.
pub(crate) fn sign_in(error: Option<&str>) -> String {
    let mut html = head("Sign in · model-cache admin", false);
    html.push_str(r#"<body class="signin"><main id="main"><h1>model-cache admin</h1>"#);
    if let Some(error) = error {
        let _ = write!(
            html,
            r#"<p class="error" role="alert" id="signin-error">{}</p>"#,
            escape(error)
        );
    }
    html.push_str(
        r#"<form method="post" action="/admin/session" class="card">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus spellcheck="false">
<p class="hint" id="token-help">The token the server was started with (<code>ADMIN_TOKEN</code>). It is exchanged for a session that ends after a while or when you sign out.</p>
<button type="submit" id="signin">Sign in</button>
</form></main></body></html>"#,
    );
    html
}

/// A refusal page.
pub(crate) fn refusal(status: StatusCode, message: &str) -> String {
    let mut html = head("Refused · model-cache admin", false);
    let _ = write!(
        html,
        r#"<body class="signin"><main id="main"><h1>{} {}</h1><p class="error" role="alert" id="refusal">{}</p><p><a href="/admin/">Back to the dashboard</a></p></main></body></html>"#,
        status.as_u16(),
        escape(status.canonical_reason().unwrap_or("")),
        escape(message)
    );
    html
}

/// What the page shows besides the live panels.
pub(crate) struct PageContext<'a> {
    pub(crate) overview: &'a Overview,
    pub(crate) csrf: &'a str,
    pub(crate) notice: Option<&'a str>,
    pub(crate) entities: &'a [&'static str],
    pub(crate) lookup: Option<&'a LookupResult>,
    pub(crate) dry_run: Option<&'a DryRunResult>,
}

/// The signed-in page.
pub(crate) fn dashboard(ctx: &PageContext<'_>) -> String {
    let csrf = escape(ctx.csrf);
    let mut html = head("model-cache admin", true);
    let _ = write!(
        html,
        r##"<body>
<a class="skip" href="#main">Skip to the dashboard</a>
<header class="top">
<h1>model-cache admin</h1>
<div class="controls">
<button type="button" id="pause" aria-pressed="false" hidden>Pause updates</button>
<span id="updated" class="muted" aria-live="off"></span>
<form method="post" action="/admin/session/end"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="link">Sign out</button></form>
</div>
</header>
<main id="main">
"##
    );
    if let Some(notice) = ctx.notice {
        let _ = write!(
            html,
            r#"<p class="notice" role="status" id="notice">{}</p>"#,
            escape(notice)
        );
    }
    let _ = write!(
        html,
        r#"<div id="live" data-src="/admin/live" data-every="{}">{}</div>"#,
        (ctx.overview.sample_every_seconds * 1000.0).round(),
        live(ctx.overview)
    );

    // Look up a record.
    html.push_str(r#"<section id="lookup" aria-labelledby="lookup-h" class="card"><h2 id="lookup-h">Look up a record</h2><form method="get" action="/admin/#lookup" class="row">"#);
    html.push_str(r#"<div class="field"><label for="entity">Entity</label><select id="entity" name="entity">"#);
    let chosen = match ctx.lookup {
        Some(LookupResult::Found { entity, .. }) => Some(*entity),
        Some(LookupResult::Invalid { entity, .. }) => ctx.entities.iter().copied().find(|e| e == entity),
        None => None,
    };
    for entity in ctx.entities {
        let selected = if chosen == Some(*entity) { " selected" } else { "" };
        let _ = write!(html, r#"<option value="{0}"{selected}>{0}</option>"#, escape(entity));
    }
    let typed = match ctx.lookup {
        Some(LookupResult::Found { id, .. }) => id.as_str().to_owned(),
        Some(LookupResult::Invalid { id, .. }) => id.clone(),
        None => String::new(),
    };
    let _ = write!(
        html,
        r#"</select></div><div class="field"><label for="record-id">Record id</label><input id="record-id" name="id" required spellcheck="false" value="{}"></div><button type="submit" id="lookup-submit">Look up</button></form>"#,
        escape(&typed)
    );
    match ctx.lookup {
        Some(LookupResult::Invalid { message, .. }) => {
            let _ = write!(
                html,
                r#"<p class="error" role="alert" id="lookup-result">{}</p>"#,
                escape(message)
            );
        }
        Some(LookupResult::Found { entity, id, held }) => lookup_result(&mut html, entity, id.as_str(), held, &csrf),
        None => {}
    }
    html.push_str("</section>");

    // Flush by pattern.
    let typed = match ctx.dry_run {
        Some(DryRunResult::Counted(run)) => run.pattern.clone(),
        Some(DryRunResult::Invalid { pattern, .. }) => pattern.clone(),
        None => String::new(),
    };
    let _ = write!(
        html,
        r#"<section id="flush" aria-labelledby="flush-h" class="card"><h2 id="flush-h">Flush by pattern</h2>
<form method="get" action="/admin/#flush" class="row"><div class="field wide"><label for="pattern">Key pattern</label><input id="pattern" name="flush" required spellcheck="false" value="{}" placeholder="projects:r:*" aria-describedby="pattern-help"></div><button type="submit" id="dry-run">Dry run</button></form>
<p class="hint" id="pattern-help">Logical keys: <code>entity:r:id</code> (a record), <code>entity:tomb:id</code> (a tombstone), <code>v:key</code> (a computed value or cached response). <code>*</code> matches anything. A dry run counts first; nothing is removed until you confirm.</p>"#,
        escape(&typed)
    );
    match ctx.dry_run {
        Some(DryRunResult::Invalid { message, .. }) => {
            let _ = write!(
                html,
                r#"<p class="error" role="alert" id="dry-run-result">{}</p>"#,
                escape(message)
            );
        }
        Some(DryRunResult::Counted(run)) => {
            let by_entity: Vec<String> = run.records.iter().map(|(e, n)| format!("{n} in {e}")).collect();
            let _ = write!(
                html,
                r#"<div id="dry-run-result" role="status"><p>Dry run of <code>{}</code>: <strong id="dry-run-count">{}{}</strong> cached record{} would be removed{}.</p>"#,
                escape(&run.pattern),
                if run.truncated { "at least " } else { "" },
                run.total,
                if run.total == 1 { "" } else { "s" },
                if by_entity.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", escape(&by_entity.join(", ")))
                }
            );
            if !run.uncounted.is_empty() {
                let _ = write!(
                    html,
                    r#"<p class="hint">The pattern may also match {}, which the store cannot count beforehand.</p>"#,
                    escape(&run.uncounted.join(", "))
                );
            }
            let _ = write!(
                html,
                r#"<form method="post" action="/admin/flush"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="pattern" value="{}"><button type="submit" class="danger" id="confirm-flush">Flush <code>{}</code> now</button> <a href="/admin/#flush">Cancel</a></form></div>"#,
                escape(&run.pattern),
                escape(&run.pattern)
            );
        }
        None => {}
    }
    html.push_str("</section></main></body></html>");
    html
}

fn lookup_result(html: &mut String, entity: &str, id: &str, held: &Held, csrf: &str) {
    let _ = write!(
        html,
        r#"<div id="lookup-result" role="status"><h3>{} <code>{}</code></h3>"#,
        escape(entity),
        escape(id)
    );
    match held {
        Held::Miss => html.push_str(r#"<p><span class="badge miss" id="held">not cached</span> The next read goes to the origin.</p>"#),
        Held::Tombstone => html.push_str(r#"<p><span class="badge tomb" id="held">tombstone</span> The source does not have this record; the cache answers "not found" until the tombstone expires.</p>"#),
        Held::Cached { bytes, body, version, indexed } => {
            html.push_str(r#"<p><span class="badge hit" id="held">cached</span></p><dl class="facts">"#);
            let _ = write!(html, "<dt>Size</dt><dd>{bytes} bytes</dd>");
            if let Some(version) = version {
                let _ = write!(html, r#"<dt>Version</dt><dd id="held-version">{}</dd>"#, escape(&version.to_string()));
            }
            html.push_str("<dt>TTL left</dt><dd>not reported by the store contract</dd>");
            if !indexed.is_empty() {
                let entries: Vec<String> = indexed
                    .iter()
                    .map(|(field, value)| format!("<code>{}={}</code>", escape(field), escape(&value.to_string())))
                    .collect();
                let _ = write!(html, "<dt>Index entries</dt><dd>{}</dd>", entries.join(" "));
            }
            html.push_str("</dl>");
            if let Some(body) = body {
                let pretty = serde_json::to_string_pretty(body).unwrap_or_default();
                let _ = write!(html, r#"<details><summary>Cached form</summary><pre id="held-body">{}</pre></details>"#, escape(&pretty));
            }
        }
    }
    if !matches!(held, Held::Miss) {
        let _ = write!(
            html,
            r#"<form method="post" action="/admin/records/invalidate"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="entity" value="{}"><input type="hidden" name="id" value="{}"><button type="submit" id="invalidate">Invalidate</button></form>"#,
            escape(entity),
            escape(id)
        );
    }
    html.push_str("</div>");
}

fn time(at: &DateTime<Utc>) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        at.to_rfc3339(),
        at.format("%Y-%m-%d %H:%M:%S UTC"),
        at.format("%H:%M:%S")
    )
}

fn opt(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{}{unit}", format_value(v)))
}

/// The live panels: figures, charts, the store's health, counters, deliveries and feeds.
#[allow(clippy::too_many_lines)]
pub(crate) fn live(o: &Overview) -> String {
    let mut html = String::new();
    let now = o.generated_at;
    let ago = |at: &DateTime<Utc>| {
        #[allow(clippy::cast_precision_loss)]
        let ms = (now - *at).num_milliseconds() as f64;
        (ms / 1000.0).max(0.0)
    };
    // Figures of the last minute, all entities together.
    let (mut hits, mut misses, mut origin_calls, mut seconds) = (0u64, 0u64, 0.0, 0.0);
    for sample in o.samples.iter().filter(|s| ago(&s.at) <= 60.0) {
        seconds += sample.seconds;
        for e in sample.entities.values() {
            hits += e.hits;
            misses += e.misses;
            origin_calls += e.origin_calls_per_second * sample.seconds;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let (misses_per_second, origin) = if seconds > 0.0 {
        (misses as f64 / seconds, origin_calls / seconds)
    } else {
        (0.0, 0.0)
    };
    let store_state = if o.store.checked_at.is_none() {
        r#"<span class="badge">checking…</span>"#.to_owned()
    } else if o.store.reachable {
        format!(r#"<span class="badge ok">up</span> {}"#, opt(o.store.ping_ms, " ms"))
    } else {
        r#"<span class="badge bad">unreachable</span>"#.to_owned()
    };
    let _ = write!(
        html,
        r#"<p class="muted" id="window">Sampled every {} s; the charts cover the last {}. Updated {} UTC.</p>
<section aria-labelledby="figures-h"><h2 id="figures-h" class="visually-hidden">The last minute</h2><dl class="figures">
<div><dt>Hit rate, last minute</dt><dd id="fig-hit-rate">{}</dd></div>
<div><dt>Misses</dt><dd id="fig-misses">{}/s</dd></div>
<div><dt>Origin calls</dt><dd id="fig-origin">{}/s</dd></div>
<div><dt>Store</dt><dd id="fig-store">{store_state}</dd></div>
</dl></section>"#,
        format_value(o.sample_every_seconds),
        if o.window_seconds >= 120.0 {
            format!("{} minutes", format_value((o.window_seconds / 60.0).round()))
        } else {
            format!("{} seconds", format_value(o.window_seconds.round()))
        },
        time(&now),
        opt(super::sampler::percent(hits, misses), "%"),
        format_value(misses_per_second),
        format_value(origin),
    );

    // Charts.
    let series = |f: &dyn Fn(&super::EntitySample) -> Option<f64>| -> Vec<Series<'_>> {
        o.entities
            .keys()
            .map(|entity| Series {
                label: entity,
                points: o
                    .samples
                    .iter()
                    .map(|s| (ago(&s.at), s.entities.get(entity).and_then(f)))
                    .collect(),
            })
            .collect()
    };
    let charts = [
        Chart {
            id: "chart-hit-rate",
            title: "Hit rate",
            unit: "%",
            max: Some(100.0),
            window: o.window_seconds,
            series: series(&|e| e.hit_rate_percent),
        },
        Chart {
            id: "chart-misses",
            title: "Misses",
            unit: "/s",
            max: None,
            window: o.window_seconds,
            series: series(&|e| Some(e.misses_per_second)),
        },
        Chart {
            id: "chart-origin",
            title: "Origin calls",
            unit: "/s",
            max: None,
            window: o.window_seconds,
            series: series(&|e| Some(e.origin_calls_per_second)),
        },
        Chart {
            id: "chart-p50",
            title: "Read latency p50",
            unit: " ms",
            max: None,
            window: o.window_seconds,
            series: series(&|e| e.p50_ms),
        },
        Chart {
            id: "chart-p99",
            title: "Read latency p99",
            unit: " ms",
            max: None,
            window: o.window_seconds,
            series: series(&|e| e.p99_ms),
        },
        Chart {
            id: "chart-ping",
            title: "Store ping",
            unit: " ms",
            max: None,
            window: o.window_seconds,
            series: vec![Series {
                label: "store",
                points: o.samples.iter().map(|s| (ago(&s.at), s.ping_ms)).collect(),
            }],
        },
    ];
    html.push_str(
        r#"<section aria-labelledby="charts-h"><h2 id="charts-h">Over time, per entity</h2><div class="charts">"#,
    );
    for chart in &charts {
        let _ = write!(
            html,
            r#"<figure class="card"><figcaption>{} <span class="muted">({})</span></figcaption>"#,
            escape(chart.title),
            escape(chart.unit.trim())
        );
        html.push_str(&chart.render());
        if chart.id.starts_with("chart-p") && !o.latency_known {
            html.push_str(r#"<p class="hint">Needs the Prometheus recorder (<code>Dashboard::prometheus</code>).</p>"#);
        }
        html.push_str("</figure>");
    }
    html.push_str("</div>");
    html.push_str(r#"<p class="hint">Read latency: the duration of the cache's reads (get, get_many, query) of each entity, from the metrics' histogram buckets; a hit is one store round trip. Store ping is the store alone.</p></section>"#);

    // Store health.
    html.push_str(r#"<div class="columns"><section aria-labelledby="store-h" class="card"><h2 id="store-h">Store</h2><dl class="facts" id="store-facts">"#);
    let _ = write!(html, "<dt>State</dt><dd>{store_state}</dd>");
    if let Some(availability) = o.store.availability {
        let class = match availability {
            cache_core::store::Availability::Available => "ok",
            _ => "bad",
        };
        let _ = write!(
            html,
            r#"<dt>Availability</dt><dd id="store-availability"><span class="badge {class}">{}</span></dd>"#,
            escape(availability.as_str())
        );
    }
    if let Some(stats) = &o.store.stats {
        let _ = write!(html, "<dt>Backend</dt><dd>{}</dd>", escape(&stats.backend));
        let _ = write!(html, r#"<dt>Keys</dt><dd id="store-keys">{}</dd>"#, stats.total_keys);
        let memory = stats
            .memory_used_human
            .clone()
            .or_else(|| stats.memory_used_bytes.map(cache_core::store::human_bytes));
        let _ = write!(
            html,
            "<dt>Memory</dt><dd>{}</dd>",
            escape(memory.as_deref().unwrap_or("–"))
        );
        let _ = write!(
            html,
            "<dt>Evicted keys</dt><dd>{}</dd>",
            stats.evicted_keys.map_or_else(|| "–".to_owned(), |n| n.to_string())
        );
        let _ = write!(
            html,
            "<dt>Clients</dt><dd>{}</dd>",
            stats
                .connected_clients
                .map_or_else(|| "–".to_owned(), |n| n.to_string())
        );
        if let (Some(h), Some(m)) = (stats.keyspace_hits, stats.keyspace_misses) {
            let _ = write!(
                html,
                "<dt>Keyspace hit rate</dt><dd>{}</dd>",
                opt(super::sampler::percent(h, m), "%")
            );
        }
    }
    let store_errors: u64 = o.entities.values().map(|e| e.stats.store_errors).sum();
    let _ = write!(html, "<dt>Store errors answered around</dt><dd>{store_errors}</dd>");
    match &o.store.last_error {
        Some(failure) => {
            let _ = write!(
                html,
                r#"<dt>Last error</dt><dd class="error-text">{} {}</dd>"#,
                time(&failure.at),
                escape(&failure.message)
            );
        }
        None => html.push_str("<dt>Last error</dt><dd>none seen</dd>"),
    }
    html.push_str("</dl></section>");

    // Deliveries and feeds.
    html.push_str(r#"<section aria-labelledby="deliveries-h" class="card"><h2 id="deliveries-h">Last deliveries</h2>"#);
    if o.deliveries.is_empty() {
        html.push_str(r#"<p class="muted" id="deliveries-empty">No webhook or change-feed delivery reported yet.</p>"#);
    } else {
        html.push_str(r#"<div class="scroll" tabindex="0" role="region" aria-labelledby="deliveries-h"><table id="deliveries"><thead><tr><th scope="col">When (UTC)</th><th scope="col">Source</th><th scope="col">Record</th><th scope="col">Outcome</th></tr></thead><tbody>"#);
        for d in o.deliveries.iter().take(MAX_DELIVERIES_SHOWN) {
            let record = match (&d.entity, &d.record) {
                (Some(e), Some(r)) => format!("{} <code>{}</code>", escape(e), escape(r)),
                (Some(e), None) => escape(e),
                (None, Some(r)) => format!("<code>{}</code>", escape(r)),
                (None, None) => "–".to_owned(),
            };
            let class = if d.is_accepted() { "ok" } else { "bad" };
            let detail = d
                .detail
                .as_deref()
                .map(|t| format!(r#"<br><span class="muted">{}</span>"#, escape(t)))
                .unwrap_or_default();
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td>{}</td><td>{record}</td><td><span class="badge {class}">{}</span>{detail}</td></tr>"#,
                time(&d.at),
                escape(&d.source),
                escape(&d.outcome)
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str(r#"<h3 id="feeds-h">Change feeds</h3>"#);
    if o.feeds.is_empty() {
        html.push_str(r#"<p class="muted" id="feeds-empty">No change feed has reported.</p>"#);
    } else {
        html.push_str(r#"<div class="scroll" tabindex="0" role="region" aria-labelledby="feeds-h"><table id="feeds"><thead><tr><th scope="col">Feed</th><th scope="col">Cursor</th><th scope="col">Last applied</th><th scope="col">Lag</th><th scope="col">Backlog</th><th scope="col">Last batch</th><th scope="col">Since start</th></tr></thead><tbody>"#);
        for (name, feed) in &o.feeds {
            let state = if feed.failing {
                r#" <span class="badge bad">failing</span>"#
            } else if feed.held_elsewhere {
                r#" <span class="badge">held by another instance</span>"#
            } else {
                ""
            };
            let last_applied = match (&feed.last_applied_at, &feed.last_source_time) {
                (Some(applied), Some(source)) => format!(
                    r#"{} <span class="muted">(changed at the source {})</span>"#,
                    time(applied),
                    time(source)
                ),
                (Some(applied), None) => time(applied),
                _ => "–".to_owned(),
            };
            let lag = feed.lag_seconds.map_or_else(
                || "–".to_owned(),
                |lag| {
                    let since = feed
                        .current_as_of
                        .as_ref()
                        .map(|at| format!(r#" <span class="muted">(current as of {})</span>"#, time(at)))
                        .unwrap_or_default();
                    format!("{} s{since}", format_value(lag))
                },
            );
            let counts = |c: &cache_core::feed::ChangeCounts| {
                format!(
                    "{} applied, {} refused ({} stale, {} deleted), {} invalid, {} failed",
                    c.applied,
                    c.refused(),
                    c.stale,
                    c.deleted,
                    c.invalid,
                    c.failed
                )
            };
            let mut totals = format!(
                "{} batches: {}; {} errors, {} resyncs",
                feed.totals.batches,
                counts(&feed.totals.changes),
                feed.totals.errors,
                feed.totals.resyncs
            );
            if let Some(error) = &feed.last_error {
                let _ = write!(
                    totals,
                    r#"<br><span class="error-text">Last error {}: {}</span>"#,
                    time(&error.at),
                    escape(&error.message)
                );
            }
            if let Some(resync) = &feed.last_resync {
                let _ = write!(
                    totals,
                    r#"<br><span class="muted">Last resync {} ({}): {} checked, {} refreshed, {} removed</span>"#,
                    time(&resync.at),
                    escape(&resync.reason),
                    resync.checked,
                    resync.refreshed,
                    resync.removed
                );
            }
            let _ = write!(
                html,
                r#"<tr data-feed="{0}"><th scope="row">{0}{state}</th><td><code>{1}</code></td><td>{last_applied}</td><td data-lag>{lag}</td><td data-backlog>{2}</td><td>{3}</td><td>{totals}</td></tr>"#,
                escape(name),
                escape(feed.position.as_deref().unwrap_or("–")),
                escape(&feed.backlog_text),
                feed.last_batch.as_ref().map_or_else(|| "–".to_owned(), counts),
            );
        }
        html.push_str("</tbody></table></div>");
        html.push_str(r#"<p class="hint">Lag: how far behind the source the cache may be, from the oldest change waiting, or from the feed's last look at the source when nothing waits. It grows while a feed fails or stops.</p>"#);
    }
    html.push_str("</section></div>");

    // Counters since start.
    html.push_str(r#"<section aria-labelledby="entities-h" class="card"><h2 id="entities-h">Entities since start</h2><div class="scroll" tabindex="0" role="region" aria-labelledby="entities-h"><table id="entities"><thead><tr><th scope="col">Entity</th><th scope="col">Hit rate</th><th scope="col">Hits</th><th scope="col">Misses</th><th scope="col">Origin calls</th><th scope="col">Origin errors</th><th scope="col">Tombstone hits</th><th scope="col">Stale refusals</th><th scope="col">Coalesced</th></tr></thead><tbody>"#);
    for (entity, e) in &o.entities {
        let s = e.stats;
        let _ = write!(
            html,
            r#"<tr><th scope="row">{}</th><td>{}</td><td data-count="hits">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(entity),
            opt(e.hit_rate_percent, "%"),
            s.hits,
            s.misses,
            s.origin_calls,
            s.origin_errors,
            s.tombstone_hits,
            s.stale_refusals,
            s.coalesced
        );
    }
    html.push_str("</tbody></table></div></section>");

    html.push_str(r#"<div class="columns"><section aria-labelledby="computed-h" class="card"><h2 id="computed-h">Computed values</h2>"#);
    if o.computed.is_empty() {
        html.push_str(r#"<p class="muted">No computed value was read yet.</p>"#);
    } else {
        html.push_str(r#"<div class="scroll" tabindex="0" role="region" aria-labelledby="computed-h"><table><thead><tr><th scope="col">Name</th><th scope="col">Hit rate</th><th scope="col">Hits</th><th scope="col">Misses</th><th scope="col">Computations</th><th scope="col">Errors</th><th scope="col">Served stale</th></tr></thead><tbody>"#);
        for (name, c) in &o.computed {
            let _ = write!(
                html,
                r#"<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                escape(name),
                opt(super::sampler::percent(c.hits, c.misses), "%"),
                c.hits,
                c.misses,
                c.computations,
                c.errors,
                c.stale_served
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str(
        r#"</section><section aria-labelledby="responses-h" class="card"><h2 id="responses-h">Response cache</h2>"#,
    );
    match &o.response_cache {
        None => {
            html.push_str(r#"<p class="hint">Needs the Prometheus recorder (<code>Dashboard::prometheus</code>).</p>"#)
        }
        Some(resources) if resources.is_empty() => {
            html.push_str(r#"<p class="muted">No cached response was looked up yet.</p>"#)
        }
        Some(resources) => {
            html.push_str(r#"<div class="scroll" tabindex="0" role="region" aria-labelledby="responses-h"><table id="responses"><thead><tr><th scope="col">Resource</th><th scope="col">Hit rate</th><th scope="col">Hits</th><th scope="col">Misses</th><th scope="col">Stored</th><th scope="col">Refused</th></tr></thead><tbody>"#);
            for (resource, c) in resources {
                let _ = write!(
                    html,
                    r#"<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    escape(resource),
                    opt(c.hit_rate_percent, "%"),
                    c.hits,
                    c.misses,
                    c.stored,
                    c.refused
                );
            }
            html.push_str("</tbody></table></div>");
        }
    }
    html.push_str("</section></div>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(encode_query("a b/é"), "a%20b%2F%C3%A9");
    }
}
