//! Browser sessions of Your App: a random cookie value mapping to the signed-in persona, in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "your_app_session";

/// Bytes of CSPRNG output in a session id (256 bits).
const SESSION_ID_BYTES: usize = 32;

/// The randomness source failed; no session can be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate a session id")]
pub struct SessionIdError;

/// Session id → persona name. Sessions live as long as the process; this is a test bed.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, String>>,
}

impl Sessions {
    /// Starts a session for a persona and returns the `Set-Cookie` value that carries it.
    pub fn start(&self, persona_name: &str) -> Result<String, SessionIdError> {
        let mut bytes = [0_u8; SESSION_ID_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SessionIdError)?;
        let session_id: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        self.lock()
            .insert(session_id.clone(), persona_name.to_owned());
        Ok(format!(
            "{SESSION_COOKIE}={session_id}; HttpOnly; SameSite=Lax; Path=/"
        ))
    }

    /// The persona name of the session the request's cookie names, if any.
    pub fn persona_of(&self, headers: &HeaderMap) -> Option<String> {
        let sessions = self.lock();
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == SESSION_COOKIE)
            .find_map(|(_, session_id)| sessions.get(session_id).cloned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // reads), so a poisoned lock is still usable.
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn cookie_headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_started_session_is_found_from_its_cookie_among_others() {
        let sessions = Sessions::default();
        let set_cookie = sessions.start("ada").unwrap();
        assert!(set_cookie.ends_with("; HttpOnly; SameSite=Lax; Path=/"));
        let pair = set_cookie.split(';').next().unwrap();
        let session_id = pair.strip_prefix("your_app_session=").unwrap();
        assert_eq!(session_id.len(), 64);
        let headers = cookie_headers(&format!("other=1; {pair}; more=2"));
        assert_eq!(sessions.persona_of(&headers).as_deref(), Some("ada"));
    }

    #[test]
    fn an_unknown_or_missing_session_is_nobody() {
        let sessions = Sessions::default();
        sessions.start("ada").unwrap();
        assert_eq!(
            sessions.persona_of(&cookie_headers("your_app_session=forged")),
            None
        );
        assert_eq!(sessions.persona_of(&HeaderMap::new()), None);
    }

    #[test]
    fn two_sessions_get_different_ids() {
        let sessions = Sessions::default();
        assert_ne!(
            sessions.start("ada").unwrap(),
            sessions.start("ada").unwrap()
        );
    }
}
