//! The HTTP stack alone, for `scripts/bench-http`: the same axum, hyper and tokio as
//! authhost's HTTP front, with as many runtime threads, answering `POST /v1/user_login` by
//! parsing the JSON body and sending a decision-shaped JSON answer, with no policy, pool or
//! decision behind it. What it serves on a machine is the most authhost's front could serve
//! there; the benchmark runs it beside authhost in the same minute.
//!
//! ```sh
//! cargo run --release --example http_ceiling -- PORT
//! ```

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .unwrap_or(8080);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Router::new().route(
            "/v1/user_login",
            post(|body: Bytes| async move {
                // The parse authhost does too: a body that is not JSON is a 400 there.
                let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let code = i64::from(params.is_object()) * 42;
                Json(json!({"decision": "user_id", "code": code, "generation": 1}))
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await
    })
}
