//! Policy test cases, for `authhost test` (like `opa test`): inputs and the decisions a
//! policy should give them.
//!
//! A cases file is a JSON array of cases, or an object with a `cases` array:
//!
//! ```json
//! {"cases": [
//!   {"name": "the office laptop joins as a secondary",
//!    "callback": "new_node", "args": [{"public_key": "pk-laptop"}],
//!    "decision": "secondary"},
//!   {"name": "alice logs in from a known device",
//!    "callback": "user_login",
//!    "args": {"login_info": {"name": "alice", "password": "pw"}, "node_info": {"public_key": "k"}},
//!    "decision": "user_id", "code": 1}
//! ]}
//! ```
//!
//! `callback` is a method name (`user_login`) or a function name (`on_user_login`); `args`
//! are the callback's arguments like the service's params, named or positional, each a
//! string or a JSON value passed as its JSON text; `decision` is the expected decision's
//! name (contract §3) and `code`, optional, its expected code. Cases run in file order, so a
//! case can rely on what an earlier one wrote to the database.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::args::callback_args;
use crate::decision::{Callback, Outcome};
use crate::host::Host;

/// The decision names a user callback can give.
const USER_DECISIONS: [&str; 4] = ["user_id", "new_user", "not_authorized", "error"];
/// The decision names `on_new_node` can give.
const NODE_DECISIONS: [&str; 5] = ["primary", "secondary", "async", "unauthorized", "error"];

/// One test case.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// What the case checks, for the report.
    pub name: String,
    /// The callback to ask.
    pub callback: Callback,
    /// Its arguments.
    pub args: [String; 2],
    /// The expected decision's name.
    pub decision: String,
    /// The expected code, if the case gives one.
    pub code: Option<Value>,
}

/// A cases file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CasesError {
    /// The file cannot be read.
    // The file system's words are the message, and so not also a `source()` (see
    // `Error::PluginsPath`).
    #[error("{}: {io}", .path.display())]
    Read {
        /// The cases file.
        path: PathBuf,
        /// What the file system said.
        io: std::io::Error,
    },
    /// The file is not a well-formed cases file.
    #[error("{}: {message}", .path.display())]
    Invalid {
        /// The cases file.
        path: PathBuf,
        /// What is wrong, naming the case.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileForm {
    List(Vec<Value>),
    Object { cases: Vec<Value> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    callback: String,
    #[serde(default)]
    args: Option<Value>,
    decision: String,
    #[serde(default)]
    code: Option<Value>,
}

/// Reads the cases of the file at `path`.
///
/// # Failure
///
/// The file cannot be read, is not JSON, or a case is malformed (unknown key, unknown
/// callback or decision, bad arguments, a code its decision never has): the message names
/// the case.
pub fn load(path: impl AsRef<Path>) -> Result<Vec<Case>, CasesError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|io| CasesError::Read {
        path: path.to_path_buf(),
        io,
    })?;
    parse(&text).map_err(|message| CasesError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses the text of a cases file; the error names the case at fault.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    let form: FileForm = serde_json::from_str(text).map_err(|e| {
        format!("not a cases file (a JSON array of cases, or {{\"cases\": [...]}}): {e}")
    })?;
    let raw = match form {
        FileForm::List(cases) | FileForm::Object { cases } => cases,
    };
    if raw.is_empty() {
        return Err("no cases".into());
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, value)| {
            let label = match value.get("name").and_then(Value::as_str) {
                Some(name) => format!("case {} ({name:?})", index + 1),
                None => format!("case {}", index + 1),
            };
            case(value).map_err(|e| format!("{label}: {e}"))
        })
        .collect()
}

fn case(value: Value) -> Result<Case, String> {
    let raw: RawCase = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let callback = Callback::from_name(&raw.callback).ok_or_else(|| {
        format!(
            "unknown callback {:?}: expected user_signup, user_login or new_node",
            raw.callback
        )
    })?;
    let args = callback_args(callback, raw.args.as_ref())?;
    let known: &[&str] = match callback {
        Callback::NewNode => &NODE_DECISIONS,
        _ => &USER_DECISIONS,
    };
    if !known.contains(&raw.decision.as_str()) {
        return Err(format!(
            "{callback} cannot decide {:?}: expected one of {}",
            raw.decision,
            known.join(", ")
        ));
    }
    if let Some(code) = &raw.code {
        if let Some(expected) = mismatched_code(&raw.decision, code) {
            return Err(format!(
                "code {code} cannot go with {}: expected {expected}",
                raw.decision
            ));
        }
    }
    Ok(Case {
        name: raw.name,
        callback,
        args,
        decision: raw.decision,
        code: raw.code,
    })
}

/// What `code` must be for a decision named `decision` (one of the known names), when it is
/// not: a case whose code no answer could have would only ever fail, as if the policy were
/// wrong, when the file is.
fn mismatched_code(decision: &str, code: &Value) -> Option<&'static str> {
    let (fits, expected) = match decision {
        "user_id" => (
            code.as_i64().is_some_and(|id| id >= 1),
            "a user id (an integer of at least 1)",
        ),
        "new_user" => (code.as_i64() == Some(0), "0"),
        "not_authorized" | "unauthorized" => (code.as_i64() == Some(-1), "-1"),
        "error" => (code.as_i64() == Some(-3), "-3"),
        "primary" => (code.as_str() == Some("primary"), "\"primary\""),
        "secondary" => (code.as_str() == Some("secondary"), "\"secondary\""),
        _ => (code.as_str() == Some("async"), "\"async\""),
    };
    (!fits).then_some(expected)
}

/// A case and what the policy answered.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// What the policy decided.
    pub outcome: Outcome,
}

impl CaseResult {
    /// Whether the decision (and the code, if the case gives one) is the expected one.
    pub fn passed(&self) -> bool {
        self.outcome.decision.name() == self.case.decision
            && self
                .case
                .code
                .as_ref()
                .is_none_or(|code| *code == self.outcome.decision.code_json())
    }

    /// One report line: `PASS name: decision code` or `FAIL name: expected …, got …`, with
    /// the error message when the decision is `error`.
    pub fn report(&self) -> String {
        let decision = &self.outcome.decision;
        let mut got = format!("{} {}", decision.name(), decision.code_json());
        if let Some(error) = decision.error_cause() {
            got.push_str(&format!(" ({})", error.message));
        }
        if self.passed() {
            format!("PASS {}: {got}", self.case.name)
        } else {
            let expected = match &self.case.code {
                Some(code) => format!("{} {code}", self.case.decision),
                None => self.case.decision.clone(),
            };
            format!("FAIL {}: expected {expected}, got {got}", self.case.name)
        }
    }
}

/// Runs one case against `host`.
pub fn run(host: &Host, case: &Case) -> CaseResult {
    CaseResult {
        case: case.clone(),
        outcome: host.call(case.callback, case.args.clone()),
    }
}

/// The summary line: `N passed, M failed`.
pub fn summary(results: &[CaseResult]) -> String {
    let passed = results.iter().filter(|r| r.passed()).count();
    format!("{passed} passed, {} failed", results.len() - passed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::decision::{Decision, DecisionError, ErrorKind, NodeDecision, UserDecision};

    #[test]
    fn both_file_forms_parse_with_named_or_positional_args() {
        let list = parse(
            r#"[{"name":"a","callback":"on_user_login","args":[{"name":"alice"},"{}"],"decision":"user_id","code":1}]"#,
        )
        .unwrap();
        assert_eq!(list[0].callback, Callback::UserLogin);
        assert_eq!(
            list[0].args,
            [r#"{"name":"alice"}"#.to_string(), "{}".to_string()]
        );
        assert_eq!(list[0].code, Some(json!(1)));
        let object = parse(
            r#"{"cases":[{"name":"b","callback":"new_node","args":{"node_info":"{}"},"decision":"primary"}]}"#,
        )
        .unwrap();
        assert_eq!(object[0].args[0], "{}");
        assert_eq!(object[0].code, None);
    }

    #[test]
    fn malformed_cases_are_named() {
        for (text, needle) in [
            ("{}", "not a cases file"),
            ("[]", "no cases"),
            (
                r#"[{"name":"x","callback":"login","args":[],"decision":"user_id"}]"#,
                "case 1 (\"x\"): unknown callback",
            ),
            (
                r#"[{"name":"x","callback":"new_node","args":["{}"],"decision":"user_id"}]"#,
                "cannot decide \"user_id\"",
            ),
            (
                r#"[{"name":"x","callback":"new_node","args":["{}"],"decison":"primary"}]"#,
                "unknown field",
            ),
            (
                r#"[{"name":"x","callback":"new_node","args":[1],"decision":"primary"}]"#,
                "must be a string",
            ),
            (
                r#"[{"name":"x","callback":"new_node","decision":"primary"}]"#,
                "missing params",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    fn result(decision: &str, code: Option<Value>, outcome: Decision) -> CaseResult {
        CaseResult {
            case: Case {
                name: "n".into(),
                callback: Callback::UserLogin,
                args: Default::default(),
                decision: decision.into(),
                code,
            },
            outcome: Outcome {
                decision: outcome,
                plugin: None,
                generation: None,
                elapsed: Duration::ZERO,
            },
        }
    }

    #[test]
    fn a_case_passes_on_its_decision_and_its_code_if_given() {
        let id = |n| Decision::User(UserDecision::UserId(n));
        assert!(result("user_id", None, id(7)).passed());
        assert!(result("user_id", Some(json!(7)), id(7)).passed());
        let wrong_code = result("user_id", Some(json!(8)), id(7));
        assert!(!wrong_code.passed());
        assert_eq!(
            wrong_code.report(),
            "FAIL n: expected user_id 8, got user_id 7"
        );
        let error = Decision::Node(NodeDecision::Error(DecisionError::new(
            ErrorKind::Raised,
            "p.lua:3: boom",
        )));
        let failed = result("primary", None, error);
        assert_eq!(
            failed.report(),
            "FAIL n: expected primary, got error -3 (p.lua:3: boom)"
        );
        let passed = result(
            "primary",
            Some(json!("primary")),
            Decision::Node(NodeDecision::Primary),
        );
        assert_eq!(passed.report(), "PASS n: primary \"primary\"");
        assert_eq!(summary(&[passed, failed, wrong_code]), "1 passed, 2 failed");
    }
}
