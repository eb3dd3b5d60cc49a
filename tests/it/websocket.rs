//! The HTTP front's `/ws` WebSocket, spoken to by a real client (Python's `websockets`,
//! `tests/http/ws_pipe.py`): one JSON-RPC message per text frame, with the session methods
//! and the bad-input rules of the other listeners.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use crate::http_programs::{gate, http_service, port_of, script, venv_python, Service};

use crate::common::in_both_languages;

/// The area's policies, for `in_both_languages`.
fn policy(file: &str) -> PathBuf {
    gate(file)
}

in_both_languages!(
    auth_then_token_then_clear_then_refused,
    a_frame_that_is_not_json_gets_32700_and_the_connection_goes_on,
);

fn auth_then_token_then_clear_then_refused(policy: &Path) {
    let service = http_service(policy, &[]);
    let mut ws = WebSocket::connect(&service);
    let login = |password: &str| json!({"login_info": {"name": "alice", "password": password}, "node_info": {}});

    let refused = ws.call("auth", login("not her password"));
    assert_eq!(refused["result"]["decision"], "not_authorized", "{refused}");
    assert!(refused["result"].get("token").is_none(), "{refused}");

    let opened = ws.call("auth", login("wonderland"));
    let result = &opened["result"];
    assert_eq!(result["decision"], "user_id", "{opened}");
    assert_eq!(result["code"], 7, "{opened}");
    assert!(
        result["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{opened}"
    );
    let token = result["token"].as_str().expect("a token").to_string();

    let checked = ws.call("auth_token", json!({"token": token}));
    assert_eq!(checked["result"]["decision"], "user_id", "{checked}");
    assert_eq!(checked["result"]["code"], 7, "{checked}");
    assert!(
        checked["result"]["expires_in"].as_u64().is_some(),
        "{checked}"
    );

    let cleared = ws.call("auth_clear", json!({"token": token}));
    assert_eq!(cleared["result"], json!({"cleared": true}), "{cleared}");

    let after = ws.call("auth_token", json!({"token": token}));
    assert_eq!(after["result"]["decision"], "not_authorized", "{after}");
    assert_eq!(after["result"]["code"], -1, "{after}");
    assert!(after["result"]["error"].is_string(), "{after}");
}

fn a_frame_that_is_not_json_gets_32700_and_the_connection_goes_on(policy: &Path) {
    let service = http_service(policy, &[]);
    let mut ws = WebSocket::connect(&service);
    let answer = ws.send("this is not JSON");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    let answer = ws.send(r#"{"jsonrpc":"2.0","id":1,"method":"no_such_method"}"#);
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    // The same connection still answers requests.
    let login =
        json!({"login_info": r#"{"name":"alice","password":"wonderland"}"#, "node_info": "{}"});
    let answer = ws.call("user_login", login);
    assert_eq!(answer["result"]["decision"], "user_id", "{answer}");
    assert_eq!(answer["result"]["code"], 7, "{answer}");
}

// ---------------------------------------------------------------------------------------

/// A WebSocket connection to `/ws`, through `ws_pipe.py`: a frame out, the frame that
/// answers it back.
struct WebSocket {
    child: Child,
    frames_out: ChildStdin,
    frames_in: BufReader<ChildStdout>,
    next_id: u64,
}

impl WebSocket {
    fn connect(service: &Service) -> WebSocket {
        let url = format!("ws://127.0.0.1:{}/ws", port_of(service));
        let mut child = Command::new(venv_python())
            .arg(script("ws_pipe.py"))
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the WebSocket client");
        let frames_out = child.stdin.take().unwrap();
        let frames_in = BufReader::new(child.stdout.take().unwrap());
        WebSocket {
            child,
            frames_out,
            frames_in,
            next_id: 1,
        }
    }

    /// Sends `text` as one text frame and returns the answering frame, as JSON.
    fn send(&mut self, text: &str) -> Value {
        assert!(!text.contains('\n'), "one line per frame");
        writeln!(self.frames_out, "{text}").expect("writing to the WebSocket client");
        let mut line = String::new();
        self.frames_in
            .read_line(&mut line)
            .expect("reading from the WebSocket client");
        assert!(
            !line.is_empty(),
            "the WebSocket client stopped without an answer to {text}"
        );
        let frame: String = serde_json::from_str(&line).expect("one JSON string per frame");
        serde_json::from_str(&frame)
            .unwrap_or_else(|e| panic!("the answer frame is not JSON ({e}): {frame}"))
    }

    /// A JSON-RPC request with named params; returns the response, checking its id.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.send(&request.to_string());
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
