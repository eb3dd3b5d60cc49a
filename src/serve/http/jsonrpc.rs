//! JSON-RPC over HTTP: `POST /rpc` (one message per request body) and `GET /ws` (a
//! WebSocket, one message per text frame, sysadm's transport).
//!
//! Both answer exactly as the line listeners do: the same methods, params, batches and
//! errors, through the service's one entry point ([`crate::serve::rpc`]). HTTP is untrusted,
//! so control methods (`reload`) are refused (−32003).
//!
//! A WebSocket has the line listeners' limits: a text frame over 1 MiB is answered −32600
//! and the connection goes on (a message over [`MAX_WS_MESSAGE`] ends it); a binary frame is
//! answered −32600; at most `max_pending` messages are answered at once, and while that many
//! are pending the connection is not read. A WebSocket that receives nothing and has nothing
//! pending for the idle timeout ([`ServeOptions::ws_idle_timeout`](crate::serve::ServeOptions),
//! 300 s by default) is closed (close code 1000, reason "idle"). When the server stops, each
//! WebSocket stops reading, sends the answers still pending, and closes (1001).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{close_code, CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::routes::{body_of, refusal, Refused};
use super::Front;
use crate::serve::protocol::{self, ErrorCode, RpcError};
use crate::serve::rpc::{self, Message};

/// The largest WebSocket message read at all; one over 1 MiB but within this is answered
/// −32600, one over this closes the connection (the WebSocket library refuses it).
pub const MAX_WS_MESSAGE: usize = 16 << 20;

/// `POST /rpc`: 200 with the response (an object, or an array for a batch), or 204 when
/// nothing is to be sent back (notifications).
pub(super) async fn rpc(
    State(front): State<Arc<Front>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refused> {
    let body = body_of(body)?;
    let (sender, receiver) = oneshot::channel();
    handle(&front, Message::parse(&body), move |answer| {
        let _ = sender.send(answer);
    });
    Ok(match receiver.await {
        Ok(Some(text)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => refusal(StatusCode::INTERNAL_SERVER_ERROR, "the answer was lost"),
    })
}

/// Answers one JSON-RPC message from an untrusted transport through the service's one entry
/// point; `reply` gets the response text without a newline, or `None`. A message that checks
/// or clears session tokens (an SQLite statement, which may wait on a lock) is answered on
/// the blocking pool, never on a tokio thread.
fn handle(front: &Front, message: Message, reply: impl FnOnce(Option<String>) + Send + 'static) {
    if message.waits_on_the_store() {
        let context = front.context.clone();
        tokio::task::spawn_blocking(move || rpc::dispatch(&context, message, false, reply));
    } else {
        rpc::dispatch(&front.context, message, false, reply);
    }
}

/// `GET /ws`: upgrades to a WebSocket served by [`session`].
pub(super) async fn upgrade(
    State(front): State<Arc<Front>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_failed_upgrade(|e| log::debug!("WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| session(front, socket))
}

/// The text of an error response to `id` null.
fn error_text(error: &RpcError) -> String {
    rpc::unline(protocol::error_line(&Value::Null, error))
}

/// Serves one WebSocket until the client closes it, it idles out, or the server stops.
async fn session(front: Arc<Front>, mut socket: WebSocket) {
    let _open = front.open.enter();
    let limit = front.context.max_pending.max(1);
    let idle = front.ws_idle;
    let (answers, mut to_send) = mpsc::unbounded_channel::<Option<String>>();
    let mut stopping = front.stopping.clone();
    let mut pending = 0usize;
    let mut reading = !*stopping.borrow();
    let mut closing = (close_code::AWAY, "the server is stopping");
    let mut broken = false;
    let mut idle_until = Instant::now() + idle;
    while reading || pending > 0 {
        tokio::select! {
            Some(answer) = to_send.recv() => {
                pending -= 1;
                idle_until = Instant::now() + idle;
                if let (Some(text), false) = (answer, broken) {
                    if socket.send(Frame::Text(text.into())).await.is_err() {
                        // The client is gone: drop its answers, read no more.
                        broken = true;
                        reading = false;
                    }
                }
            }
            message = socket.recv(), if reading && pending < limit => {
                idle_until = Instant::now() + idle;
                match message {
                    Some(Ok(Frame::Text(text))) => {
                        pending += 1;
                        let answers = answers.clone();
                        let message = if text.len() > protocol::MAX_LINE {
                            Message::line_too_long()
                        } else {
                            Message::parse(text.as_bytes())
                        };
                        handle(&front, message, move |answer| {
                            let _ = answers.send(answer);
                        });
                    }
                    Some(Ok(Frame::Binary(_))) => {
                        pending += 1;
                        let error = RpcError::new(
                            ErrorCode::InvalidRequest,
                            "binary frames are not JSON-RPC messages; send each message as a text frame",
                        );
                        let _ = answers.send(Some(error_text(&error)));
                    }
                    // The library answers pings itself.
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                    Some(Ok(Frame::Close(_))) | None => {
                        reading = false;
                        closing = (close_code::NORMAL, "");
                    }
                    Some(Err(e)) => {
                        log::debug!("WebSocket read failed: {e}");
                        reading = false;
                        closing = (close_code::SIZE, "message too large or malformed");
                    }
                }
            }
            _ = tokio::time::sleep_until(idle_until), if reading && pending == 0 => {
                reading = false;
                closing = (close_code::NORMAL, "idle");
            }
            () = super::until_stopping(&mut stopping), if reading => {
                reading = false;
            }
        }
    }
    if !broken {
        let (code, reason) = closing;
        let _ = socket
            .send(Frame::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
}
