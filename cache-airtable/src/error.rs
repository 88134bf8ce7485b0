//! What can go wrong talking to Airtable, with Airtable's own error bodies decoded.

use std::time::Duration;

use cache_core::origin::OriginError;
use serde::Deserialize;

/// Why a call to Airtable failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AirtableError {
    /// Airtable answered with an error status and (usually) an error body
    /// (`{"error": {"type": "INVALID_FILTER_BY_FORMULA", "message": "..."}}`).
    #[error("Airtable answered {status} {kind}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// Airtable's error type (`NOT_FOUND`, `AUTHENTICATION_REQUIRED`,
        /// `INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND`, `INVALID_FILTER_BY_FORMULA`, ...), or the
        /// status's reason when the body had none.
        kind: String,
        /// Airtable's message, empty when it sent none.
        message: String,
    },
    /// The base is rate limited (Airtable answered 429, or this client is waiting out an
    /// earlier 429 and was configured to fail fast).
    #[error("Airtable rate limits this base; retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long until requests to the base are allowed again.
        retry_after: Duration,
    },
    /// The request did not get an answer: connection refused or reset, timed out.
    #[error("request to Airtable failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// Airtable's answer did not have the expected shape.
    #[error("Airtable's answer to {endpoint} did not parse: {reason}")]
    Decode {
        /// The endpoint called.
        endpoint: &'static str,
        /// What did not parse.
        reason: String,
    },
    /// A request would break one of Airtable's documented limits (batch size, URL length).
    #[error("request over Airtable's limit: {0}")]
    Limit(String),
    /// The client's configuration is unusable.
    #[error("invalid Airtable configuration: {0}")]
    Config(String),
}

impl AirtableError {
    /// Airtable's error type, for [`AirtableError::Api`].
    pub fn kind(&self) -> Option<&str> {
        match self {
            Self::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The HTTP status, for [`AirtableError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether Airtable said the record (not the table or base) does not exist: a 404 with
    /// type `NOT_FOUND` or `MODEL_ID_NOT_FOUND`. Only this is ever read as "not found"; 401,
    /// 403 (which Airtable also answers for an unknown table) and 422 are errors.
    pub fn is_record_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, kind, .. } if kind == "NOT_FOUND" || kind == "MODEL_ID_NOT_FOUND")
    }

    /// Whether trying again may succeed: 5xx answers and transport failures.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status >= 500,
            Self::Transport(_) => true,
            _ => false,
        }
    }

    /// Decodes an error answer: Airtable sends `{"error": {"type", "message"}}`, sometimes
    /// `{"error": "NOT_FOUND"}`, and proxies in front of it send anything.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: ErrorField,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum ErrorField {
            Object {
                #[serde(rename = "type")]
                kind: String,
                #[serde(default)]
                message: String,
            },
            Kind(String),
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(Body {
                error: ErrorField::Object { kind, message },
            }) => Self::Api { status, kind, message },
            Ok(Body {
                error: ErrorField::Kind(kind),
            }) => Self::Api {
                status,
                kind,
                message: String::new(),
            },
            Err(_) => Self::Api {
                status,
                kind: reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("UNKNOWN")
                    .to_owned(),
                message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            },
        }
    }
}

impl From<AirtableError> for OriginError {
    fn from(err: AirtableError) -> Self {
        match err {
            AirtableError::RateLimited { retry_after } => OriginError::RateLimited {
                retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
            },
            other => OriginError::failed(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_airtable_error_bodies() {
        let err = AirtableError::from_body(
            422,
            br#"{"error":{"type":"INVALID_FILTER_BY_FORMULA","message":"The formula for filtering records is invalid"}}"#,
        );
        assert_eq!(err.kind(), Some("INVALID_FILTER_BY_FORMULA"));
        assert_eq!(err.status(), Some(422));
        assert!(!err.is_record_not_found());
        let err = AirtableError::from_body(404, br#"{"error":"NOT_FOUND"}"#);
        assert!(err.is_record_not_found());
        let err = AirtableError::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(err.kind(), Some("Bad Gateway"));
        assert!(err.is_retryable());
        // A 403 for an unknown table is an error, never "not found".
        let err = AirtableError::from_body(
            403,
            br#"{"error":{"type":"INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND","message":"x"}}"#,
        );
        assert!(!err.is_record_not_found());
        assert!(!err.is_retryable());
    }

    #[test]
    fn rate_limits_become_the_origins() {
        let err: OriginError = AirtableError::RateLimited {
            retry_after: Duration::from_secs(30),
        }
        .into();
        assert!(matches!(err, OriginError::RateLimited { retry_after_ms: 30_000 }));
    }
}
