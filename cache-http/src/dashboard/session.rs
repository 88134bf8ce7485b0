//! Signed-in sessions: the cookie that stands for the admin token in a browser, the CSRF
//! token tied to each session, and the cross-site checks every state change passes.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

use crate::{SecretError, generate_secret};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "model_cache_admin";

/// One signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    expires: Instant,
    /// A message for the next page (after a redirect), shown once.
    pub(crate) notice: Option<String>,
    /// The flush pattern whose dry run was shown: a flush must name it.
    pub(crate) pending_flush: Option<String>,
}

/// The signed-in sessions, bounded in number and in time.
#[derive(Debug)]
pub(crate) struct Sessions {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session; answers its id (the cookie's value). When the map is full, expired
    /// sessions go first, then the one closest to expiry.
    pub(crate) fn open(&self, now: Instant) -> Result<String, SecretError> {
        let id = generate_secret()?;
        let session = Session {
            csrf: generate_secret()?,
            expires: now + self.ttl,
            notice: None,
            pending_flush: None,
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        while map.len() >= self.max {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(id.clone(), session);
        Ok(id)
    }

    /// The live session `id` names (a copy), if any.
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Changes the live session `id`; answers whether there was one.
    pub(crate) fn update(&self, id: &str, now: Instant, f: impl FnOnce(&mut Session)) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(s) if s.expires > now => {
                f(s);
                true
            }
            _ => false,
        }
    }

    /// Takes the session's notice, shown once.
    pub(crate) fn take_notice(&self, id: &str, now: Instant) -> Option<String> {
        let mut notice = None;
        self.update(id, now, |s| notice = s.notice.take());
        notice
    }

    pub(crate) fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The session id in the request's cookies, if any.
pub(crate) fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value of a new session: HttpOnly, `SameSite=Strict`, scoped to `/admin`,
/// living as long as the session, `Secure` when the page was reached over HTTPS.
pub(crate) fn session_cookie(id: &str, ttl: Duration, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        ttl.as_secs()
    ))
    .ok()
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn removal_cookie() -> HeaderValue {
    HeaderValue::from_static("model_cache_admin=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the request came over HTTPS, directly or through a proxy that says so.
pub(crate) fn is_https(headers: &HeaderMap, scheme: Option<&str>) -> bool {
    scheme == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Why a state change was refused as possibly cross-site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrossSite {
    /// `Sec-Fetch-Site` says another site or origin sent it.
    FetchSite,
    /// `Origin` names another origin than the one the request was sent to.
    Origin,
    /// The CSRF token is missing or is not the session's.
    Token,
}

impl CrossSite {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::FetchSite => "refused: the browser says this request came from another site",
            Self::Origin => "refused: the request's Origin is not this server",
            Self::Token => "refused: the form's CSRF token is missing or is not this session's",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::FetchSite => "sec_fetch_site",
            Self::Origin => "origin",
            Self::Token => "csrf_token",
        }
    }
}

/// Checks the headers browsers add to every request: `Sec-Fetch-Site` must be `same-origin`
/// (or `none`: typed or bookmarked) and `Origin`, when sent, must name the host the request
/// was sent to. Clients that send neither (scripts, old browsers) are judged by the CSRF
/// token alone.
pub(crate) fn check_origin(headers: &HeaderMap) -> Result<(), CrossSite> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().map_err(|_| CrossSite::FetchSite)?;
        if !matches!(site, "same-origin" | "none") {
            return Err(CrossSite::FetchSite);
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| CrossSite::Origin)?;
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or(CrossSite::Origin)?;
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or(CrossSite::Origin)?;
        if !authority.eq_ignore_ascii_case(host) {
            return Err(CrossSite::Origin);
        }
    }
    Ok(())
}

/// Checks a form's CSRF token against the session's, in constant time.
pub(crate) fn check_csrf(session: &Session, candidate: Option<&str>) -> Result<(), CrossSite> {
    let candidate = candidate.unwrap_or_default().trim();
    if candidate.is_empty() || !bool::from(session.csrf.as_bytes().ct_eq(candidate.as_bytes())) {
        return Err(CrossSite::Token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        let a = sessions.open(t0).unwrap();
        let b = sessions.open(t0 + Duration::from_secs(1)).unwrap();
        assert!(sessions.get(&a, t0).is_some());
        let c = sessions.open(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(sessions.len(), 2, "the map is bounded");
        assert!(
            sessions.get(&a, t0 + Duration::from_secs(2)).is_none(),
            "the oldest went"
        );
        assert!(sessions.get(&b, t0 + Duration::from_secs(2)).is_some());
        assert!(sessions.get(&c, t0 + Duration::from_secs(61)).is_some());
        assert!(sessions.get(&c, t0 + Duration::from_secs(62)).is_none(), "expired");
        assert!(sessions.get("forged", t0).is_none());
    }

    #[test]
    fn cookies() {
        let h = headers(&[("cookie", "a=1; model_cache_admin=abc ; b=2")]);
        assert_eq!(session_id(&h), Some("abc"));
        assert_eq!(session_id(&headers(&[("cookie", "model_cache_admin=")])), None);
        assert_eq!(session_id(&HeaderMap::new()), None);
        let cookie = session_cookie("abc", Duration::from_secs(1800), false).unwrap();
        let cookie = cookie.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=1800"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!cookie.contains("Secure"));
        let secure = session_cookie("abc", Duration::from_secs(1), true).unwrap();
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn origins() {
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(check_origin(&headers(&[host])), Ok(()), "scripts send neither header");
        let same = [
            host,
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(check_origin(&headers(&same)), Ok(()));
        let other_port = [host, ("origin", "http://127.0.0.1:9999")];
        assert_eq!(check_origin(&headers(&other_port)), Err(CrossSite::Origin));
        assert_eq!(
            check_origin(&headers(&[host, ("origin", "null")])),
            Err(CrossSite::Origin)
        );
        for site in ["same-site", "cross-site"] {
            assert_eq!(
                check_origin(&headers(&[host, ("sec-fetch-site", site)])),
                Err(CrossSite::FetchSite)
            );
        }
    }

    #[test]
    fn csrf_tokens() {
        let sessions = Sessions::new(Duration::from_secs(60), 4);
        let now = Instant::now();
        let id = sessions.open(now).unwrap();
        let session = sessions.get(&id, now).unwrap();
        assert_eq!(check_csrf(&session, Some(&session.csrf.clone())), Ok(()));
        assert_eq!(check_csrf(&session, None), Err(CrossSite::Token));
        assert_eq!(check_csrf(&session, Some("")), Err(CrossSite::Token));
        assert_eq!(check_csrf(&session, Some(&id)), Err(CrossSite::Token));
    }
}
