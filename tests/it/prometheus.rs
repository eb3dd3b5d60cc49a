//! `GET /metrics` read by Prometheus's own parsers (`prometheus_client`, through
//! `tests/http/parse_metrics.py`): the text parses, with each metric's type, in the
//! Prometheus text format a plain scrape gets and in the OpenMetrics a scraper that asks for
//! it gets; and its counters move with the requests sent, by callback and by decision.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::http_programs::{
    client, gate, http_get, http_service, post_json, script, venv_python, Answer, Service,
};

#[test]
fn metrics_parse_and_count_requests_by_callback_and_decisions_by_kind() {
    let service = http_service(&gate("login.lua"), &[]);
    let v1 = |callback: &str, body: Value| -> Answer {
        post_json(
            &client(),
            &format!("{}/v1/{callback}", service.http()),
            &body,
        )
    };
    let before = Metrics::scrape(&service, Format::Prometheus);

    let login = |name: &str, password: &str| json!({"login_info": {"name": name, "password": password}, "node_info": {}});
    let mut sent = Vec::new();
    for (name, password) in [
        ("alice", "wonderland"),
        ("alice", "wonderland"),
        ("alice", "wonderland"),
        ("alice", "nope"),
        ("bob", "wonderland"),
        ("mallory", "wonderland"),
    ] {
        sent.push(v1("user_login", login(name, password)));
    }
    sent.push(v1("new_node", json!({"node_info": {"public_key": "k"}})));
    sent.push(v1("new_node", json!({"node_info": {"public_key": "k"}})));
    sent.push(http_get(
        &service,
        "/auth?login=alice&password=wonderland",
        &[],
    ));
    sent.push(v1(
        "user_signup",
        json!({"signup_info": {}, "node_info": {}}),
    ));
    // /v1/… answers 200 whatever the decision; /auth lets alice in.
    for answer in &sent {
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    let after = Metrics::scrape(&service, Format::Prometheus);
    let moved = |sample: &str, labels: &[(&str, &str)]| {
        after.value(sample, labels) - before.value(sample, labels)
    };
    assert_eq!(moved(REQUESTS, &[("callback", "user_login")]), 7.0);
    assert_eq!(moved(REQUESTS, &[("callback", "new_node")]), 2.0);
    assert_eq!(moved(REQUESTS, &[("callback", "user_signup")]), 1.0);
    assert_eq!(moved(DECISIONS, &[("decision", "user_id")]), 4.0);
    assert_eq!(moved(DECISIONS, &[("decision", "not_authorized")]), 2.0);
    assert_eq!(moved(DECISIONS, &[("decision", "error")]), 1.0);
    assert_eq!(moved(DECISIONS, &[("decision", "secondary")]), 2.0);
    assert_eq!(moved(DECISIONS, &[("decision", "new_user")]), 1.0);
    // Every decision went into the latency histogram.
    assert_eq!(after.histogram_count() - before.histogram_count(), 10.0);
    // Counters are declared as counters; the live generation is there.
    assert_eq!(after.family_type(REQUESTS), "counter");
    assert_eq!(after.family_type(DECISIONS), "counter");
    assert_eq!(after.value(GENERATION, &[]), 1.0);
    // Read as 0 until the stuck-workers counter exists (shared design).
    assert_eq!(after.value(WORKERS_REPLACED, &[]), 0.0);

    // A scraper that asks for OpenMetrics (as Prometheus does) gets it, strictly valid, with
    // the same counts.
    let open = Metrics::scrape(&service, Format::OpenMetrics);
    assert_eq!(open.family_type(REQUESTS), "counter");
    for (labels, sample) in [
        (&[("callback", "user_login")], REQUESTS),
        (&[("decision", "user_id")], DECISIONS),
    ] {
        assert_eq!(open.value(sample, labels), after.value(sample, labels));
    }
}

/// The two expositions a scrape can ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    /// Prometheus's text format (version 0.0.4): what a scrape without `Accept` gets.
    Prometheus,
    /// OpenMetrics 1.0, asked for with `Accept: application/openmetrics-text`.
    OpenMetrics,
}

/// Requests answered, by `callback`.
const REQUESTS: &str = "authhost_requests_total";
/// Decisions, by `decision` kind.
const DECISIONS: &str = "authhost_decisions_total";
/// The live plugin set's generation.
const GENERATION: &str = "authhost_generation";
/// Stuck workers abandoned and replaced.
const WORKERS_REPLACED: &str = "authhost_workers_replaced_total";

/// The metric families of one scrape, as the parser read them.
struct Metrics {
    families: Vec<Value>,
}

impl Metrics {
    /// `GET /metrics` in `format`, parsed by prometheus_client's parser of that format; a
    /// text it refuses fails the test.
    fn scrape(service: &Service, format: Format) -> Metrics {
        let accept = match format {
            Format::Prometheus => "text/plain",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0",
        };
        let answer = http_get(service, "/metrics", &[("Accept", accept)]);
        assert_eq!(answer.status, 200, "{answer:?}");
        let content_type = answer.header("content-type").unwrap_or_default();
        let text = &answer.body;
        let expected_type = match format {
            Format::Prometheus => "text/plain; version=0.0.4",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0",
        };
        assert!(
            content_type.starts_with(expected_type),
            "asked for {format:?} with Accept: {accept}, got {content_type}"
        );
        let mut parser = Command::new(venv_python())
            .arg(script("parse_metrics.py"))
            .args((format == Format::OpenMetrics).then_some("--openmetrics"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the Prometheus parser");
        parser
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = parser.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "prometheus_client refuses /metrics: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        Metrics {
            families: serde_json::from_slice(&output.stdout).expect("the parser's JSON"),
        }
    }

    fn samples(&self) -> impl Iterator<Item = &Value> {
        self.families
            .iter()
            .flat_map(|f| f["samples"].as_array().into_iter().flatten())
    }

    /// The sum of the samples named `name` whose labels include `labels`; fails the test
    /// when there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples()
            .filter(|s| s["name"] == name)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap_or(f64::NAN))
            .collect();
        assert!(
            !matching.is_empty(),
            "no sample {name} {labels:?} in {}",
            serde_json::to_string_pretty(&self.families).unwrap()
        );
        matching.iter().sum()
    }

    /// The type the exposition declares for the family of the sample `name`.
    fn family_type(&self, name: &str) -> &str {
        self.families
            .iter()
            .find(|f| {
                f["samples"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == name))
            })
            .and_then(|f| f["type"].as_str())
            .unwrap_or_else(|| panic!("no family holds {name}"))
    }

    /// The count of the (only) histogram: every `_count` sample of histogram families.
    fn histogram_count(&self) -> f64 {
        let histograms: Vec<&Value> = self
            .families
            .iter()
            .filter(|f| f["type"] == "histogram")
            .collect();
        assert_eq!(histograms.len(), 1, "one latency histogram: {histograms:?}");
        histograms[0]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"].as_str().is_some_and(|n| n.ends_with("_count")))
            .map(|s| s["value"].as_f64().unwrap_or(f64::NAN))
            .sum()
    }
}
