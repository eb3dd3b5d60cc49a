//! `GET /`: a small status page for a person: the live generation, each plugin with its
//! language and callbacks, the last load error in full, and the counters.
//!
//! One self-contained HTML document (inline style, no script, no external asset). Every
//! text from the host (file names, error messages, counter names) is HTML-escaped. The
//! elements tests and tools look for have ids: `generation`, `ready`, `plugins` (a table, a
//! row per plugin, cells of class `file`, `language`, `callbacks`), `last-error` (present only
//! when there is one) and `counters`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Front;
use crate::host::Status;

/// `GET /`.
pub(super) async fn show(State(front): State<Arc<Front>>) -> Response {
    let html = render(&front.context.host.status());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// The page for `status`.
fn render(status: &Status) -> String {
    let mut html = String::with_capacity(8 << 10);
    html.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>authhost</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:60em}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}",
        "pre{background:#fee;padding:1em;white-space:pre-wrap}",
        "</style></head><body>\n<h1>authhost</h1>\n"
    ));
    let _ = writeln!(
        html,
        "<p>Generation <strong id=\"generation\">{}</strong>, <span id=\"ready\">{}</span>, \
         {} worker(s), {} reload(s), {} failed.</p>",
        status.generation,
        if status.ready { "ready" } else { "not ready" },
        status.workers,
        status.reloads,
        status.reload_failures,
    );
    html.push_str(
        "<h2>Plugins</h2>\n<table id=\"plugins\"><tr><th>file</th><th>language</th>\
         <th>callbacks</th></tr>\n",
    );
    for plugin in &status.plugins {
        let callbacks: Vec<&str> = plugin.callbacks.iter().map(|c| c.function_name()).collect();
        let _ = writeln!(
            html,
            "<tr class=\"plugin\"><td class=\"file\">{}</td><td class=\"language\">{}</td>\
             <td class=\"callbacks\">{}</td></tr>",
            escape(&plugin.file.display().to_string()),
            escape(plugin.language.name()),
            escape(&callbacks.join(", ")),
        );
    }
    html.push_str("</table>\n<h2>Last load error</h2>\n");
    match &status.last_error {
        Some(error) => {
            let _ = writeln!(html, "<pre id=\"last-error\">{}</pre>", escape(error));
        }
        None => html.push_str("<p>None.</p>\n"),
    }
    html.push_str("<h2>Counters</h2>\n<table id=\"counters\">\n");
    let mut rows = Vec::new();
    flatten("", &status.counters, &mut rows);
    flatten("sessions.", &status.sessions, &mut rows);
    for (name, value) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(&name),
            escape(&value)
        );
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

/// The leaves of a JSON object as `("a.b", "value")` rows; the latency buckets (an array)
/// stay one row.
fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                flatten(&format!("{prefix}{key}."), value, rows);
            }
        }
        Value::String(text) => rows.push((prefix.trim_end_matches('.').to_string(), text.clone())),
        other => rows.push((prefix.trim_end_matches('.').to_string(), other.to_string())),
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_host_text_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn nested_counters_flatten_to_dotted_names() {
        let mut rows = Vec::new();
        flatten(
            "",
            &serde_json::json!({"requests": {"user_login": 3}, "timeouts": 1, "s": "<b>"}),
            &mut rows,
        );
        assert_eq!(
            rows,
            vec![
                ("requests.user_login".to_string(), "3".to_string()),
                ("timeouts".to_string(), "1".to_string()),
                ("s".to_string(), "<b>".to_string()),
            ]
        );
    }
}
