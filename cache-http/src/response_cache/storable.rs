//! What may be stored: the request and response rules of the module docs, and the stored form
//! of a response that passes them.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};

use super::{BoxError, OWN_HEADERS, conditional::etag_for, stored::StoredResponse};
use crate::telemetry::has_directive;

/// Why a request or response is not cached (a `skipped` metric label and a log field).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Skip {
    Disabled,
    Method,
    Authenticated,
    RequestNoStore,
    Status,
    SetCookie,
    VaryStar,
    ResponseNoStore,
    Streaming,
    TooLarge,
    Headers,
    BodyError,
}

impl Skip {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Method => "method",
            Self::Authenticated => "authenticated",
            Self::RequestNoStore => "request_no_store",
            Self::Status => "status",
            Self::SetCookie => "set_cookie",
            Self::VaryStar => "vary_star",
            Self::ResponseNoStore => "response_no_store",
            Self::Streaming => "streaming",
            Self::TooLarge => "too_large",
            Self::Headers => "headers",
            Self::BodyError => "body_error",
        }
    }
}

/// The response as stored when it may be; else the response to pass through, with the
/// reason.
pub(crate) async fn stored_response<B>(
    response: Response<B>,
    request: &HeaderMap,
    max: usize,
) -> Result<StoredResponse, (Response<Body>, Skip)>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (head, body) = buffer_storable(response, max).await?;
    let Some(headers) = StoredResponse::keep_headers(&head.headers, &OWN_HEADERS) else {
        return Err((Response::from_parts(head, Body::from(body)), Skip::Headers));
    };
    let etag = match head.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        Some(etag) => etag.to_owned(),
        None => etag_for(&body),
    };
    Ok(StoredResponse::new(
        head.status.as_u16(),
        headers,
        etag,
        StoredResponse::vary_values(request, &vary_names(&head.headers)),
        body,
    ))
}

/// The response's head and whole body when it may be stored; else the response untouched,
/// with the reason.
async fn buffer_storable<B>(
    response: Response<B>,
    max: usize,
) -> Result<(http::response::Parts, Bytes), (Response<Body>, Skip)>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Err(skip) = storable(&response) {
        return Err((response.map(Body::new), skip));
    }
    match response.body().size_hint().exact() {
        None => return Err((response.map(Body::new), Skip::Streaming)),
        Some(len) if usize::try_from(len).map_or(true, |len| len > max) => {
            return Err((response.map(Body::new), Skip::TooLarge));
        }
        Some(_) => {}
    }
    let (head, body) = response.into_parts();
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok((head, collected.to_bytes())),
        Err(err) => {
            tracing::warn!(error = %err, "response_cache_body_error");
            Err((
                json_response(StatusCode::BAD_GATEWAY, "the response body failed"),
                Skip::BodyError,
            ))
        }
    }
}

/// Why `response` may not be stored, if it may not.
fn storable<B>(response: &Response<B>) -> Result<(), Skip> {
    if response.status() != StatusCode::OK {
        return Err(Skip::Status);
    }
    let headers = response.headers();
    if headers.contains_key(header::SET_COOKIE) {
        return Err(Skip::SetCookie);
    }
    if vary_names(headers).iter().any(|n| n.as_str() == "*") || vary_star(headers) {
        return Err(Skip::VaryStar);
    }
    if has_directive(headers, "no-store") || has_directive(headers, "private") || has_directive(headers, "no-cache") {
        return Err(Skip::ResponseNoStore);
    }
    Ok(())
}

fn vary_star(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*")
}

/// The header names listed in the response's `Vary` (`*` excluded).
fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| HeaderName::try_from(v.trim()).ok())
        .collect()
}

fn json_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
