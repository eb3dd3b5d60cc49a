//! The service's wire protocol (contract §8): JSON-RPC 2.0, one object per line.
//!
//! Pure functions only: [`parse_request`] turns one line into a [`Request`] or the
//! [`Refusal`] to answer it with, and the `*_line` functions build response lines. Nothing
//! here does I/O or touches a host, so every rule of the protocol is unit-tested here.
//!
//! ```
//! use authhost::serve::protocol::{parse_request, Method};
//!
//! let line = br#"{"jsonrpc":"2.0","id":7,"method":"new_node","params":{"node_info":{"public_key":"k"}}}"#;
//! let request = parse_request(line).unwrap();
//! assert_eq!(request.id, Some(7.into()));
//! match request.method {
//!     Method::Call { args, .. } => assert_eq!(args[0], r#"{"public_key":"k"}"#),
//!     _ => unreachable!(),
//! }
//! ```

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::decision::{Callback, Outcome};

/// The longest line the service reads, newline excluded; longer ones are refused (−32600).
pub const MAX_LINE: usize = 1 << 20;

/// The most requests one batch may hold; a longer batch is refused whole (one −32600). A
/// batch takes one of its connection's pending places per member, so this also keeps one
/// message from filling the host's queue.
pub const MAX_BATCH: usize = 256;

/// The JSON-RPC error codes the service answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// −32700: the line is not JSON.
    ParseError,
    /// −32600: JSON, but not a request (not an object, wrong `jsonrpc`, no method, too long).
    InvalidRequest,
    /// −32601: no such method.
    MethodNotFound,
    /// −32602: a param is missing, unknown or of the wrong type.
    InvalidParams,
    /// −32000: `reload` failed; the running plugin set stays.
    ReloadFailed,
    /// −32001: the server has all the connections it takes; this one is closed.
    TooManyConnections,
    /// −32003: a control method (`reload`) asked on a connection that is not trusted
    /// (`tcp:`, `http:`).
    NotTrusted,
}

impl ErrorCode {
    /// The number sent on the wire.
    pub fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::ReloadFailed => -32000,
            ErrorCode::TooManyConnections => -32001,
            ErrorCode::NotTrusted => -32003,
        }
    }
}

/// A JSON-RPC error object: code, message and optional data.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// What kind of error.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
    /// More detail, when there is some (the status after a failed reload).
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// What a well-formed request asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// `user_signup`, `user_login` or `new_node`, with the callback's arguments (the second
    /// is empty for `new_node`).
    Call {
        /// The callback to ask.
        callback: Callback,
        /// Its arguments, as the script receives them.
        args: [String; 2],
    },
    /// `status`: the host's state.
    Status,
    /// `reload`: load the plugins now.
    Reload,
    /// `auth`, `auth_token` or `auth_clear` (issue 15).
    Session(SessionMethod),
}

/// The session methods: a login that opens a session, and a session token's use and end.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionMethod {
    /// `auth` (`login_info`, `node_info`): `user_login`, plus a token on `user_id`.
    Auth {
        /// `login_info` and `node_info`, as `user_login` takes them.
        args: [String; 2],
    },
    /// `auth_token` (`token`): the user of a live session.
    Token {
        /// The session token.
        token: String,
    },
    /// `auth_clear` (`token`): forgets a session.
    Clear {
        /// The session token.
        token: String,
    },
}

/// The names of the session methods.
const SESSION_METHODS: [&str; 3] = ["auth", "auth_token", "auth_clear"];

/// Parses a session method's params (`name` is one of [`SESSION_METHODS`]).
fn session_method(name: &str, params: Option<&Value>) -> Result<Method, RpcError> {
    let token = |params| token_param(name, params);
    let method = match name {
        "auth" => {
            callback_args(Callback::UserLogin, params).map(|args| SessionMethod::Auth { args })
        }
        "auth_token" => token(params).map(|token| SessionMethod::Token { token }),
        _ => token(params).map(|token| SessionMethod::Clear { token }),
    };
    method.map(Method::Session)
}

/// The one param of `auth_token` and `auth_clear` (method `name`): `"token"`, a string,
/// named or positional.
///
/// # Failure
///
/// An [`ErrorCode::InvalidParams`] error saying what the method takes.
pub fn token_param(name: &str, params: Option<&Value>) -> Result<String, RpcError> {
    let value = match params {
        Some(Value::Object(named)) if named.len() == 1 => named.get("token"),
        Some(Value::Array(positional)) if positional.len() == 1 => positional.first(),
        _ => None,
    };
    match value {
        Some(Value::String(token)) => Ok(token.clone()),
        _ => Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("{name} takes one param, \"token\", a string"),
        )),
    }
}

/// A well-formed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The request's id; `None` for a notification, which gets no response.
    pub id: Option<Value>,
    /// What it asks for.
    pub method: Method,
}

/// A line the service refuses, and how to answer it.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// The id to answer with (`null` when the request's own id is unknown or unusable);
    /// `None` for a notification, which gets no response even when it is wrong.
    pub reply_to: Option<Value>,
    /// The error to answer with.
    pub error: RpcError,
}

impl Refusal {
    /// The answer to a line longer than [`MAX_LINE`], which is never parsed.
    pub fn line_too_long() -> Refusal {
        Refusal {
            reply_to: Some(Value::Null),
            error: RpcError::new(
                ErrorCode::InvalidRequest,
                format!("request line longer than {MAX_LINE} bytes refused"),
            ),
        }
    }

    fn to(reply_to: Option<Value>, code: ErrorCode, message: impl Into<String>) -> Box<Refusal> {
        Box::new(Refusal {
            reply_to,
            error: RpcError::new(code, message),
        })
    }
}

/// One message: a request or a batch of them, each parsed or refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// One request, or the refusal of the whole message (not JSON, an empty or too long
    /// batch), answered with one response.
    Single(Result<Request, Box<Refusal>>),
    /// A batch of 1 to [`MAX_BATCH`] members, in order; each is answered on its own, and the
    /// answers together as one array.
    Batch(Vec<Result<Request, Box<Refusal>>>),
}

/// Parses one message (a line without its newline): a request, or a batch (a JSON array)
/// of them.
pub fn parse_message(line: &[u8]) -> Incoming {
    let value = match parse_json(line) {
        Ok(value) => value,
        Err(refusal) => return Incoming::Single(Err(refusal)),
    };
    let Value::Array(members) = value else {
        return Incoming::Single(request_from_value(value));
    };
    let refuse = |message: String| {
        Incoming::Single(Err(Refusal::to(
            Some(Value::Null),
            ErrorCode::InvalidRequest,
            message,
        )))
    };
    match members.len() {
        0 => refuse("an empty batch is not a request".into()),
        n if n > MAX_BATCH => refuse(format!(
            "a batch of {n} requests refused: at most {MAX_BATCH} per batch"
        )),
        _ => Incoming::Batch(members.into_iter().map(request_from_value).collect()),
    }
}

/// Parses one line (without its newline) into a single request, or the refusal to answer
/// it with (boxed: refusals are the rare path, and large). A batch is refused here; see
/// [`parse_message`].
pub fn parse_request(line: &[u8]) -> Result<Request, Box<Refusal>> {
    request_from_value(parse_json(line)?)
}

fn parse_json(line: &[u8]) -> Result<Value, Box<Refusal>> {
    serde_json::from_slice(line).map_err(|e| {
        Refusal::to(
            Some(Value::Null),
            ErrorCode::ParseError,
            format!("not JSON: {e}"),
        )
    })
}

/// A request from its JSON value (a message, or a member of a batch).
fn request_from_value(value: Value) -> Result<Request, Box<Refusal>> {
    let Value::Object(mut object) = value else {
        return Err(Refusal::to(
            Some(Value::Null),
            ErrorCode::InvalidRequest,
            "a request must be a JSON object",
        ));
    };
    // The id first, so that every later refusal can be answered to it.
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => {
            return Err(Refusal::to(
                Some(Value::Null),
                ErrorCode::InvalidRequest,
                "\"id\" must be a string, a number or null",
            ))
        }
    };
    // A malformed request is answered even without an id: it cannot be trusted to be a
    // notification.
    let invalid = |message: &str| {
        Refusal::to(
            Some(id.clone().unwrap_or(Value::Null)),
            ErrorCode::InvalidRequest,
            message,
        )
    };
    match object.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return Err(invalid("\"jsonrpc\" must be \"2.0\"")),
    }
    let method = match object.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(invalid("\"method\" must be a string")),
        None => return Err(invalid("\"method\" is missing")),
    };
    let params = object.get("params");
    let method = match method {
        "status" => no_params(params).map(|()| Method::Status),
        "reload" => no_params(params).map(|()| Method::Reload),
        name if SESSION_METHODS.contains(&name) => session_method(name, params),
        name => match Callback::ALL.into_iter().find(|c| c.method_name() == name) {
            Some(callback) => {
                callback_args(callback, params).map(|args| Method::Call { callback, args })
            }
            None => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!(
                    "unknown method {name:?}: expected user_signup, user_login, new_node, status or reload"
                ),
            )),
        },
    };
    match method {
        Ok(method) => Ok(Request { id, method }),
        Err(error) => Err(Box::new(Refusal {
            reply_to: id,
            error,
        })),
    }
}

/// A callback's arguments from JSON-RPC params: named (an object) or positional (an array).
/// Each must be a string, or a JSON object or array, which is passed as its JSON text.
///
/// # Failure
///
/// An [`ErrorCode::InvalidParams`] error naming the missing, unknown or mistyped param.
pub fn callback_args(callback: Callback, params: Option<&Value>) -> Result<[String; 2], RpcError> {
    crate::args::callback_args(callback, params)
        .map_err(|message| RpcError::new(ErrorCode::InvalidParams, message))
}

/// `status` and `reload` take no params: none, or an empty object or array.
fn no_params(params: Option<&Value>) -> Result<(), RpcError> {
    match params {
        None => Ok(()),
        Some(Value::Object(o)) if o.is_empty() => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(_) => Err(RpcError::new(
            ErrorCode::InvalidParams,
            "this method takes no params",
        )),
    }
}

/// The response line (newline included) carrying `outcome` as the result (contract §3).
pub fn outcome_line(id: &Value, outcome: &Outcome) -> String {
    let mut line = String::with_capacity(160);
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_json(&mut line, id);
    line.push_str(r#","result":{"decision":""#);
    // Decision names, roles and plugin file names are written through serde_json so that
    // any character is escaped; numbers are written directly.
    line.push_str(outcome.decision.name());
    line.push_str(r#"","code":"#);
    push_json(&mut line, &outcome.decision.code_json());
    if let Some(error) = outcome.decision.error_cause() {
        line.push_str(r#","error":"#);
        push_json_str(&mut line, &error.message);
    }
    if let Some(plugin) = &outcome.plugin {
        line.push_str(r#","plugin":"#);
        push_json_str(&mut line, plugin);
    }
    if let Some(generation) = outcome.generation {
        let _ = write!(line, r#","generation":{generation}"#);
    }
    let elapsed_us = u64::try_from(outcome.elapsed.as_micros()).unwrap_or(u64::MAX);
    let _ = write!(line, r#","elapsed_us":{elapsed_us}}}}}"#);
    line.push('\n');
    line
}

/// The response line (newline included) carrying `result`.
pub fn result_line(id: &Value, result: &Value) -> String {
    let mut line = String::with_capacity(256);
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_json(&mut line, id);
    line.push_str(r#","result":"#);
    push_json(&mut line, result);
    line.push_str("}\n");
    line
}

/// The error response line (newline included) for `error`, answered to `id`.
pub fn error_line(id: &Value, error: &RpcError) -> String {
    let mut object = Map::new();
    object.insert("code".into(), error.code.code().into());
    object.insert("message".into(), error.message.clone().into());
    if let Some(data) = &error.data {
        object.insert("data".into(), data.clone());
    }
    let mut line = String::with_capacity(128);
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_json(&mut line, id);
    line.push_str(r#","error":"#);
    push_json(&mut line, &Value::Object(object));
    line.push_str("}\n");
    line
}

fn push_json(line: &mut String, value: &Value) {
    match value {
        Value::Number(n) => {
            let _ = write!(line, "{n}");
        }
        Value::String(s) => push_json_str(line, s),
        other => line.push_str(&other.to_string()),
    }
}

fn push_json_str(line: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; writing into a String cannot fail.
    let mut bytes = std::mem::take(line).into_bytes();
    let _ = serde_json::to_writer(&mut bytes, s);
    *line = String::from_utf8(bytes).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::decision::{Decision, DecisionError, ErrorKind, NodeDecision, UserDecision};

    fn refused(line: &str) -> Refusal {
        *parse_request(line.as_bytes()).expect_err(line)
    }

    fn args_of(line: &str) -> [String; 2] {
        match parse_request(line.as_bytes()).expect(line).method {
            Method::Call { args, .. } => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn named_and_positional_params_give_the_same_arguments() {
        let named = args_of(
            r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":{"node_info":"n","login_info":"l"}}"#,
        );
        let positional =
            args_of(r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":["l","n"]}"#);
        assert_eq!(named, ["l".to_string(), "n".to_string()]);
        assert_eq!(positional, named);
    }

    #[test]
    fn object_and_array_params_are_passed_as_json_text() {
        let args = args_of(
            r#"{"jsonrpc":"2.0","id":"a","method":"user_signup","params":[{"name":"carol","n":[1,2]},["x"]]}"#,
        );
        assert_eq!(args[0], r#"{"name":"carol","n":[1,2]}"#);
        assert_eq!(args[1], r#"["x"]"#);
    }

    #[test]
    fn new_node_takes_one_param() {
        let line = r#"{"jsonrpc":"2.0","id":3,"method":"new_node","params":["{}"]}"#;
        let request = parse_request(line.as_bytes()).unwrap();
        assert_eq!(
            request.method,
            Method::Call {
                callback: Callback::NewNode,
                args: ["{}".into(), String::new()]
            }
        );
        let two = refused(r#"{"jsonrpc":"2.0","id":3,"method":"new_node","params":["{}","x"]}"#);
        assert_eq!(two.error.code, ErrorCode::InvalidParams);
        assert_eq!(two.reply_to, Some(json!(3)));
    }

    #[test]
    fn ids_are_kept_and_notifications_have_none() {
        let with_string = parse_request(br#"{"jsonrpc":"2.0","id":"x-1","method":"status"}"#);
        assert_eq!(with_string.unwrap().id, Some(json!("x-1")));
        let with_null = parse_request(br#"{"jsonrpc":"2.0","id":null,"method":"status"}"#);
        assert_eq!(with_null.unwrap().id, Some(Value::Null));
        let notification = parse_request(br#"{"jsonrpc":"2.0","method":"reload"}"#).unwrap();
        assert_eq!(notification.id, None);
        assert_eq!(notification.method, Method::Reload);
    }

    #[test]
    fn status_and_reload_take_no_params() {
        for params in ["[]", "{}"] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"status","params":{params}}}"#);
            assert_eq!(
                parse_request(line.as_bytes()).unwrap().method,
                Method::Status
            );
        }
        let r = refused(r#"{"jsonrpc":"2.0","id":1,"method":"status","params":["x"]}"#);
        assert_eq!(r.error.code, ErrorCode::InvalidParams);
    }

    #[test]
    fn not_json_is_a_parse_error_answered_to_null() {
        for line in ["nope", "{\"jsonrpc\":", "", "\u{0}"] {
            let r = refused(line);
            assert_eq!(r.error.code, ErrorCode::ParseError, "{line:?}");
            assert_eq!(r.reply_to, Some(Value::Null));
        }
        let r = parse_request(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!(r.error.code, ErrorCode::ParseError);
    }

    #[test]
    fn malformed_requests_are_invalid_and_still_answered() {
        for (line, reply_to) in [
            ("[1,2]", Value::Null),
            ("42", Value::Null),
            (r#""text""#, Value::Null),
            (r#"{"id":1,"method":"status"}"#, json!(1)),
            (r#"{"jsonrpc":"1.0","id":2,"method":"status"}"#, json!(2)),
            (r#"{"jsonrpc":2.0,"id":3,"method":"status"}"#, json!(3)),
            (r#"{"jsonrpc":"2.0","id":4}"#, json!(4)),
            (r#"{"jsonrpc":"2.0","id":5,"method":7}"#, json!(5)),
            (
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"status"}"#,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"status"}"#,
                Value::Null,
            ),
            // Without an id, a malformed request is still answered (to null).
            (r#"{"jsonrpc":"1.0","method":"status"}"#, Value::Null),
        ] {
            let r = refused(line);
            assert_eq!(r.error.code, ErrorCode::InvalidRequest, "{line}");
            assert_eq!(r.reply_to, Some(reply_to), "{line}");
        }
    }

    #[test]
    fn a_batch_is_parsed_member_by_member() {
        let line = br#"[{"jsonrpc":"2.0","id":1,"method":"status"},7,{"jsonrpc":"2.0","method":"reload"},{"jsonrpc":"2.0","id":"u","method":"nope"}]"#;
        let Incoming::Batch(members) = parse_message(line) else {
            panic!("a batch")
        };
        assert_eq!(members.len(), 4);
        assert_eq!(members[0].as_ref().unwrap().method, Method::Status);
        let not_an_object = members[1].as_ref().unwrap_err();
        assert_eq!(not_an_object.error.code, ErrorCode::InvalidRequest);
        assert_eq!(not_an_object.reply_to, Some(Value::Null));
        assert_eq!(members[2].as_ref().unwrap().id, None);
        let unknown = members[3].as_ref().unwrap_err();
        assert_eq!(unknown.error.code, ErrorCode::MethodNotFound);
        assert_eq!(unknown.reply_to, Some(json!("u")));
        // A single request is still one.
        let single = parse_message(br#"{"jsonrpc":"2.0","id":2,"method":"status"}"#);
        assert!(matches!(single, Incoming::Single(Ok(Request { .. }))));
    }

    #[test]
    fn an_empty_or_oversized_batch_is_refused_whole() {
        let whole_refusal = |line: &[u8]| match parse_message(line) {
            Incoming::Single(Err(refusal)) => *refusal,
            other => panic!("{other:?}"),
        };
        let empty = whole_refusal(b" [ ] ");
        assert_eq!(empty.error.code, ErrorCode::InvalidRequest);
        assert_eq!(empty.reply_to, Some(Value::Null));
        let member = r#"{"jsonrpc":"2.0","method":"status"}"#;
        let fits = format!("[{}]", vec![member; MAX_BATCH].join(","));
        assert!(
            matches!(parse_message(fits.as_bytes()), Incoming::Batch(m) if m.len() == MAX_BATCH)
        );
        let over = format!("[{}]", vec![member; MAX_BATCH + 1].join(","));
        let refused = whole_refusal(over.as_bytes());
        assert_eq!(refused.error.code, ErrorCode::InvalidRequest);
        assert!(
            refused.error.message.contains("at most 256"),
            "{}",
            refused.error.message
        );
        let broken = whole_refusal(b"[{\"jsonrpc\":");
        assert_eq!(broken.error.code, ErrorCode::ParseError);
    }

    #[test]
    fn unknown_methods_are_refused_but_notifications_get_no_answer() {
        let r = refused(r#"{"jsonrpc":"2.0","id":9,"method":"on_user_login","params":["a","b"]}"#);
        assert_eq!(r.error.code, ErrorCode::MethodNotFound);
        assert_eq!(r.reply_to, Some(json!(9)));
        let quiet = refused(r#"{"jsonrpc":"2.0","method":"shutdown"}"#);
        assert_eq!(quiet.error.code, ErrorCode::MethodNotFound);
        assert_eq!(quiet.reply_to, None);
    }

    #[test]
    fn bad_params_name_the_param() {
        for (line, needle) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"user_login"}"#,
                "missing params",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":{"login_info":"l"}}"#,
                "\"node_info\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":{"login_info":"l","node_info":"n","pw":"x"}}"#,
                "unknown param \"pw\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":["l"]}"#,
                "1 given",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":["l",5]}"#,
                "\"node_info\" must be a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"user_signup","params":[null,"n"]}"#,
                "not null",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"new_node","params":"k"}"#,
                "object or an array",
            ),
        ] {
            let r = refused(line);
            assert_eq!(r.error.code, ErrorCode::InvalidParams, "{line}");
            assert!(
                r.error.message.contains(needle),
                "{line}: {}",
                r.error.message
            );
            assert_eq!(r.reply_to, Some(json!(1)));
        }
    }

    #[test]
    fn outcome_lines_carry_the_decision_json_of_section_3() {
        let outcome = Outcome {
            decision: Decision::User(UserDecision::UserId(42)),
            plugin: Some("plugins/a \"b\".lua".into()),
            generation: Some(3),
            elapsed: Duration::from_micros(17),
        };
        let line = outcome_line(&json!(7), &outcome);
        assert!(line.ends_with('\n'));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            json!({"jsonrpc":"2.0","id":7,"result":outcome.to_json()})
        );
        let failed = Outcome::failed(
            Callback::NewNode,
            DecisionError::new(ErrorKind::Raised, "x.lua:1: \"boom\"\n"),
            Duration::ZERO,
        );
        let line = outcome_line(&json!("s"), &failed);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["result"], failed.to_json());
        assert_eq!(parsed["id"], json!("s"));
        let node = Outcome {
            decision: Decision::Node(NodeDecision::Primary),
            plugin: None,
            generation: None,
            elapsed: Duration::ZERO,
        };
        let parsed: Value = serde_json::from_str(&outcome_line(&Value::Null, &node)).unwrap();
        assert_eq!(
            parsed["result"],
            json!({"decision":"primary","code":"primary","elapsed_us":0})
        );
    }

    #[test]
    fn error_and_result_lines_are_json_rpc_responses() {
        let mut error = RpcError::new(ErrorCode::ReloadFailed, "reload failed: a.lua:1: x");
        error.data = Some(json!({"generation": 1}));
        let parsed: Value = serde_json::from_str(&error_line(&Value::Null, &error)).unwrap();
        assert_eq!(
            parsed,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"reload failed: a.lua:1: x","data":{"generation":1}}})
        );
        let parsed: Value =
            serde_json::from_str(&result_line(&json!(2), &json!({"ready": true}))).unwrap();
        assert_eq!(
            parsed,
            json!({"jsonrpc":"2.0","id":2,"result":{"ready":true}})
        );
    }
}
