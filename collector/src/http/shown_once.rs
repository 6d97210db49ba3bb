//! Secrets the dashboard shows exactly once after a form (a new enrollment token, a new user's
//! password), with POST-redirect-GET: the POST handler stashes the secret here under a random id
//! and redirects to `GET <page>?shown=<id>`; that GET takes the secret out (so a reload, the back
//! button or another tab shows the page without it) and renders it. A stashed secret is bound to the
//! session that made it and to its page, lives at most [`TTL_MS`], and is kept in memory only
//! (never logged, never in the database; a restart forgets it).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::auth;

/// How long a stashed secret waits for the GET that shows it, milliseconds.
pub(super) const TTL_MS: i64 = 5 * 60_000;
/// Most secrets waiting at once; past it the one closest to expiry is dropped.
const MAX_ENTRIES: usize = 1024;

/// Which page a secret belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `/tokens`: (group, token text).
    EnrollmentToken,
    /// `/users`: (user name, password).
    UserPassword,
}

struct Entry {
    /// The SHA-256 of the session cookie that made the secret.
    session: String,
    kind: Kind,
    shown: (String, String),
    expires_at_ms: i64,
}

/// The stash (one per router; shared by its handlers).
#[derive(Default)]
pub(super) struct ShownOnce {
    entries: Mutex<HashMap<String, Entry>>,
}

impl fmt::Debug for ShownOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never the secrets
        let waiting = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("ShownOnce")
            .field("waiting", &waiting)
            .finish()
    }
}

impl ShownOnce {
    /// Stashes `shown` for `session` (the session cookie's SHA-256) on page `kind`; returns the id
    /// the redirect carries.
    pub(super) fn put(
        &self,
        session: &str,
        kind: Kind,
        shown: (String, String),
        now_ms: i64,
    ) -> String {
        let id = auth::random_token();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, entry| entry.expires_at_ms > now_ms);
        if entries.len() >= MAX_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.expires_at_ms)
                .map(|(id, _)| id.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            id.clone(),
            Entry {
                session: session.to_owned(),
                kind,
                shown,
                expires_at_ms: now_ms.saturating_add(TTL_MS),
            },
        );
        id
    }

    /// Takes the secret stashed under `id` if the same session asks for it on the same page before
    /// it expires; it is gone afterwards. Anything else gets `None` and leaves the stash as it was
    /// (except that expired secrets are dropped).
    pub(super) fn take(
        &self,
        id: &str,
        session: &str,
        kind: Kind,
        now_ms: i64,
    ) -> Option<(String, String)> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, entry| entry.expires_at_ms > now_ms);
        let entry = entries.get(id)?;
        if entry.kind != kind || !auth::is_same_secret(&entry.session, session) {
            return None;
        }
        entries.remove(id).map(|entry| entry.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown() -> (String, String) {
        ("group".into(), "secret".into())
    }

    #[test]
    fn a_secret_is_taken_once_by_its_session_on_its_page_before_it_expires() {
        let stash = ShownOnce::default();
        let id = stash.put("s1", Kind::EnrollmentToken, shown(), 1_000);
        assert_eq!(stash.take(&id, "s2", Kind::EnrollmentToken, 1_001), None);
        assert_eq!(stash.take(&id, "s1", Kind::UserPassword, 1_001), None);
        assert_eq!(
            stash.take("other", "s1", Kind::EnrollmentToken, 1_001),
            None
        );
        assert_eq!(
            stash.take(&id, "s1", Kind::EnrollmentToken, 1_002),
            Some(shown())
        );
        assert_eq!(stash.take(&id, "s1", Kind::EnrollmentToken, 1_003), None);

        let id = stash.put("s1", Kind::UserPassword, shown(), 1_000);
        assert_eq!(
            stash.take(&id, "s1", Kind::UserPassword, 1_000 + TTL_MS),
            None
        );
    }

    #[test]
    fn the_stash_is_bounded() {
        let stash = ShownOnce::default();
        let first = stash.put("s", Kind::UserPassword, shown(), 0);
        for at in 1..=i64::try_from(MAX_ENTRIES).unwrap() {
            stash.put("s", Kind::UserPassword, shown(), at);
        }
        assert_eq!(stash.entries.lock().unwrap().len(), MAX_ENTRIES);
        assert_eq!(stash.take(&first, "s", Kind::UserPassword, 2_000), None);
    }
}
