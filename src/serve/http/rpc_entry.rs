//! Stand-in for the shared JSON-RPC entry point (`serve::rpc`, from the `exposure` branch):
//! one request per message, `reload` refused. Replaced by `rpc::handle` at the merge.

use serde_json::Value;

use super::Front;
use crate::serve::protocol::{self, ErrorCode, Method, RpcError, SessionMethod};

/// Answers one message; `reply` gets the response text (no newline) or `None`.
pub(super) fn handle(
    front: &Front,
    text: &[u8],
    reply: impl FnOnce(Option<String>) + Send + 'static,
) {
    let unline = |line: String| line.trim_end().to_string();
    let request = match protocol::parse_request(text) {
        Ok(request) => request,
        Err(refusal) => {
            return reply(
                refusal
                    .reply_to
                    .map(|id| unline(protocol::error_line(&id, &refusal.error))),
            )
        }
    };
    let id = request.id;
    let host = &front.context.host;
    match request.method {
        Method::Call { callback, args } => {
            host.call_async(callback, args, move |outcome| {
                reply(id.map(|id| unline(protocol::outcome_line(&id, &outcome))))
            });
        }
        Method::Status => {
            reply(id.map(|id| unline(protocol::result_line(&id, &host.status().to_json()))))
        }
        Method::Reload => {
            let error = RpcError::new(ErrorCode::InvalidRequest, "reload is refused over HTTP");
            reply(id.map(|id| unline(protocol::error_line(&id, &error))))
        }
        Method::Session(SessionMethod::Auth { args }) => host.auth_async(args, move |answer| {
            reply(id.map(|id| unline(protocol::result_line(&id, &answer.to_json()))))
        }),
        Method::Session(SessionMethod::Token { token }) => {
            let checked = host.auth_token(&token);
            reply(id.map(|id| {
                unline(protocol::result_line(
                    &id,
                    &crate::host::token_json(&checked),
                ))
            }))
        }
        Method::Session(SessionMethod::Clear { token }) => {
            let cleared = host.auth_clear(&token).unwrap_or(false);
            let answer: Value = serde_json::json!({ "cleared": cleared });
            reply(id.map(|id| unline(protocol::result_line(&id, &answer))))
        }
    }
}
