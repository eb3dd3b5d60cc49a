//! Decisions: what a policy's return value means, mapped strictly in one place.
//!
//! Engines turn whatever a script returned into a language-neutral [`ScriptValue`]; this
//! module alone decides what that value means for each [`Callback`] (contract §2). Wire codes
//! (`42`, `0`, `-1`, `-3`, `"primary"` …) appear here only in the `code` accessors used by the
//! edges (JSON, SQL, C).

use std::fmt;
use std::time::Duration;

use crate::language::Language;

/// The three questions a policy can be asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callback {
    /// `on_user_signup(signup_info, node_info)`: a user signs up on a secondary node.
    UserSignup,
    /// `on_user_login(login_info, node_info)`: a user logs in on a secondary node.
    UserLogin,
    /// `on_new_node(node_info)`: a new node (device) asks to join.
    NewNode,
}

impl Callback {
    /// Every callback, in a fixed order (also the index order of [`Callback::index`]).
    pub const ALL: [Callback; 3] = [Callback::UserSignup, Callback::UserLogin, Callback::NewNode];

    /// The global function a plugin defines to answer this callback.
    pub fn function_name(self) -> &'static str {
        match self {
            Callback::UserSignup => "on_user_signup",
            Callback::UserLogin => "on_user_login",
            Callback::NewNode => "on_new_node",
        }
    }

    /// The short name used by the CLI, the service protocol and the SQL functions.
    pub fn method_name(self) -> &'static str {
        match self {
            Callback::UserSignup => "user_signup",
            Callback::UserLogin => "user_login",
            Callback::NewNode => "new_node",
        }
    }

    /// Parses a method name (`user_login`) or a function name (`on_user_login`).
    pub fn from_name(name: &str) -> Option<Callback> {
        Callback::ALL
            .into_iter()
            .find(|c| c.method_name() == name || c.function_name() == name)
    }

    /// What is wrong with a global function named `name`, when it looks like a callback
    /// (`on_…`) but is none: most likely a typo that would leave the real callback undefined
    /// and every request refused. The message names the closest callback:
    /// `on_user_logon is not a callback; did you mean on_user_login?`.
    pub fn misnamed(name: &str) -> Option<String> {
        if !name.starts_with("on_") || Callback::from_name(name).is_some() {
            return None;
        }
        let closest = Callback::ALL
            .into_iter()
            .min_by_key(|c| edit_distance(name, c.function_name()))
            .expect("there are callbacks");
        Some(format!(
            "{name} is not a callback; did you mean {closest}? (the callbacks are \
             on_user_signup, on_user_login and on_new_node)"
        ))
    }

    /// A dense index (0..3), for per-callback tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// How many string arguments the callback takes.
    pub fn arity(self) -> usize {
        match self {
            Callback::NewNode => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.function_name())
    }
}

/// The Levenshtein distance between two names: the fewest single-character insertions,
/// deletions and substitutions that turn one into the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A script's return value, reduced to what the decision mapping needs to know.
///
/// Engines build this from their native values; tables, functions and other objects keep only
/// their type name, for the error message.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptValue {
    /// `nil` / `None`, or no value at all.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer within i64.
    Int(i64),
    /// An integer outside i64 (Python's unbounded `int`), as decimal text.
    BigInt(String),
    /// A floating-point number.
    Float(f64),
    /// A string (Lua strings may hold any bytes).
    Str(Vec<u8>),
    /// Anything else, by its type name in the script's language (`table`, `dict`, `bytes` …).
    Other(String),
}

impl ScriptValue {
    /// Describes the value for an error message, in the words of the policy's language:
    /// `nil`, `a boolean true`, `a string "42"` in Lua; `None`, `a bool True`, `a str '42'`
    /// in Python.
    pub fn describe(&self, language: Language) -> String {
        match (self, language) {
            (ScriptValue::Nil, Language::Lua) => "nil".into(),
            (ScriptValue::Nil, Language::Python) => "None".into(),
            (ScriptValue::Bool(b), Language::Lua) => format!("a boolean {b}"),
            (ScriptValue::Bool(true), Language::Python) => "a bool True".into(),
            (ScriptValue::Bool(false), Language::Python) => "a bool False".into(),
            (ScriptValue::Int(n), Language::Lua) => format!("the integer {n}"),
            (ScriptValue::Int(n), Language::Python) => format!("the int {n}"),
            (ScriptValue::BigInt(n), Language::Lua) => {
                format!("the integer {n} (outside the 64-bit range)")
            }
            (ScriptValue::BigInt(n), Language::Python) => {
                format!("the int {n} (outside the 64-bit range)")
            }
            (ScriptValue::Float(x), Language::Lua) => format!("a float {x:?}"),
            (ScriptValue::Float(x), Language::Python) => format!("a float {}", python_float(*x)),
            (ScriptValue::Str(s), _) => {
                const SHOWN: usize = 60;
                let text = String::from_utf8_lossy(&s[..s.len().min(SHOWN)]);
                let more = if s.len() > SHOWN { "…" } else { "" };
                match language {
                    Language::Lua => format!("a string {:?}{more}", text.as_ref()),
                    Language::Python => format!("a str {}{more}", python_str(&text)),
                }
            }
            (ScriptValue::Other(type_name), _) => format!("a value of type {type_name}"),
        }
    }
}

/// A float as Python's `repr` writes it: `nan`, `inf`, `1e+20`.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let text = format!("{x:?}");
    match text.split_once('e') {
        Some((mantissa, exponent)) if !exponent.starts_with('-') => {
            format!("{mantissa}e+{exponent}")
        }
        _ => text,
    }
}

/// A string as Python's `repr` writes it: single quotes unless the text holds one and no
/// double quote.
fn python_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Why a decision is `error` (−3): each cause a caller or operator may want to tell apart.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The script returned `-3` itself: a general error by its own account.
    Script,
    /// The script returned something the contract does not accept.
    BadReturn,
    /// The script raised an error or exception.
    Raised,
    /// The request ran past its deadline (queue wait included).
    Timeout,
    /// The script exceeded its interpreter's memory limit.
    Memory,
    /// No plugin of the live set defines the callback.
    MissingCallback,
    /// The request could not be queued: every worker's queue is full.
    Overloaded,
    /// The host is shutting down and takes no more requests.
    ShuttingDown,
    /// A worker failed (a panic, an interpreter that could not be built).
    WorkerFailed,
    /// The host has no plugin set loaded or the caller's input was unusable.
    Unavailable,
}

/// An `error` decision: its cause and a message that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionError {
    /// What kind of failure it was.
    pub kind: ErrorKind,
    /// A message for people: `plugins/login.lua:12: attempt to index a nil value`.
    pub message: String,
}

impl DecisionError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DecisionError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The answer to `on_user_signup` or `on_user_login`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserDecision {
    /// Use this user id (1 ≤ id ≤ 2^63−1).
    UserId(i64),
    /// Let the system choose a new user id (`0`).
    NewUser,
    /// Not authorized (`-1`).
    NotAuthorized,
    /// A general error (`-3`), with its cause.
    Error(DecisionError),
}

impl UserDecision {
    /// The wire code: the user id, `0`, `-1` or `-3`.
    pub fn code(&self) -> i64 {
        match self {
            UserDecision::UserId(id) => *id,
            UserDecision::NewUser => 0,
            UserDecision::NotAuthorized => -1,
            UserDecision::Error(_) => -3,
        }
    }

    /// The decision's name in JSON: `user_id`, `new_user`, `not_authorized` or `error`.
    pub fn name(&self) -> &'static str {
        match self {
            UserDecision::UserId(_) => "user_id",
            UserDecision::NewUser => "new_user",
            UserDecision::NotAuthorized => "not_authorized",
            UserDecision::Error(_) => "error",
        }
    }

    /// Maps a script's return value (contract §2). Anything but an explicit, well-formed
    /// answer is an error whose message says what came back, in `language`'s words.
    pub fn from_return(value: &ScriptValue, language: Language) -> UserDecision {
        let n = match value {
            ScriptValue::Int(n) => *n,
            ScriptValue::Float(x) => match exact_i64(*x) {
                Some(n) => n,
                None => return bad_user_return(value, language),
            },
            _ => return bad_user_return(value, language),
        };
        match n {
            1.. => UserDecision::UserId(n),
            0 => UserDecision::NewUser,
            -1 => UserDecision::NotAuthorized,
            -3 => UserDecision::Error(DecisionError::new(
                ErrorKind::Script,
                "the policy returned -3 (general error)",
            )),
            _ => bad_user_return(value, language),
        }
    }
}

/// The answer to `on_new_node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeDecision {
    /// Join as a primary node.
    Primary,
    /// Join as a secondary node.
    Secondary,
    /// Join as an asynchronous node.
    Async,
    /// Not authorized (`"unauthorized"` or `-1`).
    Unauthorized,
    /// A general error (`-3`), with its cause.
    Error(DecisionError),
}

/// A node decision's wire code: a role name or a negative integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeCode {
    /// `"primary"`, `"secondary"` or `"async"`.
    Role(&'static str),
    /// `-1` (unauthorized) or `-3` (error).
    Int(i64),
}

impl NodeDecision {
    /// The wire code: the role name, or `-1` / `-3`.
    pub fn code(&self) -> NodeCode {
        match self {
            NodeDecision::Primary => NodeCode::Role("primary"),
            NodeDecision::Secondary => NodeCode::Role("secondary"),
            NodeDecision::Async => NodeCode::Role("async"),
            NodeDecision::Unauthorized => NodeCode::Int(-1),
            NodeDecision::Error(_) => NodeCode::Int(-3),
        }
    }

    /// The decision's name in JSON: the role, `unauthorized` or `error`.
    pub fn name(&self) -> &'static str {
        match self {
            NodeDecision::Primary => "primary",
            NodeDecision::Secondary => "secondary",
            NodeDecision::Async => "async",
            NodeDecision::Unauthorized => "unauthorized",
            NodeDecision::Error(_) => "error",
        }
    }

    /// Maps a script's return value (contract §2): only the exact role names, `"unauthorized"`,
    /// `-1` and `-3` mean anything. Errors name what came back in `language`'s words.
    pub fn from_return(value: &ScriptValue, language: Language) -> NodeDecision {
        match value {
            ScriptValue::Str(s) => match s.as_slice() {
                b"primary" => NodeDecision::Primary,
                b"secondary" => NodeDecision::Secondary,
                b"async" => NodeDecision::Async,
                b"unauthorized" => NodeDecision::Unauthorized,
                _ => bad_node_return(value, language),
            },
            ScriptValue::Int(_) | ScriptValue::Float(_) => {
                let n = match value {
                    ScriptValue::Int(n) => Some(*n),
                    ScriptValue::Float(x) => exact_i64(*x),
                    _ => None,
                };
                match n {
                    Some(-1) => NodeDecision::Unauthorized,
                    Some(-3) => NodeDecision::Error(DecisionError::new(
                        ErrorKind::Script,
                        "the policy returned -3 (general error)",
                    )),
                    _ => bad_node_return(value, language),
                }
            }
            _ => bad_node_return(value, language),
        }
    }
}

/// The value of a float that is exactly an i64, if it is one.
fn exact_i64(x: f64) -> Option<i64> {
    // 2^63 itself is representable as f64 but not as i64, hence the strict upper bound.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    (x.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&x)).then_some(x as i64)
}

fn bad_user_return(value: &ScriptValue, language: Language) -> UserDecision {
    let value = value.describe(language);
    UserDecision::Error(DecisionError::new(
        ErrorKind::BadReturn,
        format!("returned {value}, expected an integer user id (≥ 1), 0, -1 or -3"),
    ))
}

fn bad_node_return(value: &ScriptValue, language: Language) -> NodeDecision {
    let value = value.describe(language);
    NodeDecision::Error(DecisionError::new(
        ErrorKind::BadReturn,
        format!(
            "returned {value}, expected \"primary\", \"secondary\", \"async\", \"unauthorized\", -1 or -3"
        ),
    ))
}

/// A decision for either kind of callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The answer to a user callback.
    User(UserDecision),
    /// The answer to `on_new_node`.
    Node(NodeDecision),
}

impl Decision {
    /// Every decision name, in the order of [`Decision::name_index`].
    pub const NAMES: [&'static str; 8] = [
        "user_id",
        "new_user",
        "not_authorized",
        "primary",
        "secondary",
        "async",
        "unauthorized",
        "error",
    ];

    /// Where this decision's name stands in [`Decision::NAMES`], for per-decision tables.
    pub fn name_index(&self) -> usize {
        match self {
            Decision::User(UserDecision::UserId(_)) => 0,
            Decision::User(UserDecision::NewUser) => 1,
            Decision::User(UserDecision::NotAuthorized) => 2,
            Decision::Node(NodeDecision::Primary) => 3,
            Decision::Node(NodeDecision::Secondary) => 4,
            Decision::Node(NodeDecision::Async) => 5,
            Decision::Node(NodeDecision::Unauthorized) => 6,
            Decision::User(UserDecision::Error(_)) | Decision::Node(NodeDecision::Error(_)) => 7,
        }
    }

    /// Maps a script's return value for `callback`, naming a wrong one in `language`'s
    /// words.
    pub fn from_return(callback: Callback, value: &ScriptValue, language: Language) -> Decision {
        match callback {
            Callback::NewNode => Decision::Node(NodeDecision::from_return(value, language)),
            _ => Decision::User(UserDecision::from_return(value, language)),
        }
    }

    /// An `error` decision of the right kind for `callback`.
    pub fn error(callback: Callback, error: DecisionError) -> Decision {
        match callback {
            Callback::NewNode => Decision::Node(NodeDecision::Error(error)),
            _ => Decision::User(UserDecision::Error(error)),
        }
    }

    /// The decision's name in JSON (`user_id`, `primary`, `error` …).
    pub fn name(&self) -> &'static str {
        match self {
            Decision::User(d) => d.name(),
            Decision::Node(d) => d.name(),
        }
    }

    /// The error, if the decision is `error`.
    pub fn error_cause(&self) -> Option<&DecisionError> {
        match self {
            Decision::User(UserDecision::Error(e)) | Decision::Node(NodeDecision::Error(e)) => {
                Some(e)
            }
            _ => None,
        }
    }

    /// A wrong return's error named after the plugin file and the callback that returned it
    /// (`plugins/login.lua: on_user_login returned a string "ok", expected …`), since the
    /// value alone does not say where it came from; `restore` gives back the engine's own
    /// names in the description. Any other decision is returned as it is.
    #[cold]
    pub(crate) fn name_wrong_return(
        mut self,
        plugin: &str,
        callback: Callback,
        restore: impl FnOnce(String) -> String,
    ) -> Decision {
        if let Decision::User(UserDecision::Error(error))
        | Decision::Node(NodeDecision::Error(error)) = &mut self
        {
            if error.kind == ErrorKind::BadReturn {
                let message = restore(std::mem::take(&mut error.message));
                error.message = format!("{plugin}: {callback} {message}");
            }
        }
        self
    }

    /// Whether the decision is `error`.
    pub fn is_error(&self) -> bool {
        self.error_cause().is_some()
    }

    /// The wire code as JSON: an integer, or a role name.
    pub fn code_json(&self) -> serde_json::Value {
        match self {
            Decision::User(d) => d.code().into(),
            Decision::Node(d) => match d.code() {
                NodeCode::Role(role) => role.into(),
                NodeCode::Int(n) => n.into(),
            },
        }
    }
}

/// A decision with where it came from: the answer a caller receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// The plugin file that answered, when one did. Shared, not copied, per request: each
    /// worker keeps its own reference to each name.
    pub plugin: Option<std::sync::Arc<str>>,
    /// The generation of the plugin set that answered, when one did.
    pub generation: Option<u64>,
    /// Time from submission to decision.
    pub elapsed: Duration,
}

impl Outcome {
    /// An outcome that no plugin produced (overload, timeout, shutdown …).
    pub fn failed(callback: Callback, error: DecisionError, elapsed: Duration) -> Outcome {
        Outcome {
            decision: Decision::error(callback, error),
            plugin: None,
            generation: None,
            elapsed,
        }
    }

    /// The decision as one JSON object (contract §3).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("decision".into(), self.decision.name().into());
        object.insert("code".into(), self.decision.code_json());
        if let Some(error) = self.decision.error_cause() {
            object.insert("error".into(), error.message.clone().into());
        }
        if let Some(plugin) = &self.plugin {
            object.insert("plugin".into(), plugin.as_ref().into());
        }
        if let Some(generation) = self.generation {
            object.insert("generation".into(), generation.into());
        }
        object.insert(
            "elapsed_us".into(),
            u64::try_from(self.elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .into(),
        );
        serde_json::Value::Object(object)
    }

    /// The user decision, if this answers a user callback.
    pub fn user(&self) -> Option<&UserDecision> {
        match &self.decision {
            Decision::User(d) => Some(d),
            Decision::Node(_) => None,
        }
    }

    /// The node decision, if this answers `on_new_node`.
    pub fn node(&self) -> Option<&NodeDecision> {
        match &self.decision {
            Decision::Node(d) => Some(d),
            Decision::User(_) => None,
        }
    }
}

/// The message of every timeout decision.
pub(crate) fn timeout_message(timeout: Duration) -> String {
    format!("timeout: no decision within {} ms", timeout.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(v: ScriptValue) -> UserDecision {
        UserDecision::from_return(&v, Language::Lua)
    }

    fn node(v: ScriptValue) -> NodeDecision {
        NodeDecision::from_return(&v, Language::Lua)
    }

    fn user_error_message(v: ScriptValue) -> String {
        match user(v) {
            UserDecision::Error(e) => {
                assert_eq!(e.kind, ErrorKind::BadReturn);
                e.message
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn user_ids_in_range_are_user_ids() {
        assert_eq!(user(ScriptValue::Int(42)), UserDecision::UserId(42));
        assert_eq!(user(ScriptValue::Int(1)), UserDecision::UserId(1));
        assert_eq!(
            user(ScriptValue::Int(i64::MAX)),
            UserDecision::UserId(i64::MAX)
        );
    }

    #[test]
    fn the_special_codes_map_to_their_decisions() {
        assert_eq!(user(ScriptValue::Int(0)), UserDecision::NewUser);
        assert_eq!(user(ScriptValue::Int(-1)), UserDecision::NotAuthorized);
        match user(ScriptValue::Int(-3)) {
            UserDecision::Error(e) => assert_eq!(e.kind, ErrorKind::Script),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn integral_floats_count_as_integers() {
        assert_eq!(user(ScriptValue::Float(42.0)), UserDecision::UserId(42));
        assert_eq!(user(ScriptValue::Float(0.0)), UserDecision::NewUser);
        assert_eq!(user(ScriptValue::Float(-0.0)), UserDecision::NewUser);
        assert_eq!(user(ScriptValue::Float(-1.0)), UserDecision::NotAuthorized);
    }

    #[test]
    fn other_negative_integers_are_errors() {
        for n in [-2, -4, -100, i64::MIN] {
            let message = user_error_message(ScriptValue::Int(n));
            assert!(message.contains(&n.to_string()), "{message}");
        }
    }

    #[test]
    fn non_integral_and_non_finite_floats_are_errors() {
        assert!(user_error_message(ScriptValue::Float(1.5)).contains("1.5"));
        assert!(user_error_message(ScriptValue::Float(f64::NAN)).contains("NaN"));
        assert!(user_error_message(ScriptValue::Float(f64::INFINITY)).contains("inf"));
        user_error_message(ScriptValue::Float(f64::NEG_INFINITY));
        // 2^63 is a float with an exact integer value, but not an i64.
        user_error_message(ScriptValue::Float(9_223_372_036_854_775_808.0));
    }

    #[test]
    fn strings_booleans_nil_and_objects_are_errors_that_say_what_came_back() {
        let message = user_error_message(ScriptValue::Str(b"42".to_vec()));
        assert!(
            message.starts_with("returned a string \"42\", expected an integer user id"),
            "{message}"
        );
        assert!(user_error_message(ScriptValue::Bool(true)).contains("boolean true"));
        assert!(user_error_message(ScriptValue::Nil).contains("nil"));
        assert!(user_error_message(ScriptValue::Other("table".into())).contains("table"));
        assert!(
            user_error_message(ScriptValue::BigInt("9223372036854775808".into()))
                .contains("9223372036854775808")
        );
    }

    #[test]
    fn values_are_named_in_the_policy_language() {
        let named = |v: ScriptValue| (v.describe(Language::Lua), v.describe(Language::Python));
        let pairs = [
            (ScriptValue::Nil, ("nil", "None")),
            (ScriptValue::Bool(true), ("a boolean true", "a bool True")),
            (
                ScriptValue::Bool(false),
                ("a boolean false", "a bool False"),
            ),
            (ScriptValue::Int(-2), ("the integer -2", "the int -2")),
            (ScriptValue::Float(f64::NAN), ("a float NaN", "a float nan")),
            (
                ScriptValue::Float(f64::NEG_INFINITY),
                ("a float -inf", "a float -inf"),
            ),
            (ScriptValue::Float(1e20), ("a float 1e20", "a float 1e+20")),
            (ScriptValue::Float(1.5), ("a float 1.5", "a float 1.5")),
            (
                ScriptValue::Str(b"42".to_vec()),
                ("a string \"42\"", "a str '42'"),
            ),
            (
                ScriptValue::Str(b"it's".to_vec()),
                ("a string \"it's\"", "a str \"it's\""),
            ),
            (
                ScriptValue::Str(b"a\nb".to_vec()),
                ("a string \"a\\nb\"", "a str 'a\\nb'"),
            ),
        ];
        for (value, (lua, python)) in pairs {
            assert_eq!(named(value), (lua.to_string(), python.to_string()));
        }
        let message = |v: ScriptValue| match UserDecision::from_return(&v, Language::Python) {
            UserDecision::Error(e) => e.message,
            other => panic!("{other:?}"),
        };
        assert!(message(ScriptValue::Nil).starts_with("returned None, expected"));
    }

    #[test]
    fn node_roles_must_be_exact() {
        assert_eq!(
            node(ScriptValue::Str(b"primary".to_vec())),
            NodeDecision::Primary
        );
        assert_eq!(
            node(ScriptValue::Str(b"secondary".to_vec())),
            NodeDecision::Secondary
        );
        assert_eq!(
            node(ScriptValue::Str(b"async".to_vec())),
            NodeDecision::Async
        );
        assert_eq!(
            node(ScriptValue::Str(b"unauthorized".to_vec())),
            NodeDecision::Unauthorized
        );
        for wrong in ["Primary", "primary ", "", "admin"] {
            match node(ScriptValue::Str(wrong.as_bytes().to_vec())) {
                NodeDecision::Error(e) => {
                    assert_eq!(e.kind, ErrorKind::BadReturn);
                    assert!(e.message.contains(&format!("{wrong:?}")), "{}", e.message);
                }
                other => panic!("{wrong:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn node_codes_minus_one_and_minus_three() {
        assert_eq!(node(ScriptValue::Int(-1)), NodeDecision::Unauthorized);
        assert_eq!(node(ScriptValue::Float(-1.0)), NodeDecision::Unauthorized);
        assert!(
            matches!(node(ScriptValue::Int(-3)), NodeDecision::Error(e) if e.kind == ErrorKind::Script)
        );
        for other in [
            ScriptValue::Int(0),
            ScriptValue::Int(1),
            ScriptValue::Int(-2),
            ScriptValue::Float(-1.5),
            ScriptValue::Nil,
            ScriptValue::Bool(false),
            ScriptValue::Other("table".into()),
        ] {
            assert!(
                matches!(node(other.clone()), NodeDecision::Error(ref e) if e.kind == ErrorKind::BadReturn),
                "{other:?}"
            );
        }
    }

    #[test]
    fn json_has_decision_code_and_error() {
        let outcome = Outcome {
            decision: Decision::User(UserDecision::UserId(42)),
            plugin: Some("plugins/login.lua".into()),
            generation: Some(3),
            elapsed: Duration::from_micros(17),
        };
        assert_eq!(
            outcome.to_json(),
            serde_json::json!({"decision":"user_id","code":42,"plugin":"plugins/login.lua",
                               "generation":3,"elapsed_us":17})
        );
        let failed = Outcome::failed(
            Callback::NewNode,
            DecisionError::new(ErrorKind::Timeout, "timeout after 2000 ms"),
            Duration::ZERO,
        );
        let json = failed.to_json();
        assert_eq!(json["decision"], "error");
        assert_eq!(json["code"], -3);
        assert_eq!(json["error"], "timeout after 2000 ms");
        let role = Outcome {
            decision: Decision::Node(NodeDecision::Secondary),
            plugin: None,
            generation: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(role.to_json()["code"], "secondary");
    }

    #[test]
    fn decision_names_and_their_index_agree() {
        let all = [
            Decision::User(UserDecision::UserId(1)),
            Decision::User(UserDecision::NewUser),
            Decision::User(UserDecision::NotAuthorized),
            Decision::User(UserDecision::Error(DecisionError::new(
                ErrorKind::Script,
                "",
            ))),
            Decision::Node(NodeDecision::Primary),
            Decision::Node(NodeDecision::Secondary),
            Decision::Node(NodeDecision::Async),
            Decision::Node(NodeDecision::Unauthorized),
            Decision::Node(NodeDecision::Error(DecisionError::new(
                ErrorKind::Script,
                "",
            ))),
        ];
        for decision in all {
            assert_eq!(Decision::NAMES[decision.name_index()], decision.name());
        }
    }

    #[test]
    fn a_misnamed_callback_names_the_closest_one() {
        let closest = |name: &str| {
            Callback::misnamed(name).map(|m| {
                let (_, rest) = m.split_once("did you mean ").unwrap();
                rest.split('?').next().unwrap().to_string()
            })
        };
        assert_eq!(closest("on_user_logon").as_deref(), Some("on_user_login"));
        assert_eq!(closest("on_login").as_deref(), Some("on_user_login"));
        assert_eq!(
            closest("on_user_sign_up").as_deref(),
            Some("on_user_signup")
        );
        assert_eq!(closest("on_newnode").as_deref(), Some("on_new_node"));
        assert_eq!(closest("on_node").as_deref(), Some("on_new_node"));
        for fine in [
            "on_user_login",
            "on_new_node",
            "setup",
            "login_on_",
            "handle",
        ] {
            assert_eq!(Callback::misnamed(fine), None, "{fine}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn callback_names_round_trip() {
        for c in Callback::ALL {
            assert_eq!(Callback::from_name(c.method_name()), Some(c));
            assert_eq!(Callback::from_name(c.function_name()), Some(c));
        }
        assert_eq!(Callback::from_name("login"), None);
    }
}
