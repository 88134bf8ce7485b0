//! JSON error responses (`{"error": "...", ...}`) shared by the routers, and the error of
//! building a router from an incomplete configuration.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use crate::SecretError;

/// Why a router or layer could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The secret or token is missing or too short.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A route path is not usable (it must start with `/`).
    #[error("invalid route path {path:?}: {reason}")]
    Path {
        /// The path as configured.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header name is not a valid HTTP header name.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
}

/// An error answered as `{"error": message, ...details}` with a status code.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Map<String, Value>,
    www_authenticate: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".to_owned(), Value::String(message.into()));
        Self {
            status,
            body,
            www_authenticate: None,
        }
    }

    /// Adds a detail field to the body.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.body.insert(key.to_owned(), value.into());
        self
    }

    /// Adds `WWW-Authenticate` (for 401 answers).
    pub(crate) fn challenge(mut self, scheme: &'static str) -> Self {
        self.www_authenticate = Some(scheme);
        self
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// 503 or 500 for a store error, 400 for a request the store rejected.
    pub(crate) fn from_store(err: &cache_core::store::StoreError) -> Self {
        use cache_core::store::StoreError;
        let status = match err {
            StoreError::Unavailable(_) | StoreError::Refused(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(Value::Object(self.body))).into_response();
        if let Some(scheme) = self.www_authenticate {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
        response
    }
}
