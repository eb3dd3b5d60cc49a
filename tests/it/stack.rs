//! Recursion through C in a policy: Lua's C functions and authhost's Rust ones calling back
//! into Lua, CPython's C recursion behind a high recursion limit. Overflowing a thread's stack
//! aborts the whole process, so each route must end in `error` (−3) naming the cause, and the
//! same worker must answer the next request. Driven through the real `authhost serve`, with
//! its policies in `tests/policies/stack/`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use crate::common::policy;

/// `authhost serve` on stdio with one worker, asked one request at a time.
struct Served {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    next_id: u64,
}

impl Served {
    fn start(plugins: &Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_authhost"))
            .args(["serve", "--no-watch", "--workers", "1", "--db", ":memory:"])
            // Generous: a deadline must not end a route before its recursion does.
            .args(["--timeout-ms", "60000", "--plugins"])
            .arg(plugins)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("authhost serve starts");
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().unwrap());
        Served {
            child,
            input,
            output,
            next_id: 1,
        }
    }

    /// Sends `method` with `params` and returns the response; panics, naming what it asked,
    /// if the process ended instead of answering.
    fn ask(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let input = self.input.as_mut().unwrap();
        writeln!(input, "{request}").unwrap();
        input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        assert!(
            !line.is_empty(),
            "authhost serve ended ({:?}) instead of answering {request}",
            self.child.wait()
        );
        let response: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(response["id"], id, "{line}");
        response
    }

    /// `user_login` with these arguments: the decision's `result`.
    fn login(&mut self, login_info: &str, node_info: &str) -> Value {
        self.ask("user_login", json!([login_info, node_info]))["result"].clone()
    }

    /// Ends the input and returns the exit status.
    fn finish(mut self) -> Option<i32> {
        drop(self.input.take());
        self.child.wait().unwrap().code()
    }
}

/// Asserts `result` is an `error` (−3) whose message contains `cause`.
fn assert_error(result: &Value, cause: &str, route: &str) {
    assert_eq!(result["code"], -3, "{route}: {result}");
    let message = result["error"].as_str().unwrap_or_default();
    assert!(message.contains(cause), "{route}: {result}");
}

/// Every route through C in Lua ends at Lua's C-call limit, "C stack overflow", and the
/// worker answers the next request. Failed on the code before this test: the first route
/// (and the transaction one) overflowed the worker's 2 MiB stack in a debug build and
/// killed the process.
#[test]
fn lua_recursion_through_c_is_an_error_and_the_worker_goes_on() {
    let mut served = Served::start(&policy("stack/c_recursion.lua"));
    for route in [
        "gsub_function",
        "gsub_table",
        "transaction",
        "find_in_replacement",
        "tostring_metamethod",
        "format_metamethod",
        "sort_comparator",
        "load_nested_code",
        "concat_metamethod",
    ] {
        assert_error(&served.login(route, "{}"), "C stack overflow", route);
        assert_eq!(served.login("plain", "{}")["code"], 7, "after {route}");
    }
    assert_eq!(served.finish(), Some(0));
}

/// A plugin whose top level recurses through C fails to load, with Lua's error naming the
/// file, when the load runs on the service's reload thread; the running set goes on.
/// Failed on the code before this test: the reload thread's 2 MiB stack overflowed in a
/// debug build and the process died.
#[test]
fn a_load_that_recurses_through_c_fails_and_the_running_set_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let plugin = root.path().join("policy.lua");
    std::fs::copy(policy("stack/c_recursion.lua"), &plugin).unwrap();
    let mut served = Served::start(root.path());
    assert_eq!(served.login("plain", "{}")["code"], 7);
    std::fs::copy(policy("stack/deep_top_level.lua"), &plugin).unwrap();
    let reloaded = served.ask("reload", json!([]));
    let message = reloaded["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("policy.lua:") && message.contains("C stack overflow"),
        "{reloaded}"
    );
    assert_eq!(served.login("plain", "{}")["code"], 7);
    assert_eq!(served.finish(), Some(0));
}

/// Python: a recursion limit above the cap is refused where the policy asks for it, and up
/// to the cap every route through C ends in `RecursionError`; the worker answers the next
/// request. Failed on the code before this test: with the limit at 10^6, `repr` and
/// `json.dumps` of a deep list and a `__repr__` that calls itself overflowed the worker's
/// stack and killed the process.
#[cfg(feature = "python")]
#[test]
fn python_recursion_through_c_is_an_error_and_the_worker_goes_on() {
    let mut served = Served::start(&policy("stack/c_recursion.py"));
    let routes = [
        "repr_list",
        "json_dumps",
        "getattr",
        "format",
        "len",
        "repr_method",
        "python_recursion",
    ];
    for route in routes {
        let result = served.login(route, "1000000");
        assert_error(
            &result,
            "c_recursion.py:55: ValueError: sys.setrecursionlimit(1000000) refused: authhost \
             allows at most 5000",
            route,
        );
        assert_eq!(served.login("plain", "")["code"], 7, "after {route}");
    }
    for limit in ["5000", "1000"] {
        for route in routes {
            let result = served.login(route, limit);
            assert_error(&result, "RecursionError: maximum recursion depth", route);
            assert_eq!(served.login("plain", "")["code"], 7, "after {route}");
        }
    }
    assert_eq!(served.finish(), Some(0));
}
