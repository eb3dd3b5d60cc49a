//! `GET /metrics`: the host's counters in the Prometheus text exposition (OpenMetrics for a
//! scraper that asks for it), built with `prometheus-client` from one [`Status`] snapshot
//! per scrape.
//!
//! Every metric is named `authhost_…`; counters end in `_total`. The status JSON stays the
//! one source of the numbers: a scrape reads it, so `/status` and `/metrics` always agree.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use serde_json::Value;

use super::Front;
use crate::host::Status;

/// The content type of OpenMetrics text, for a scraper that asks for it (Prometheus does).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of Prometheus's text format, for every other scraper.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: OpenMetrics when `Accept` asks for it, else Prometheus's text format
/// (version 0.0.4), which every Prometheus-compatible reader knows; a reader of that format
/// given OpenMetrics would take every counter for an untyped metric.
pub(super) async fn show(State(front): State<Arc<Front>>, headers: HeaderMap) -> Response {
    let openmetrics = headers.get_all(header::ACCEPT).iter().any(|accept| {
        accept
            .to_str()
            .is_ok_and(|accept| accept.contains("application/openmetrics-text"))
    });
    let status = front.context.host.status();
    let http = Http {
        accepted: front.open.accepted(),
        open: front.open.count() as u64,
    };
    match render(&status, &http) {
        Ok(text) if openmetrics => {
            (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
        }
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            prometheus_text(&text),
        )
            .into_response(),
        Err(_) => super::routes::refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        ),
    }
}

/// OpenMetrics text as Prometheus's text format: a counter's `# HELP` and `# TYPE` lines
/// name its samples (`…_total`), and the lines that format does not have (`# UNIT`,
/// `# EOF`) go. Samples are the same in both.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let declaration = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match declaration {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                if counters.contains(name) {
                    text.push_str("_total");
                }
                if !tail.is_empty() {
                    text.push(' ');
                    text.push_str(tail);
                }
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// A label set of one `(name, value)` pair.
type Labels = Vec<(String, String)>;

/// What the HTTP listener that answers the scrape counts of its own connections.
struct Http {
    accepted: u64,
    open: u64,
}

/// The exposition text of `status` and of the listener's `http` counts.
fn render(status: &Status, http: &Http) -> Result<String, std::fmt::Error> {
    let counters = &status.counters;
    let mut registry = Registry::with_prefix("authhost");
    registry.register(
        "requests",
        "Requests answered, by callback",
        labelled_counters(counters.get("requests"), "callback"),
    );
    registry.register(
        "decisions",
        "Decisions, by kind",
        labelled_counters(counters.get("decisions"), "decision"),
    );
    for (name, help) in [
        (
            "timeouts",
            "Requests answered error because they ran past their deadline",
        ),
        (
            "overloaded",
            "Requests refused at once because the queue was full",
        ),
        (
            "worker_failures",
            "Requests answered error because a worker failed",
        ),
        ("workers_replaced", "Stuck workers abandoned and replaced"),
    ] {
        registry.register(name, help, counter(counters.get(name)));
    }
    registry.register_with_unit(
        "decision_latency",
        "Time from a request's submission to its decision",
        Unit::Seconds,
        Latency::from_json(counters.get("latency_us")),
    );
    registry.register(
        "queue_depth",
        "Requests waiting in the queue",
        gauge(status.queued as u64),
    );
    registry.register("workers", "Worker threads", gauge(status.workers as u64));
    registry.register(
        "ready",
        "1 while the host takes requests",
        gauge(u64::from(status.ready)),
    );
    registry.register(
        "generation",
        "The live plugin set's generation",
        gauge(status.generation),
    );
    registry.register(
        "reloads",
        "Reloads that made a new plugin set live",
        counter(Some(&status.reloads.into())),
    );
    registry.register(
        "reload_failures",
        "Reloads that failed and kept the running set",
        counter(Some(&status.reload_failures.into())),
    );
    let sessions = &status.sessions;
    registry.register(
        "sessions",
        "Session events: opened, refreshed, expired, cleared",
        labelled_counters_of(
            sessions,
            "event",
            &["opened", "refreshed", "expired", "cleared"],
        ),
    );
    registry.register(
        "throttled",
        "Requests a policy refused as throttled (authhost.limits)",
        counter(sessions.get("throttled")),
    );
    let upstream = counters.get("upstream").unwrap_or(&Value::Null);
    registry.register(
        "upstream_calls",
        "Calls policies made to upstream backends, by outcome",
        labelled_counters_of(
            upstream,
            "outcome",
            &[
                "ok",
                "refused",
                "error",
                "timeout",
                "unreachable",
                "blocked",
            ],
        ),
    );
    registry.register(
        "upstream_fallbacks",
        "Fallbacks policies took when an upstream failed",
        counter(upstream.get("fallbacks")),
    );
    registry.register(
        "http_connections",
        "TCP connections this HTTP listener accepted",
        counter(Some(&http.accepted.into())),
    );
    registry.register(
        "http_open",
        "Connections and WebSockets open on this HTTP listener",
        gauge(http.open),
    );
    let mut text = String::with_capacity(8 << 10);
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// A counter holding a JSON count (0 when absent: a counter another part may not have).
fn counter(value: Option<&Value>) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value.and_then(Value::as_u64).unwrap_or(0));
    counter
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

/// One counter per key of a JSON object of counts, labelled `label="key"`.
fn labelled_counters(object: Option<&Value>, label: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    if let Some(Value::Object(counts)) = object {
        for (key, count) in counts {
            family
                .get_or_create(&vec![(label.to_string(), key.clone())])
                .inc_by(count.as_u64().unwrap_or(0));
        }
    }
    family
}

/// One counter per name in `keys`, from `object` (0 when absent), labelled `label="key"`.
fn labelled_counters_of(object: &Value, label: &str, keys: &[&str]) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for key in keys {
        family
            .get_or_create(&vec![(label.to_string(), (*key).to_string())])
            .inc_by(object.get(*key).and_then(Value::as_u64).unwrap_or(0));
    }
    family
}

/// The decision latency histogram, from the status JSON's `latency_us`.
#[derive(Debug, Default)]
struct Latency {
    sum_seconds: f64,
    count: u64,
    /// Upper bound in seconds and the answers in that bucket alone (not cumulative), the
    /// last bound +Inf.
    buckets: Vec<(f64, u64)>,
}

impl Latency {
    fn from_json(latency: Option<&Value>) -> Latency {
        let Some(latency) = latency else {
            return Latency::default();
        };
        let count = latency["count"].as_u64().unwrap_or(0);
        let mut buckets = Vec::new();
        let mut below = 0;
        for bucket in latency["buckets"].as_array().into_iter().flatten() {
            let bound_us = bucket[0].as_u64().unwrap_or(0);
            let cumulative = bucket[1].as_u64().unwrap_or(0);
            buckets.push((bound_us as f64 / 1e6, cumulative.saturating_sub(below)));
            below = cumulative;
        }
        buckets.push((f64::INFINITY, count.saturating_sub(below)));
        Latency {
            sum_seconds: latency["sum"].as_u64().unwrap_or(0) as f64 / 1e6,
            count,
            buckets,
        }
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_by_their_samples_and_drops_what_it_lacks() {
        let openmetrics = "# HELP authhost_requests Requests.\n# TYPE authhost_requests counter\n\
            authhost_requests_total{callback=\"user_login\"} 2\n\
            # HELP authhost_latency_seconds Time.\n# TYPE authhost_latency_seconds histogram\n\
            # UNIT authhost_latency_seconds seconds\nauthhost_latency_seconds_count 2\n\
            # HELP authhost_generation Generation.\n# TYPE authhost_generation gauge\n\
            authhost_generation 1\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP authhost_requests_total Requests.\n# TYPE authhost_requests_total counter\n\
             authhost_requests_total{callback=\"user_login\"} 2\n\
             # HELP authhost_latency_seconds Time.\n# TYPE authhost_latency_seconds histogram\n\
             authhost_latency_seconds_count 2\n\
             # HELP authhost_generation Generation.\n# TYPE authhost_generation gauge\n\
             authhost_generation 1\n"
        );
    }

    #[test]
    fn the_histogram_is_rebuilt_from_cumulative_buckets() {
        let latency = Latency::from_json(Some(&serde_json::json!({
            "buckets": [[50, 2], [100, 3], [250, 3]], "count": 5, "sum": 2_500_000,
        })));
        assert_eq!(latency.count, 5);
        assert_eq!(latency.sum_seconds, 2.5);
        assert_eq!(
            latency.buckets,
            vec![(0.00005, 2), (0.0001, 1), (0.00025, 0), (f64::INFINITY, 2)]
        );
    }
}
