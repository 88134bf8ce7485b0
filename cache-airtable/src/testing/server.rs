//! The simulator's HTTP side: one handler that routes as Airtable's API does and answers
//! with Airtable's status codes and error bodies.

use std::{sync::Arc, time::SystemTime};

use axum::{
    Router,
    body::Bytes,
    extract::State as AxumState,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::{
    MAX_WEBHOOKS_PER_BASE, Shared, SimRecord, State, TableChange, WEBHOOK_LIFETIME, Webhook, formula, is_empty_cell,
    timestamp,
};

pub(crate) fn routes(state: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let message: String = message.into();
    (
        status,
        axum::Json(json!({ "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

/// An error answer, small enough to return in a `Result`.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.kind, self.message)
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        kind: "INVALID_REQUEST_UNKNOWN",
        message: message.into(),
    }
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Could not find what you are looking for",
    )
}

fn model_not_found() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        "Invalid permissions, or the requested model was not found.",
    )
}

fn invalid_request(message: impl Into<String>) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST_UNKNOWN", message)
}

fn status_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        401 => "AUTHENTICATION_REQUIRED",
        403 => "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        404 => "NOT_FOUND",
        422 => "INVALID_REQUEST_UNKNOWN",
        429 => "RATE_LIMIT_REACHED",
        _ => "SERVER_ERROR",
    };
    error(status, kind, "injected by the simulator")
}

fn rate_limited() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_REACHED",
        "Rate limit exceeded. Please try again later",
    )
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == shared.config.token);
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        );
    }
    let segments: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let base = match segments.as_slice() {
        ["v0", "meta", "bases", base, ..] | ["v0", "bases", base, ..] => *base,
        ["v0", base, ..] => *base,
        _ => return not_found(),
    };
    let mut state = shared.lock();
    let Some(b) = state.bases.get_mut(base) else {
        return model_not_found();
    };
    if b.admit(&shared.config).is_err() {
        return rate_limited();
    }
    if let Some(status) = state.failures.pop_front() {
        return status_error(status);
    }
    let url_len = uri.to_string().len() + "https://api.airtable.com".len();
    if url_len > shared.config.max_url_len {
        return error(
            StatusCode::URI_TOO_LONG,
            "URL_TOO_LONG",
            format!(
                "The URL is {url_len} characters, over the limit of {}",
                shared.config.max_url_len
            ),
        );
    }
    let query = uri.query().unwrap_or("");
    let body = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST_BODY",
                    "Could not parse the body as JSON",
                );
            }
        }
    };
    match (&method, segments.as_slice()) {
        (&Method::GET, ["v0", "meta", "bases", _, "tables"]) => list_tables(&mut state, base),
        (&Method::POST, ["v0", "meta", "bases", _, "tables"]) => create_table(&mut state, base, &body),
        (&Method::POST, ["v0", "bases", _, "webhooks"]) => create_webhook(&mut state, base, &body),
        (&Method::GET, ["v0", "bases", _, "webhooks"]) => list_webhooks(&mut state, base),
        (&Method::DELETE, ["v0", "bases", _, "webhooks", id]) => delete_webhook(&mut state, base, id),
        (&Method::POST, ["v0", "bases", _, "webhooks", id, "refresh"]) => refresh_webhook(&mut state, base, id),
        (&Method::GET, ["v0", "bases", _, "webhooks", id, "payloads"]) => list_payloads(&mut state, base, id, query),
        (&Method::GET, ["v0", _, table]) => match ListParams::from_query(query) {
            Ok(params) => list(&mut state, base, table, &params),
            Err(err) => err.into_response(),
        },
        (&Method::POST, ["v0", _, table, "listRecords"]) => match ListParams::from_body(&body) {
            Ok(params) => list(&mut state, base, table, &params),
            Err(err) => err.into_response(),
        },
        (&Method::GET, ["v0", _, table, id]) => get(&mut state, base, table, id),
        (&Method::POST, ["v0", _, table]) => {
            let (response, change) = create(&mut state, base, table, &body);
            finish(&shared, &mut state, base, change);
            response
        }
        (&Method::PATCH, ["v0", _, table]) => {
            let (response, change) = update(&mut state, base, table, &body);
            finish(&shared, &mut state, base, change);
            response
        }
        (&Method::DELETE, ["v0", _, table]) => {
            let (response, change) = delete(&mut state, base, table, query);
            finish(&shared, &mut state, base, change);
            response
        }
        _ => not_found(),
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn finish(shared: &Shared, state: &mut State, base: &str, change: Option<(String, TableChange)>) {
    if let Some((table_id, change)) = change {
        state.record_transaction(&shared.pings, base, &table_id, change);
    }
}

struct ListParams {
    formula: Option<String>,
    fields: Option<Vec<String>>,
    sort: Vec<(String, bool)>,
    page_size: usize,
    offset: Option<String>,
}

impl ListParams {
    fn from_query(query: &str) -> Result<Self, ApiError> {
        let mut params = Self {
            formula: None,
            fields: None,
            sort: Vec::new(),
            page_size: 100,
            offset: None,
        };
        let mut sort: Vec<(Option<String>, bool)> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "filterByFormula" => params.formula = Some(value.into_owned()),
                "fields[]" | "fields" => params.fields.get_or_insert_with(Vec::new).push(value.into_owned()),
                "pageSize" => params.page_size = parse_page_size(&value)?,
                "offset" => params.offset = Some(value.into_owned()),
                key if key.starts_with("sort[") => {
                    let Some((index, part)) = key
                        .strip_prefix("sort[")
                        .and_then(|k| k.split_once("]["))
                        .and_then(|(i, p)| Some((i.parse::<usize>().ok()?, p.strip_suffix(']')?)))
                    else {
                        return Err(bad(format!("invalid sort parameter {key}")));
                    };
                    if index >= 16 {
                        return Err(bad("too many sort keys"));
                    }
                    if sort.len() <= index {
                        sort.resize(index + 1, (None, false));
                    }
                    match part {
                        "field" => sort[index].0 = Some(value.into_owned()),
                        "direction" => sort[index].1 = parse_direction(&value)?,
                        _ => return Err(bad(format!("invalid sort parameter {key}"))),
                    }
                }
                _ => {}
            }
        }
        for (field, desc) in sort {
            let field = field.ok_or_else(|| bad("a sort key without a field"))?;
            params.sort.push((field, desc));
        }
        Ok(params)
    }

    fn from_body(body: &Value) -> Result<Self, ApiError> {
        let mut params = Self {
            formula: body.get("filterByFormula").and_then(Value::as_str).map(str::to_owned),
            fields: None,
            sort: Vec::new(),
            page_size: 100,
            offset: body.get("offset").and_then(Value::as_str).map(str::to_owned),
        };
        if let Some(fields) = body.get("fields") {
            let fields = fields
                .as_array()
                .ok_or_else(|| bad("fields must be an array"))?
                .iter()
                .map(|f| f.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("fields must be strings"))?;
            params.fields = Some(fields);
        }
        if let Some(size) = body.get("pageSize") {
            params.page_size = parse_page_size(&size.to_string())?;
        }
        for key in body.get("sort").and_then(Value::as_array).into_iter().flatten() {
            let field = key
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a sort key without a field"))?;
            let desc = parse_direction(key.get("direction").and_then(Value::as_str).unwrap_or("asc"))?;
            params.sort.push((field.to_owned(), desc));
        }
        Ok(params)
    }
}

fn parse_page_size(value: &str) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n @ 1..=100) => Ok(n),
        _ => Err(bad(format!("pageSize must be 1 to 100, not {value}"))),
    }
}

fn parse_direction(value: &str) -> Result<bool, ApiError> {
    match value {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(bad(format!("invalid sort direction {other}"))),
    }
}

fn record_json(id: &str, record: &SimRecord, fields: Option<&[String]>) -> Value {
    let fields: Map<String, Value> = match fields {
        None => record.fields.clone(),
        Some(names) => record
            .fields
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    json!({ "id": id, "createdTime": record.created_time, "fields": fields })
}

fn list(state: &mut State, base: &str, table: &str, params: &ListParams) -> Response {
    if let Some(b) = state.bases.get_mut(base) {
        b.stats.list_requests += 1;
    }
    let Some(t) = state.table_mut(base, table) else {
        return model_not_found();
    };
    let filter = match params.formula.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => match formula::parse(f) {
            Ok(expr) => Some(expr),
            Err(reason) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "INVALID_FILTER_BY_FORMULA",
                    format!("The formula for filtering records is invalid: {reason}"),
                );
            }
        },
    };
    let mut matching: Vec<(&String, &SimRecord)> = t
        .records
        .iter()
        .filter(|(id, r)| filter.as_ref().is_none_or(|f| f.eval(id, &r.fields).truthy()))
        .collect();
    // Stable: ties keep Airtable's default (creation) order.
    matching.sort_by(|(_, a), (_, b)| {
        for (field, desc) in &params.sort {
            let ord = formula::Cell::of(a.fields.get(field)).sort_cmp(&formula::Cell::of(b.fields.get(field)));
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        std::cmp::Ordering::Equal
    });
    let start = match &params.offset {
        None => 0,
        Some(offset) => match offset.strip_prefix("itr").and_then(|o| o.parse::<usize>().ok()) {
            Some(n) if n <= matching.len() => n,
            _ => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                    "The offset is not valid",
                );
            }
        },
    };
    let end = (start + params.page_size).min(matching.len());
    let records: Vec<Value> = matching[start..end]
        .iter()
        .map(|(id, r)| record_json(id, r, params.fields.as_deref()))
        .collect();
    let mut answer = json!({ "records": records });
    if end < matching.len() {
        answer["offset"] = Value::from(format!("itr{end}"));
    }
    ok(answer)
}

fn get(state: &mut State, base: &str, table: &str, id: &str) -> Response {
    let Some(t) = state.table_mut(base, table) else {
        return model_not_found();
    };
    match t.records.get(id) {
        Some(record) => ok(record_json(id, record, None)),
        None => not_found(),
    }
}

fn list_tables(state: &mut State, base: &str) -> Response {
    let tables: Vec<Value> = state
        .bases
        .get(base)
        .map(|b| {
            b.tables
                .iter()
                .map(|t| json!({ "id": t.id, "name": t.name, "fields": [] }))
                .collect()
        })
        .unwrap_or_default();
    ok(json!({ "tables": tables }))
}

fn create_table(state: &mut State, base: &str, body: &Value) -> Response {
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    else {
        return invalid_request("a table needs a name");
    };
    if state.table_mut(base, name).is_some() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "DUPLICATE_TABLE_NAME",
            format!("table {name} exists"),
        );
    }
    let id = state.ensure_table(base, name);
    ok(json!({ "id": id, "name": name, "fields": [] }))
}

fn batch(body: &Value) -> Result<&Vec<Value>, ApiError> {
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("records must be an array"))?;
    if records.is_empty() || records.len() > 10 {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "INVALID_RECORDS",
            message: format!("1 to 10 records a request, not {}", records.len()),
        });
    }
    Ok(records)
}

fn cells(record: &Value) -> Result<Map<String, Value>, ApiError> {
    match record.get("fields") {
        Some(Value::Object(fields)) => Ok(fields.clone()),
        None => Ok(Map::new()),
        Some(_) => Err(bad("fields must be an object")),
    }
}

type Changed = (Response, Option<(String, TableChange)>);

fn create(state: &mut State, base: &str, table: &str, body: &Value) -> Changed {
    let records = match batch(body) {
        Ok(r) => r,
        Err(err) => return (err.into_response(), None),
    };
    let mut new = Vec::new();
    for record in records {
        match cells(record) {
            Ok(fields) => new.push(fields.into_iter().filter(|(_, v)| !is_empty_cell(v)).collect()),
            Err(err) => return (err.into_response(), None),
        }
    }
    if state.table_mut(base, table).is_none() {
        return (model_not_found(), None);
    }
    let created_time = timestamp(state.now());
    let ids: Vec<String> = new.iter().map(|_| state.new_id("rec")).collect();
    let Some(t) = state.table_mut(base, table) else {
        return (model_not_found(), None);
    };
    let mut answer = Vec::new();
    let mut change = TableChange::default();
    for (id, fields) in ids.into_iter().zip(new) {
        let record = SimRecord {
            created_time: created_time.clone(),
            fields,
        };
        answer.push(record_json(&id, &record, None));
        t.records.insert(id.clone(), record);
        change.created.push((id, created_time.clone()));
    }
    (ok(json!({ "records": answer })), Some((t.id.clone(), change)))
}

fn update(state: &mut State, base: &str, table: &str, body: &Value) -> Changed {
    let records = match batch(body) {
        Ok(r) => r,
        Err(err) => return (err.into_response(), None),
    };
    let Some(t) = state.table_mut(base, table) else {
        return (model_not_found(), None);
    };
    let mut updates = Vec::new();
    for record in records {
        let Some(id) = record.get("id").and_then(Value::as_str) else {
            return (invalid_request("each record needs an id"), None);
        };
        if !t.records.contains_key(id) {
            return (not_found(), None);
        }
        match cells(record) {
            Ok(fields) => updates.push((id.to_owned(), fields)),
            Err(err) => return (err.into_response(), None),
        }
    }
    let mut answer = Vec::new();
    let mut change = TableChange::default();
    for (id, fields) in updates {
        if let Some(record) = t.records.get_mut(&id) {
            for (name, value) in fields {
                if is_empty_cell(&value) {
                    record.fields.remove(&name);
                } else {
                    record.fields.insert(name, value);
                }
            }
            answer.push(record_json(&id, record, None));
            change.changed.push(id);
        }
    }
    (ok(json!({ "records": answer })), Some((t.id.clone(), change)))
}

fn delete(state: &mut State, base: &str, table: &str, query: &str) -> Changed {
    let ids: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "records[]" || k == "records")
        .map(|(_, v)| v.into_owned())
        .collect();
    if ids.is_empty() || ids.len() > 10 {
        return (
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_RECORDS",
                format!("1 to 10 records a request, not {}", ids.len()),
            ),
            None,
        );
    }
    let Some(t) = state.table_mut(base, table) else {
        return (model_not_found(), None);
    };
    // All or nothing: one unknown id fails the request.
    if ids.iter().any(|id| !t.records.contains_key(id)) {
        return (not_found(), None);
    }
    let mut change = TableChange::default();
    let mut answer = Vec::new();
    for id in ids {
        if t.records.remove(&id).is_some() {
            answer.push(json!({ "id": id, "deleted": true }));
            change.destroyed.push(id);
        }
    }
    (ok(json!({ "records": answer })), Some((t.id.clone(), change)))
}

fn webhook_json(id: &str, w: &Webhook) -> Value {
    json!({
        "id": id,
        "type": "client",
        "isHookEnabled": true,
        "notificationUrl": w.notification_url,
        "cursorForNextPayload": w.next_cursor,
        "areNotificationsEnabled": w.notification_url.is_some(),
        "createdTime": timestamp(w.created),
        "expirationTime": timestamp(w.expires),
        "specification": w.specification,
    })
}

/// The base's live webhook; an expired one is gone, as Airtable deletes it.
fn live_webhook<'a>(state: &'a mut State, base: &str, id: &str) -> Option<&'a mut Webhook> {
    let now = state.now();
    let b = state.bases.get_mut(base)?;
    b.webhooks.retain(|_, w| w.expires > now);
    let w = b.webhooks.get_mut(id)?;
    // Payloads are kept 7 days.
    while w
        .payloads
        .front()
        .is_some_and(|(_, at, _)| now.duration_since(*at).unwrap_or_default() >= WEBHOOK_LIFETIME)
    {
        w.payloads.pop_front();
    }
    Some(w)
}

fn create_webhook(state: &mut State, base: &str, body: &Value) -> Response {
    let data_types = body
        .pointer("/specification/options/filters/dataTypes")
        .and_then(Value::as_array);
    if data_types.is_none_or(Vec::is_empty) {
        return invalid_request("specification.options.filters.dataTypes is required");
    }
    let notification_url = match body.get("notificationUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) if url.starts_with("http://") || url.starts_with("https://") => Some(url.clone()),
        Some(_) => return invalid_request("notificationUrl must be an http(s) URL"),
    };
    let now = state.now();
    let id = state.new_id("ach");
    let secret = {
        use sha2::Digest;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        sha2::Sha256::digest(format!("{base}/{id}/{nanos}").as_bytes()).to_vec()
    };
    let Some(b) = state.bases.get_mut(base) else {
        return model_not_found();
    };
    b.webhooks.retain(|_, w| w.expires > now);
    if b.webhooks.len() >= MAX_WEBHOOKS_PER_BASE {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "TOO_MANY_WEBHOOKS",
            "A base has at most 10 webhooks",
        );
    }
    let webhook = Webhook {
        notification_url,
        mac_secret: secret.clone(),
        expires: now + WEBHOOK_LIFETIME,
        created: now,
        specification: body.get("specification").cloned().unwrap_or(Value::Null),
        payloads: Default::default(),
        next_cursor: 1,
    };
    let expires = webhook.expires;
    b.webhooks.insert(id.clone(), webhook);
    ok(json!({
        "id": id,
        "macSecretBase64": base64::engine::general_purpose::STANDARD.encode(secret),
        "expirationTime": timestamp(expires),
    }))
}

fn list_webhooks(state: &mut State, base: &str) -> Response {
    let now = state.now();
    let Some(b) = state.bases.get_mut(base) else {
        return model_not_found();
    };
    b.webhooks.retain(|_, w| w.expires > now);
    let hooks: Vec<Value> = b.webhooks.iter().map(|(id, w)| webhook_json(id, w)).collect();
    ok(json!({ "webhooks": hooks }))
}

fn delete_webhook(state: &mut State, base: &str, id: &str) -> Response {
    if live_webhook(state, base, id).is_none() {
        return not_found();
    }
    if let Some(b) = state.bases.get_mut(base) {
        b.webhooks.remove(id);
    }
    ok(json!({}))
}

fn refresh_webhook(state: &mut State, base: &str, id: &str) -> Response {
    let now = state.now();
    match live_webhook(state, base, id) {
        Some(w) => {
            w.expires = now + WEBHOOK_LIFETIME;
            ok(json!({ "expirationTime": timestamp(w.expires) }))
        }
        None => not_found(),
    }
}

fn list_payloads(state: &mut State, base: &str, id: &str, query: &str) -> Response {
    let mut cursor = 1u64;
    let mut limit = 50usize;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "cursor" => match value.parse::<u64>() {
                Ok(c) if c >= 1 => cursor = c,
                _ => return invalid_request(format!("invalid cursor {value}")),
            },
            "limit" => match value.parse::<usize>() {
                Ok(l @ 1..=50) => limit = l,
                _ => return invalid_request(format!("limit must be 1 to 50, not {value}")),
            },
            _ => {}
        }
    }
    let Some(w) = live_webhook(state, base, id) else {
        return not_found();
    };
    let available: Vec<&(u64, SystemTime, Value)> = w.payloads.iter().filter(|(c, _, _)| *c >= cursor).collect();
    let page: Vec<Value> = available.iter().take(limit).map(|(_, _, p)| p.clone()).collect();
    let next = available
        .get(page.len())
        .map_or(w.next_cursor.max(cursor), |(c, _, _)| *c);
    ok(json!({
        "payloads": page,
        "cursor": next,
        "mightHaveMore": available.len() > page.len(),
    }))
}
