//! The routes of the HTTP front and the handlers of the JSON ones: `/v1/*` and the health,
//! readiness and status endpoints. `/auth*` are in [`super::auth`], `/metrics` in
//! [`super::metrics`], `/` in [`super::page`], `/rpc` and `/ws` in [`super::jsonrpc`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use super::{auth, jsonrpc, metrics, page, Front, MAX_BODY};
use crate::decision::Callback;

/// The client's address, put into every request's extensions by the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub SocketAddr);

/// Every route of the front (contract §10); anything else is 404, a wrong method 405.
pub(super) fn router(front: Arc<Front>) -> Router {
    Router::new()
        .route("/", get(page::show))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics::show))
        .route(
            "/v1/user_signup",
            post(|state, body| call(state, Callback::UserSignup, body)),
        )
        .route(
            "/v1/user_login",
            post(|state, body| call(state, Callback::UserLogin, body)),
        )
        .route(
            "/v1/new_node",
            post(|state, body| call(state, Callback::NewNode, body)),
        )
        .route("/v1/auth", post(session_auth))
        .route("/v1/auth_token", post(session_token))
        .route("/v1/auth_clear", post(session_clear))
        .route("/rpc", post(jsonrpc::rpc))
        .route(
            "/auth",
            get(auth::flussonic_query).post(auth::flussonic_form),
        )
        .route("/auth/request", get(auth::forward))
        .route("/ws", get(jsonrpc::upgrade))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(front)
}

/// A JSON response.
pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A refusal: `status` with `{"error": message}`.
pub(super) fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// A request refused before it reached the host: answered with its status and
/// `{"error": message}`.
#[derive(Debug)]
pub(super) struct Refused {
    status: StatusCode,
    message: String,
}

impl Refused {
    /// A 400: the request is not what the endpoint takes.
    pub fn bad_request(message: impl Into<String>) -> Refused {
        Refused {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refusal(self.status, self.message)
    }
}

/// The request body, or the refusal to answer with: 413 past [`MAX_BODY`], 400 when it
/// could not be read.
pub(super) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refused> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than {MAX_BODY} bytes")
        } else {
            format!(
                "the request body could not be read: {}",
                rejection.body_text()
            )
        };
        Refused { status, message }
    })
}

/// A body that must be a JSON object (the named params of contract §8); 400 otherwise.
pub(super) fn json_object(body: Result<Bytes, BytesRejection>) -> Result<Value, Refused> {
    let body = body_of(body)?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(object @ Value::Object(_)) => Ok(object),
        Ok(_) => Err(Refused::bad_request(
            "the body must be a JSON object of named params",
        )),
        Err(e) => Err(Refused::bad_request(format!("the body is not JSON: {e}"))),
    }
}

/// A callback's arguments from a JSON object body of its named params; 400 otherwise.
fn callback_args(
    callback: Callback,
    body: Result<Bytes, BytesRejection>,
) -> Result<[String; 2], Refused> {
    let params = json_object(body)?;
    crate::args::callback_args(callback, Some(&params)).map_err(Refused::bad_request)
}

/// `POST /v1/user_signup|user_login|new_node`: 200 with the decision, whatever it is.
async fn call(
    State(front): State<Arc<Front>>,
    callback: Callback,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refused> {
    let args = callback_args(callback, body)?;
    let outcome = front.decide(callback, args).await;
    Ok(json_response(StatusCode::OK, &outcome.to_json()))
}

/// `POST /v1/auth` (`login_info`, `node_info`): as the `auth` method answers.
async fn session_auth(
    State(front): State<Arc<Front>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refused> {
    let args = callback_args(Callback::UserLogin, body)?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    front.context.authenticate(args, move |answer| {
        let _ = sender.send(answer.to_json());
    });
    Ok(match receiver.await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(_) => refusal(StatusCode::INTERNAL_SERVER_ERROR, "the answer was lost"),
    })
}

/// The `token` of a `/v1/auth_token` or `/v1/auth_clear` body, or the 400 to answer with.
fn token_of(method: &str, body: Result<Bytes, BytesRejection>) -> Result<String, Refused> {
    let params = json_object(body)?;
    crate::serve::protocol::token_param(method, Some(&params))
        .map_err(|error| Refused::bad_request(error.message))
}

/// `POST /v1/auth_token` (`token`): as the `auth_token` method answers.
async fn session_token(
    State(front): State<Arc<Front>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refused> {
    let token = token_of("auth_token", body)?;
    let checked = check_token(&front, token).await;
    Ok(json_response(
        StatusCode::OK,
        &crate::host::token_json(&checked),
    ))
}

/// Checks a session token on the blocking pool (it is an SQLite statement).
pub(super) async fn check_token(
    front: &Front,
    token: String,
) -> Result<crate::sessions::Live, crate::host::TokenRefused> {
    let host = front.context.host.clone();
    tokio::task::spawn_blocking(move || host.auth_token(&token))
        .await
        .unwrap_or_else(|e| {
            Err(crate::host::TokenRefused::Error(format!(
                "the token check failed: {e}"
            )))
        })
}

/// `POST /v1/auth_clear` (`token`): as the `auth_clear` method answers.
async fn session_clear(
    State(front): State<Arc<Front>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refused> {
    let token = token_of("auth_clear", body)?;
    let host = front.context.host.clone();
    let cleared = tokio::task::spawn_blocking(move || host.auth_clear(&token)).await;
    let answer = crate::serve::rpc::clear_json(match cleared {
        Ok(cleared) => cleared.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the clear failed: {e}")),
    });
    Ok(json_response(StatusCode::OK, &answer))
}

/// `GET /healthz`: 200 while the process serves.
async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while a plugin set is live and the host takes requests; 503 once it
/// stops (so that a load balancer sends no more).
async fn readyz(State(front): State<Arc<Front>>) -> Response {
    let status = front.context.host.status();
    let ready = status.ready && !*front.stopping.borrow() && !front.context.shared.is_stopping();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = Map::new();
    body.insert("ready".into(), ready.into());
    body.insert("generation".into(), status.generation.into());
    json_response(code, &Value::Object(body))
}

/// `GET /status`: the status JSON of the `status` method.
async fn status(State(front): State<Arc<Front>>) -> Response {
    json_response(StatusCode::OK, &front.context.host.status().to_json())
}

// The refusals read the request body (up to the limit) before answering: a body left unread
// ends the keep-alive connection, which a client reusing it would find closed.
async fn not_found(uri: Uri, _body: Result<Bytes, BytesRejection>) -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", uri.path()),
    )
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: Uri,
    _body: Result<Bytes, BytesRejection>,
) -> Response {
    refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
