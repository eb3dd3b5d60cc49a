//! The two auth-backend shapes of the HTTP front, both asking `on_user_login`:
//!
//! - `GET /auth?login=…&password=…` and `POST /auth` with a form body: Flussonic's external
//!   authentication backend. `login_info` is a JSON object of the parameters, `node_info`
//!   describes the client. `user_id`/`new_user` → 200 with `X-Authhost-User-Id`;
//!   `not_authorized` → 403; `error` → 503, so that a caller with a fallback uses it.
//! - `GET /auth/request`: nginx `auth_request` and forward-auth proxies. `Authorization:
//!   Basic` becomes `login_info` `{"login":…,"password":…}`; `Authorization: Bearer TOKEN`
//!   is checked as a session token. Allowed → 200 with `X-Authhost-User-Id`; refused or no
//!   credentials → 401 with `WWW-Authenticate: Basic realm="authhost"`; `error` → 500, which
//!   nginx turns into a refusal: fail closed.
//!
//! `/auth` answers with the decision JSON (contract §3) as its body, or a JSON error for bad
//! input. `/auth/request` answers with headers only (see [`headers_only`]): the decision in
//! `X-Authhost-Decision`, and what went wrong, if anything, in `X-Authhost-Error`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::routes::{body_of, check_token, json_response, refusal, Peer, Refused};
use super::Front;
use crate::decision::{Callback, Outcome, UserDecision};
use crate::host::TokenRefused;

/// The header that carries the user id of an allowed request.
pub const USER_ID_HEADER: &str = "x-authhost-user-id";

/// The header that carries the decision of an `/auth/request` answer.
pub const DECISION_HEADER: &str = "x-authhost-decision";

/// The header that carries why an `/auth/request` answer refuses or failed.
pub const ERROR_HEADER: &str = "x-authhost-error";

/// The longest `X-Authhost-Error` value, in bytes: a policy's error can be long, and proxies
/// limit the size of the headers they read (nginx: 4 KiB to 8 KiB for all of them).
const MAX_ERROR_HEADER: usize = 1024;

/// The challenge of a 401 from `/auth/request`.
const CHALLENGE: &str = r#"Basic realm="authhost""#;

/// Request headers that `/auth` passes in `node_info`, under these keys.
const FLUSSONIC_HEADERS: [(&str, &str); 3] = [
    ("forwarded_for", "x-forwarded-for"),
    ("host", "host"),
    ("user_agent", "user-agent"),
];

/// Request headers that `/auth/request` passes in `node_info`, under these keys.
const FORWARD_HEADERS: [(&str, &str); 4] = [
    ("original_uri", "x-original-uri"),
    ("original_method", "x-original-method"),
    ("forwarded_for", "x-forwarded-for"),
    ("real_ip", "x-real-ip"),
];

/// `GET /auth`: the query's parameters are `login_info`.
pub(super) async fn flussonic_query(
    State(front): State<Arc<Front>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    flussonic(&front, peer, &headers, query.unwrap_or_default().as_bytes()).await
}

/// `POST /auth`: the form body's parameters (`application/x-www-form-urlencoded`) are
/// `login_info`.
pub(super) async fn flussonic_form(
    State(front): State<Arc<Front>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refused> {
    let body = body_of(body)?;
    Ok(flussonic(&front, peer, &headers, &body).await)
}

async fn flussonic(front: &Front, peer: Peer, headers: &HeaderMap, params: &[u8]) -> Response {
    let login_info = match params_object(params) {
        Ok(object) => Value::Object(object).to_string(),
        Err(message) => return refusal(StatusCode::BAD_REQUEST, message),
    };
    let node_info = client_info(peer, headers, &FLUSSONIC_HEADERS);
    let outcome = front
        .decide(Callback::UserLogin, [login_info, node_info])
        .await;
    let status = match outcome.user() {
        Some(UserDecision::UserId(_) | UserDecision::NewUser) => StatusCode::OK,
        Some(UserDecision::NotAuthorized) => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    with_user_id(json_response(status, &outcome.to_json()), &outcome)
}

/// `GET /auth/request`: Basic credentials through `on_user_login`, or a Bearer session token.
pub(super) async fn forward(
    State(front): State<Arc<Front>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    match credentials(&headers) {
        Credentials::Basic { login, password } => {
            let mut login_info = Map::new();
            login_info.insert("login".into(), login.into());
            login_info.insert("password".into(), password.into());
            let node_info = client_info(peer, &headers, &FORWARD_HEADERS);
            let outcome = front
                .decide(
                    Callback::UserLogin,
                    [Value::Object(login_info).to_string(), node_info],
                )
                .await;
            let status = match outcome.user() {
                Some(UserDecision::UserId(_) | UserDecision::NewUser) => StatusCode::OK,
                Some(UserDecision::NotAuthorized) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            challenge(with_user_id(
                headers_only(status, &outcome.to_json()),
                &outcome,
            ))
        }
        Credentials::Bearer(token) => {
            let checked = check_token(&front, token).await;
            let answer = crate::host::token_json(&checked);
            match checked {
                Ok(live) => {
                    let mut response = headers_only(StatusCode::OK, &answer);
                    response
                        .headers_mut()
                        .insert(USER_ID_HEADER, HeaderValue::from(live.user_id));
                    response
                }
                Err(TokenRefused::NotAuthorized) => {
                    challenge(headers_only(StatusCode::UNAUTHORIZED, &answer))
                }
                Err(_) => headers_only(StatusCode::INTERNAL_SERVER_ERROR, &answer),
            }
        }
        Credentials::Missing(why) => challenge(headers_only(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "decision": "not_authorized", "error": why }),
        )),
    }
}

/// An `/auth/request` answer: `status` and the `decision` and `error` of `answer` as
/// headers, with no body. nginx's `auth_request` never reads the body of its subrequest's
/// answer, and closes its connection to the backend after any answer that has one, so with
/// a body every check would cost a new TCP connection (and TIME_WAIT sockets by the
/// thousand), whatever `keepalive` its `upstream` block sets.
fn headers_only(status: StatusCode, answer: &Value) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    if let Some(decision) = answer["decision"].as_str() {
        if let Ok(value) = HeaderValue::from_str(decision) {
            headers.insert(DECISION_HEADER, value);
        }
    }
    if let Some(error) = answer["error"].as_str() {
        if let Ok(value) = HeaderValue::from_bytes(header_text(error).as_bytes()) {
            headers.insert(ERROR_HEADER, value);
        }
    }
    response
}

/// `text` as a header value: control characters (a traceback's newlines) become spaces,
/// and it is cut to [`MAX_ERROR_HEADER`] bytes at a character's boundary, with `…`.
fn header_text(text: &str) -> String {
    let mut value: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if value.len() > MAX_ERROR_HEADER {
        let mut end = MAX_ERROR_HEADER - '…'.len_utf8();
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        value.push('…');
    }
    value
}

/// Adds the `WWW-Authenticate` challenge to a 401.
fn challenge(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    response
}

/// Adds `X-Authhost-User-Id` to the answer of an allowed login (`user_id`, or `0` for
/// `new_user`).
fn with_user_id(mut response: Response, outcome: &Outcome) -> Response {
    if let Some(decision @ (UserDecision::UserId(_) | UserDecision::NewUser)) = outcome.user() {
        response
            .headers_mut()
            .insert(USER_ID_HEADER, HeaderValue::from(decision.code()));
    }
    response.into_response()
}

/// What `Authorization` carried.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    Basic {
        login: String,
        password: String,
    },
    Bearer(String),
    /// None that can be used, and why.
    Missing(&'static str),
}

/// Reads `Authorization: Basic base64(login:password)` or `Authorization: Bearer TOKEN`
/// (schemes in any case, as RFC 9110 says).
fn credentials(headers: &HeaderMap) -> Credentials {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Credentials::Missing("send one Authorization header, Basic or Bearer");
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Missing("the Authorization header is not ASCII");
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Credentials::Missing("the Basic credentials are not base64");
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Credentials::Missing("the Basic credentials are not UTF-8");
        };
        match decoded.split_once(':') {
            Some((login, password)) => Credentials::Basic {
                login: login.to_string(),
                password: password.to_string(),
            },
            None => Credentials::Missing("the Basic credentials have no ':'"),
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials::Bearer(rest.to_string())
    } else {
        Credentials::Missing("the Authorization header is neither Basic nor Bearer")
    }
}

/// URL-encoded parameters as a JSON object of strings. A parameter given twice is refused:
/// which of the two a policy would see is not for the front to guess.
fn params_object(encoded: &[u8]) -> Result<Map<String, Value>, String> {
    let mut object = Map::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        if object
            .insert(name.to_string(), value.into_owned().into())
            .is_some()
        {
            return Err(format!("the parameter {name:?} is given more than once"));
        }
    }
    Ok(object)
}

/// `node_info` for a client: `{"address": its IP, and the given headers when present}`.
/// A header sent several times is joined with ", ", as HTTP lists are.
fn client_info(peer: Peer, headers: &HeaderMap, wanted: &[(&str, &str)]) -> String {
    let mut info = Map::new();
    info.insert("address".into(), peer.0.ip().to_string().into());
    for (key, name) in wanted {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if !values.is_empty() {
            info.insert((*key).into(), values.join(", ").into());
        }
    }
    Value::Object(info).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn an_error_header_has_no_control_characters_and_a_bounded_length() {
        let traceback = "Traceback:\n  File \"p.py\", line 3\nValueError: é";
        let answer = headers_only(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "decision": "error", "error": traceback }),
        );
        let value = answer.headers()[ERROR_HEADER].as_bytes();
        assert_eq!(
            std::str::from_utf8(value).unwrap(),
            "Traceback:   File \"p.py\", line 3 ValueError: é"
        );
        assert_eq!(answer.headers()[DECISION_HEADER], "error");
        // Cut at a character's boundary: 'é' is two bytes.
        let long = "é".repeat(MAX_ERROR_HEADER);
        let cut = header_text(&long);
        assert!(cut.len() <= MAX_ERROR_HEADER, "{}", cut.len());
        assert!(cut.ends_with("é…"), "{cut}");
    }

    #[test]
    fn basic_and_bearer_credentials_are_read_and_anything_else_is_missing() {
        // "alice:wonder:land" — the password may hold a colon.
        let basic = with_authorization(&["Basic YWxpY2U6d29uZGVyOmxhbmQ="]);
        assert_eq!(
            credentials(&basic),
            Credentials::Basic {
                login: "alice".into(),
                password: "wonder:land".into()
            }
        );
        let lower = with_authorization(&["basic YWxpY2U6d29uZGVyOmxhbmQ="]);
        assert!(matches!(credentials(&lower), Credentials::Basic { .. }));
        assert_eq!(
            credentials(&with_authorization(&["Bearer abc-_123"])),
            Credentials::Bearer("abc-_123".into())
        );
        for bad in [
            &[][..],
            &["Basic !!!"],
            &["Basic YWxpY2U="], // "alice", no colon
            &["Bearer"],
            &["Digest x"],
            &["Basic YWxpY2U6eA==", "Basic YWxpY2U6eA=="],
        ] {
            assert!(
                matches!(
                    credentials(&with_authorization(bad)),
                    Credentials::Missing(_)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parameters_become_an_object_and_a_repeated_one_is_refused() {
        let object = params_object(b"login=user0&password=let%20me+in&empty=").unwrap();
        assert_eq!(
            Value::Object(object).to_string(),
            r#"{"login":"user0","password":"let me in","empty":""}"#
        );
        assert!(params_object(b"login=a&login=b")
            .unwrap_err()
            .contains("login"));
        assert_eq!(params_object(b"").unwrap().len(), 0);
    }

    #[test]
    fn node_info_has_the_address_and_the_headers_present() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        headers.append("user-agent", HeaderValue::from_static("curl/8"));
        let peer = Peer("127.0.0.1:5000".parse().unwrap());
        let info: Value =
            serde_json::from_str(&client_info(peer, &headers, &FLUSSONIC_HEADERS)).unwrap();
        assert_eq!(
            info,
            serde_json::json!({
                "address": "127.0.0.1",
                "forwarded_for": "10.0.0.1, 10.0.0.2",
                "user_agent": "curl/8",
            })
        );
    }
}
