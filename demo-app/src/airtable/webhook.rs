//! The base's webhook, kept in a file: `demo-app airtable webhook setup` creates it and writes
//! its id and MAC secret to `AIRTABLE_WEBHOOK_FILE`, and `serve` reads them from there.
//!
//! Airtable shows a webhook's secret once, when it creates the webhook, so it has to be kept
//! somewhere the server finds it. A file, readable by its owner only, beside the demo's SQLite
//! file: the in-memory cache (the default) forgets what it holds at every restart, a secret in
//! a shared Redis is readable by everything that reads the cache, and an environment variable
//! would have to be copied by hand after every setup.

use std::{io::Write, path::Path};

use cache_airtable::{AirtableClient, CreatedWebhook, WebhookInfo};
use serde::{Deserialize, Serialize};

use crate::app::AppError;

/// What the webhook file holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookFile {
    /// The base the webhook watches.
    pub base_id: String,
    /// `achXXXXXXXXXXXXXX`.
    pub webhook_id: String,
    /// The key of the notifications' MAC, as Airtable gave it.
    pub mac_secret_base64: String,
    /// Where Airtable sends notifications; `None` when `serve` only polls.
    pub notification_url: Option<String>,
    /// When the webhook expires unless refreshed (`serve` refreshes it daily).
    pub expiration_time: Option<String>,
}

impl std::fmt::Debug for WebhookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookFile")
            .field("base_id", &self.base_id)
            .field("webhook_id", &self.webhook_id)
            .field("mac_secret_base64", &"***")
            .field("notification_url", &self.notification_url)
            .field("expiration_time", &self.expiration_time)
            .finish()
    }
}

fn file_error(path: &Path, what: &str, source: std::io::Error) -> AppError {
    AppError::Io {
        what: format!("{what} the webhook file {}", path.display()),
        source,
    }
}

impl WebhookFile {
    /// The file's webhook for `created` on `base_id`.
    pub fn new(base_id: &str, created: CreatedWebhook, notification_url: Option<String>) -> Self {
        Self {
            base_id: base_id.to_owned(),
            webhook_id: created.id,
            mac_secret_base64: created.mac_secret_base64,
            notification_url,
            expiration_time: created.expiration_time,
        }
    }

    /// The file at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, AppError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(file_error(path, "reading", err)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| file_error(path, "parsing", err.into()))
    }

    /// Writes the file, readable and writable by its owner only (it holds the secret).
    pub fn write(&self, path: &Path) -> Result<(), AppError> {
        let json = serde_json::to_string_pretty(self).map_err(|err| file_error(path, "writing", err.into()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|err| file_error(path, "writing", err))?;
        // A file that existed keeps its mode through `open`.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|err| file_error(path, "writing", err))?;
        }
        file.write_all(json.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|err| file_error(path, "writing", err))
    }

    /// Removes the file, if there is one.
    pub fn remove(path: &Path) -> Result<(), AppError> {
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(file_error(path, "removing", err)),
            _ => Ok(()),
        }
    }
}

/// What `setup` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    /// The file's webhook is on the base still: kept.
    Kept(WebhookFile),
    /// A webhook was created (and the file written); the one it replaces, if any, removed.
    Created {
        /// The new webhook.
        webhook: WebhookFile,
        /// The webhook removed (`--replace`).
        replaced: Option<String>,
    },
}

/// Creates the base's webhook notifying `notification_url` (none: `serve` polls) and writes
/// it to `path`. When the file already names a webhook the base still has, it is kept, unless
/// `replace`: then it is removed and a new one created.
pub async fn setup(
    client: &AirtableClient,
    path: &Path,
    notification_url: Option<String>,
    replace: bool,
) -> Result<Setup, AppError> {
    let base = client.base_id();
    let airtable = |source| AppError::Airtable {
        base: base.to_owned(),
        source,
    };
    let current = WebhookFile::read(path)?.filter(|file| file.base_id == base);
    let listed = client.list_webhooks().await.map_err(airtable)?;
    let mut replaced = None;
    if let Some(file) = current
        && listed.iter().any(|w| w.id == file.webhook_id)
    {
        if !replace {
            return Ok(Setup::Kept(file));
        }
        client.delete_webhook(&file.webhook_id).await.map_err(airtable)?;
        replaced = Some(file.webhook_id);
    }
    let created = client
        .create_webhook(notification_url.as_deref())
        .await
        .map_err(airtable)?;
    let webhook = WebhookFile::new(base, created, notification_url);
    webhook.write(path)?;
    Ok(Setup::Created { webhook, replaced })
}

/// The base's webhooks.
pub async fn list(client: &AirtableClient) -> Result<Vec<WebhookInfo>, AppError> {
    client.list_webhooks().await.map_err(|source| AppError::Airtable {
        base: client.base_id().to_owned(),
        source,
    })
}

/// Removes the webhook `id` (by default the file's) from the base, and the file when it names
/// that webhook. Answers the webhook removed.
pub async fn remove(client: &AirtableClient, path: &Path, id: Option<String>) -> Result<String, AppError> {
    let file = WebhookFile::read(path)?.filter(|file| file.base_id == client.base_id());
    let Some(id) = id.or_else(|| file.as_ref().map(|f| f.webhook_id.clone())) else {
        return Err(AppError::Usage(format!(
            "{} names no webhook of base {}: name one with --id (`demo-app airtable webhook list`)",
            path.display(),
            client.base_id()
        )));
    };
    match client.delete_webhook(&id).await {
        Ok(()) => {}
        // Gone already (expired, or removed elsewhere): the file is stale all the same.
        Err(err) if err.status() == Some(404) => {}
        Err(source) => {
            return Err(AppError::Airtable {
                base: client.base_id().to_owned(),
                source,
            });
        }
    }
    if file.is_some_and(|f| f.webhook_id == id) {
        WebhookFile::remove(path)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_privately_and_hides_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.json");
        assert_eq!(WebhookFile::read(&path).unwrap(), None);
        let file = WebhookFile {
            base_id: "appDemoHackathon1".to_owned(),
            webhook_id: "achWebhook0000001".to_owned(),
            mac_secret_base64: "c2VjcmV0".to_owned(),
            notification_url: Some("http://127.0.0.1:3000/airtable/notifications".to_owned()),
            expiration_time: None,
        };
        file.write(&path).unwrap();
        assert_eq!(WebhookFile::read(&path).unwrap(), Some(file.clone()));
        assert!(!format!("{file:?}").contains("c2VjcmV0"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        WebhookFile::remove(&path).unwrap();
        WebhookFile::remove(&path).unwrap();
        assert_eq!(WebhookFile::read(&path).unwrap(), None);
    }
}
