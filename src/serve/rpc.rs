//! The JSON-RPC entry point every transport uses: one message in (a request or a batch), its
//! whole response text out, later, to a `reply` callback.
//!
//! Every transport calls [`Message::parse`] then [`dispatch`] once per message: the line
//! transports (stdio, `unix:`, `tcp:`) per line, taking back-pressure places in between; the
//! HTTP front per `/rpc` body and per WebSocket text frame. Nothing here waits on a policy:
//! calls go to the host's workers with [`Host::call_async`], and `reply` runs on whichever
//! thread completes the last answer, with `None` when nothing is to be sent back (a
//! notification, or a batch of them). Only `auth_token` and `auth_clear` run an SQLite
//! statement on the caller's thread ([`Message::waits_on_the_store`]).
//!
//! Trust belongs to the transport, not the message: control methods (`reload`) are refused
//! with [`ErrorCode::NotTrusted`] unless the caller says the connection is trusted (stdio and
//! Unix sockets; not TCP or HTTP, which anyone who reaches the port can use).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::protocol::{self, ErrorCode, Incoming, Method, Refusal, Request, RpcError};
use super::Shared;
use crate::decision::{Callback, Outcome};
use crate::decision_log::DecisionRecorder;
use crate::host::{Authenticated, Host};
use crate::lock::lock;

/// What every connection of a server shares, whatever its transport.
#[derive(Clone)]
pub(crate) struct Context {
    pub host: Host,
    pub shared: Arc<Shared>,
    pub log: Option<DecisionRecorder>,
    /// Answers a connection may have pending (dispatched, not yet written).
    pub max_pending: usize,
}

impl Context {
    /// [`Host::call_async`], with the decision recorded in the decision log (if any) before
    /// `done` sees it: every way into the service asks its callbacks through here.
    pub fn decide(
        &self,
        callback: Callback,
        args: [String; 2],
        done: impl FnOnce(Outcome) + Send + 'static,
    ) {
        let log = self
            .log
            .as_ref()
            .map(|log| (log.clone(), log.digest(&args[..callback.arity()])));
        self.host.call_async(callback, args, move |outcome| {
            if let Some((log, digest)) = log {
                log.record(callback, &digest, &outcome);
            }
            done(outcome);
        });
    }

    /// `auth`: [`Context::decide`] `on_user_login` (so the decision log records it), then a
    /// session on `user_id`, as [`Host::auth_async`] would.
    pub fn authenticate(
        &self,
        args: [String; 2],
        done: impl FnOnce(Authenticated) + Send + 'static,
    ) {
        let host = self.host.clone();
        self.decide(Callback::UserLogin, args, move |outcome| {
            done(host.session_for(outcome))
        });
    }
}

/// One parsed message, ready to [`dispatch`].
pub(crate) struct Message(Incoming);

impl Message {
    /// Parses one message (a line without its newline, an HTTP body, a frame).
    pub fn parse(text: &[u8]) -> Message {
        Message(protocol::parse_message(text))
    }

    /// The answer to a line longer than [`protocol::MAX_LINE`], which is never parsed.
    pub fn line_too_long() -> Message {
        Message(Incoming::Single(Err(Box::new(Refusal::line_too_long()))))
    }

    /// Whether answering it waits on the session store (`auth_token`, `auth_clear`: an
    /// SQLite statement on the caller's thread), so that an async transport hands it to a
    /// thread that may block.
    #[cfg(feature = "http")]
    pub fn waits_on_the_store(&self) -> bool {
        let waits = |member: &Result<Request, Box<Refusal>>| {
            matches!(
                member,
                Ok(Request {
                    method: Method::Session(
                        protocol::SessionMethod::Token { .. }
                            | protocol::SessionMethod::Clear { .. }
                    ),
                    ..
                })
            )
        };
        match &self.0 {
            Incoming::Single(member) => waits(member),
            Incoming::Batch(members) => members.iter().any(waits),
        }
    }

    /// How many calls the message makes: what it costs the host, and so how many of a
    /// connection's pending places it takes (a batch one per member, notifications too).
    pub fn calls(&self) -> usize {
        match &self.0 {
            Incoming::Single(_) => 1,
            Incoming::Batch(members) => members.len(),
        }
    }
}

/// Answers one parsed message: `reply` gets the whole response text (without a newline) once
/// every call in it is answered, or `None` when nothing is to be sent back.
pub(crate) fn dispatch(
    context: &Context,
    message: Message,
    trusted: bool,
    reply: impl FnOnce(Option<String>) + Send + 'static,
) {
    match message.0 {
        Incoming::Single(parsed) => dispatch_one(context, parsed, trusted, reply),
        Incoming::Batch(members) => {
            let batch = Arc::new(Batch {
                answers: Mutex::new(vec![None; members.len()]),
                remaining: AtomicUsize::new(members.len()),
                reply: Mutex::new(Some(reply)),
            });
            for (index, parsed) in members.into_iter().enumerate() {
                let batch = batch.clone();
                dispatch_one(context, parsed, trusted, move |answer| {
                    batch.answered(index, answer);
                });
            }
        }
    }
}

/// A batch being answered: its members' answers, in the members' order, and the reply to
/// send once the last one is in.
struct Batch<F> {
    answers: Mutex<Vec<Option<String>>>,
    remaining: AtomicUsize,
    reply: Mutex<Option<F>>,
}

impl<F: FnOnce(Option<String>)> Batch<F> {
    fn answered(&self, index: usize, answer: Option<String>) {
        if let Some(slot) = lock(&self.answers).get_mut(index) {
            *slot = answer;
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let answers = std::mem::take(&mut *lock(&self.answers));
        let Some(reply) = lock(&self.reply).take() else {
            return;
        };
        // The specification: an array of the responses; nothing at all when every member
        // was a notification.
        let mut text = String::new();
        for answer in answers.iter().flatten() {
            text.push(if text.is_empty() { '[' } else { ',' });
            text.push_str(answer);
        }
        if text.is_empty() {
            reply(None);
        } else {
            text.push(']');
            reply(Some(text));
        }
    }
}

/// Answers one request (or refuses it); `reply` gets its response text without the newline.
fn dispatch_one(
    context: &Context,
    parsed: Result<Request, Box<Refusal>>,
    trusted: bool,
    reply: impl FnOnce(Option<String>) + Send + 'static,
) {
    let request = match parsed {
        Ok(request) => request,
        Err(refusal) => {
            let Refusal { reply_to, error } = *refusal;
            return reply(reply_to.map(|id| unline(protocol::error_line(&id, &error))));
        }
    };
    let Request { id, method } = request;
    match method {
        Method::Call { callback, args } => {
            context.decide(callback, args, move |outcome| {
                reply(id.map(|id| unline(protocol::outcome_line(&id, &outcome))));
            });
        }
        Method::Status => {
            let status = context.host.status().to_json();
            reply(id.map(|id| unline(protocol::result_line(&id, &status))));
        }
        Method::Session(method) => dispatch_session(context, id, method, reply),
        Method::Reload if !trusted => {
            let error = RpcError::new(
                ErrorCode::NotTrusted,
                "reload is a control method, refused on tcp:/http: listeners; use a unix: \
                 listener or SIGHUP",
            );
            reply(id.map(|id| unline(protocol::error_line(&id, &error))));
        }
        Method::Reload => {
            // Loading a set takes a while: do it off the caller's thread, so that the
            // connection's other requests go on meanwhile.
            let host = context.host.clone();
            let reply = Arc::new(Mutex::new(Some(reply)));
            let reply_in_thread = reply.clone();
            let id_in_thread = id.clone();
            let spawned = std::thread::Builder::new()
                .name("authhost-reload".into())
                .spawn(move || {
                    let answer = reload(&host, id_in_thread);
                    if let Some(reply) = lock(&reply_in_thread).take() {
                        reply(answer);
                    }
                });
            if spawned.is_err() {
                if let Some(reply) = lock(&reply).take() {
                    reply(reload(&context.host, id));
                }
            }
        }
    }
}

/// `auth` runs on a worker like `user_login`; `auth_token` and `auth_clear` are one
/// indexed statement each, answered here without a worker.
fn dispatch_session(
    context: &Context,
    id: Option<Value>,
    method: protocol::SessionMethod,
    reply: impl FnOnce(Option<String>) + Send + 'static,
) {
    use protocol::SessionMethod;
    match method {
        SessionMethod::Auth { args } => {
            context.authenticate(args, move |answer| {
                reply(id.map(|id| unline(protocol::result_line(&id, &answer.to_json()))));
            });
        }
        SessionMethod::Token { token } => {
            let checked = crate::host::token_json(&context.host.auth_token(&token));
            reply(id.map(|id| unline(protocol::result_line(&id, &checked))));
        }
        SessionMethod::Clear { token } => {
            let answer = clear_json(context.host.auth_clear(&token).map_err(|e| e.to_string()));
            reply(id.map(|id| unline(protocol::result_line(&id, &answer))));
        }
    }
}

/// The answer to `auth_clear` (the method and `POST /v1/auth_clear`): `{"cleared": …}`, and
/// the error of a failed clear, which says so: the session may still be live.
pub(crate) fn clear_json(cleared: Result<bool, String>) -> Value {
    match cleared {
        Ok(cleared) => serde_json::json!({ "cleared": cleared }),
        Err(error) => serde_json::json!({ "cleared": false, "error": error }),
    }
}

fn reload(host: &Host, id: Option<Value>) -> Option<String> {
    let answer = match host.reload() {
        Ok(status) => Ok(status.to_json()),
        Err(e) => Err(RpcError {
            code: ErrorCode::ReloadFailed,
            message: format!("reload failed, the running plugin set stays: {e}"),
            data: Some(host.status().to_json()),
        }),
    };
    let id = id?;
    Some(unline(match answer {
        Ok(status) => protocol::result_line(&id, &status),
        Err(error) => protocol::error_line(&id, &error),
    }))
}

/// A response line without its newline: a batch joins them, other transports frame them.
pub(crate) fn unline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
    }
    line
}
