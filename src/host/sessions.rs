//! The host's session methods (`auth`, `auth_token`, `auth_clear`) and the background purge
//! of expired sessions. The store itself is [`crate::sessions`].

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};

use super::Host;
use crate::decision::{Callback, Decision, DecisionError, ErrorKind, Outcome, UserDecision};
use crate::sessions::{Live, Opened, Store};

/// How often expired rows are purged: often enough that the tables stay small, rarely
/// enough that the purge costs nothing next to the requests.
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// The answer to [`Host::auth`]: the login decision and, on `user_id`, a new session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The decision of `on_user_login` (an error if the session could not be opened).
    pub outcome: Outcome,
    /// The session opened for a `user_id` decision; `None` for any other.
    pub session: Option<Opened>,
}

impl Authenticated {
    /// The result as JSON: the decision of contract §3, plus `token` and `expires_in` when
    /// a session was opened.
    pub fn to_json(&self) -> Value {
        let mut json = self.outcome.to_json();
        if let (Some(session), Value::Object(object)) = (&self.session, &mut json) {
            object.insert("token".into(), session.token.clone().into());
            object.insert("expires_in".into(), session.expires_in.into());
        }
        json
    }
}

/// Why [`Host::auth_token`] refused a token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRefused {
    /// Unknown, expired or cleared: `not_authorized`.
    NotAuthorized,
    /// The store failed (a locked or unreadable database): `error`.
    Error(String),
}

/// The answer to [`Host::auth_token`] as the JSON of issue 15.
pub fn token_json(checked: &Result<Live, TokenRefused>) -> Value {
    match checked {
        Ok(live) => json!({
            "decision": "user_id", "code": live.user_id, "expires_in": live.expires_in,
        }),
        Err(TokenRefused::NotAuthorized) => json!({
            "decision": "not_authorized", "code": -1,
            "error": "the token is unknown, expired or cleared",
        }),
        Err(TokenRefused::Error(message)) => json!({
            "decision": "error", "code": -3, "error": message,
        }),
    }
}

impl Host {
    /// Asks `on_user_login(login_info, node_info)`; on `user_id`, opens a session for that
    /// user. A session that cannot be opened turns the decision into an error: no token,
    /// no entry.
    pub fn auth(&self, login_info: impl AsRef<str>, node_info: impl AsRef<str>) -> Authenticated {
        let outcome = self.user_login(login_info, node_info);
        self.session_for(outcome)
    }

    /// [`Host::auth`] without waiting: `done` runs with the answer on a worker thread (see
    /// [`Host::call_async`]).
    pub fn auth_async(&self, args: [String; 2], done: impl FnOnce(Authenticated) + Send + 'static) {
        let store = self.sessions().clone();
        let timeout = self.config().timeout;
        self.call_async(Callback::UserLogin, args, move |outcome| {
            done(open_session(&store, outcome, Instant::now() + timeout))
        });
    }

    /// The session of an `on_user_login` outcome the caller asked for itself (to record it
    /// on the way, say): as [`Host::auth`] after its login, a session on `user_id`.
    pub(crate) fn session_for(&self, outcome: Outcome) -> Authenticated {
        open_session(
            self.sessions(),
            outcome,
            Instant::now() + self.config().timeout,
        )
    }

    /// The user of a live session `token`, whose inactivity timer starts again.
    ///
    /// # Failure
    ///
    /// [`TokenRefused::NotAuthorized`] for a token unknown, expired or cleared;
    /// [`TokenRefused::Error`] when the store fails.
    pub fn auth_token(&self, token: &str) -> Result<Live, TokenRefused> {
        let deadline = Instant::now() + self.config().timeout;
        match self.sessions().check(token, deadline) {
            Ok(Some(live)) => Ok(live),
            Ok(None) => Err(TokenRefused::NotAuthorized),
            Err(e) => Err(TokenRefused::Error(e.to_string())),
        }
    }

    /// Forgets the session `token`; whether there was a live one.
    ///
    /// # Failure
    ///
    /// The store failed; the session may still be live.
    pub fn auth_clear(&self, token: &str) -> crate::sessions::Result<bool> {
        let deadline = Instant::now() + self.config().timeout;
        self.sessions().close(token, deadline)
    }
}

fn open_session(store: &Store, outcome: Outcome, deadline: Instant) -> Authenticated {
    let Decision::User(UserDecision::UserId(user_id)) = outcome.decision else {
        return Authenticated {
            outcome,
            session: None,
        };
    };
    match store.open(user_id, None, deadline) {
        Ok(session) => Authenticated {
            outcome,
            session: Some(session),
        },
        Err(e) => Authenticated {
            outcome: Outcome {
                decision: Decision::User(UserDecision::Error(DecisionError::new(
                    ErrorKind::Unavailable,
                    format!("no session could be opened: {e}"),
                ))),
                ..outcome
            },
            session: None,
        },
    }
}

/// Stops the purge thread when dropped (its channel disconnects).
pub(crate) struct PurgeGuard {
    _stop: Sender<()>,
}

/// Starts the thread that deletes expired sessions, limit hits and state every
/// [`PURGE_EVERY`], until the guard is dropped.
pub(crate) fn start_purge(store: Store) -> PurgeGuard {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let spawned = std::thread::Builder::new()
        .name("authhost-purge".into())
        .spawn(move || purge_until(store, stopped));
    if let Err(e) = spawned {
        // Expired rows are still refused on use; they only stay on disk longer.
        log::error!("the session purge thread did not start: {e}");
    }
    PurgeGuard { _stop: stop }
}

fn purge_until(store: Store, stopped: Receiver<()>) {
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(PURGE_EVERY)
    {
        if let Err(e) = store.purge(Instant::now() + Duration::from_secs(5)) {
            log::warn!("purging expired sessions failed (retried later): {e}");
        }
    }
}
