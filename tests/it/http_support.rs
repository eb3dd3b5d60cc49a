//! Helpers for the tests of the HTTP front: a real HTTP client (ureq) that returns every
//! status instead of failing on 4xx/5xx, and its answers.
#![allow(dead_code)]

use serde_json::Value;

use crate::service::PATIENCE;
// The HTTP tests' service is the shared one.
pub use crate::service::Service;

/// An HTTP answer: status, headers (lowercase names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The value of header `name`, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }
}

/// A keep-alive HTTP client that hands back 4xx and 5xx answers like any other.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("an HTTP answer");
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response
            .body_mut()
            .read_to_string()
            .expect("reading the body"),
    }
}

/// `GET url` with `headers`.
pub fn get(client: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.call())
}

/// `POST url` with `body` of `content_type`.
pub fn post(client: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Answer {
    answer(
        client
            .post(url)
            .header("content-type", content_type)
            .send(body),
    )
}

/// `POST url` with a JSON body.
pub fn post_json(client: &ureq::Agent, url: &str, body: &Value) -> Answer {
    post(client, url, "application/json", body.to_string().as_bytes())
}
