//! `authhost.http`: requests from a policy to an upstream HTTP service (an older auth
//! backend, say), in their language-neutral parts.
//!
//! - **The client** is [`ureq`] 3: blocking (a worker thread waits for its answer, which is
//!   what a worker does anyway), rustls for HTTPS, no async runtime to start in a host that
//!   may be embedded in a C program. Each worker thread has its own agent, and so its own
//!   pool of keep-alive connections, reused from one request to the next.
//! - **The deadline**: a call never runs past the request's deadline, the one the database
//!   functions honour (see [`db::request_deadline`]): `timeout_ms` can only shorten it. Past
//!   it the call fails with an error that says "timeout".
//! - **Confinement**: a confined client (Lua's, and Python's when the operator gave a list)
//!   sends requests only to URLs under the operator's `--upstream` prefixes, redirects
//!   included; anything else is an error naming the refused URL. URLs are normalised first
//!   (dot segments, host case, default ports), so `http://a/api/../admin` is `/admin`.
//! - **Counters**: each call is counted by outcome for `status` ([`UpstreamCounters`]).

// A build without Python leaves out the binding that uses the trusted (unconfined) client.
#![cfg_attr(not(feature = "python"), allow(dead_code))]

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use url::Url;

use super::db;

/// How many redirects one call follows.
const MAX_REDIRECTS: usize = 5;
/// The longest response body a call reads; a larger one is an error, so that a policy cannot
/// be made to hold an unbounded answer in memory.
pub const MAX_BODY: u64 = 4 << 20;
/// The budget of a call made outside any request (there is no deadline to stop it).
const NO_REQUEST_BUDGET: Duration = Duration::from_secs(10);

/// Why a call gave no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is outside the operator's `--upstream` prefixes (or a redirect led there).
    #[error("refused URL {url}: it is not under any allowed --upstream prefix{why}")]
    Refused {
        /// The refused URL, as given or as normalised.
        url: String,
        /// Extra detail (empty, or ": ..." ).
        why: String,
    },
    /// The deadline (the request's, or `timeout_ms`) passed before the answer was read.
    #[error("timeout: {method} {url} did not answer within {budget_ms} ms")]
    Timeout {
        /// The request's method.
        method: String,
        /// The URL asked, without its query (see [`shown`]).
        url: String,
        /// The time the call had.
        budget_ms: u128,
    },
    /// No connection, or the connection failed (DNS, refused, reset, TLS, bad HTTP).
    #[error("unreachable: {method} {url}: {cause}")]
    Unreachable {
        /// The request's method.
        method: String,
        /// The URL asked, without its query (see [`shown`]).
        url: String,
        /// The client's reason.
        cause: String,
    },
    /// The script's arguments are not a request (bad URL, method or header).
    #[error("{0}")]
    Invalid(String),
    /// The operator's settings are not usable (a bad prefix or CA file).
    #[error("upstream settings: {0}")]
    Settings(String),
}

/// A URL the policy was allowed to call, as error messages show it: without its query and
/// fragment, which often carry credentials (a backend asked `?login=…&password=…`) and end
/// up in logs with the error.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let had_query = shown.query().is_some() || shown.fragment().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

/// The operator's settings for `authhost.http`, part of [`crate::Config`].
#[derive(Clone, Debug, Default)]
pub struct UpstreamSettings {
    /// URL prefixes policies may reach (`--upstream`). Lua policies reach nothing when it is
    /// empty; Python policies are confined to it only when it is not empty.
    pub allow: Vec<String>,
    /// A PEM file of CA certificates that replaces the built-in web roots for HTTPS
    /// (`--upstream-ca`), for backends with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The calls' counters, shared by every clone of the settings (one host's).
    pub counters: Arc<UpstreamCounters>,
}

impl UpstreamSettings {
    /// Checks every prefix and the CA file, so a bad one stops the host at start.
    pub fn validate(&self) -> Result<(), HttpError> {
        for prefix in &self.allow {
            Prefix::parse(prefix)?;
        }
        self.root_certs().map(|_| ())
    }

    fn prefixes(&self) -> Result<Vec<Prefix>, HttpError> {
        self.allow.iter().map(|p| Prefix::parse(p)).collect()
    }

    fn root_certs(&self) -> Result<Option<Vec<ureq::tls::Certificate<'static>>>, HttpError> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            HttpError::Settings(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| HttpError::Settings(format!("CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(HttpError::Settings(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        Ok(Some(certs))
    }
}

/// One allowed URL prefix, normalised.
#[derive(Debug, Clone)]
struct Prefix {
    url: Url,
    /// As the operator wrote it.
    text: String,
}

impl Prefix {
    fn parse(text: &str) -> Result<Prefix, HttpError> {
        let bad = |why: &str| HttpError::Settings(format!("--upstream {text:?}: {why}"));
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http and https URLs"));
        }
        if url.host_str().is_none() {
            return Err(bad("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("a prefix holds no user or password"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a prefix holds no query or fragment"));
        }
        Ok(Prefix {
            url,
            text: text.to_string(),
        })
    }

    /// Whether the normalised `url` is under this prefix: same scheme, host and port, and a
    /// path that is the prefix's or below it, segment by segment (`/api` allows `/api` and
    /// `/api/x`, never `/apix`).
    fn allows(&self, url: &Url) -> bool {
        let p = &self.url;
        if url.scheme() != p.scheme()
            || url.host() != p.host()
            || url.port_or_known_default() != p.port_or_known_default()
        {
            return false;
        }
        let (path, prefix) = (url.path(), p.path());
        if prefix.ends_with('/') {
            path.starts_with(prefix)
        } else {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

/// Which URLs a client may ask.
#[derive(Clone, Debug)]
enum Confinement {
    Any,
    Only(Arc<[Prefix]>),
}

/// Counters of `authhost.http` calls by outcome, and of fallbacks policies report; shown by
/// `status` under `"upstream"`.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    ok: AtomicU64,
    refused: AtomicU64,
    error: AtomicU64,
    timeout: AtomicU64,
    unreachable: AtomicU64,
    blocked: AtomicU64,
    fallbacks: AtomicU64,
}

/// How one call ended, for [`UpstreamCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 1xx–3xx response (the upstream said yes).
    Ok,
    /// A 4xx response (the upstream said no).
    Refused,
    /// A 5xx response.
    Error,
    /// The budget ran out.
    Timeout,
    /// No connection, or it failed.
    Unreachable,
    /// Not sent: outside the allowed prefixes.
    Blocked,
}

impl UpstreamCounters {
    /// Counts one call.
    pub fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Refused => &self.refused,
            Outcome::Error => &self.error,
            Outcome::Timeout => &self.timeout,
            Outcome::Unreachable => &self.unreachable,
            Outcome::Blocked => &self.blocked,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one fallback a policy took (`authhost.http.fallback()`).
    pub fn record_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as `(name, value)` pairs, for `status` and for exporters.
    pub fn snapshot(&self) -> [(&'static str, u64); 7] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("ok", get(&self.ok)),
            ("refused", get(&self.refused)),
            ("error", get(&self.error)),
            ("timeout", get(&self.timeout)),
            ("unreachable", get(&self.unreachable)),
            ("blocked", get(&self.blocked)),
            ("fallbacks", get(&self.fallbacks)),
        ]
    }

    /// The counters as a JSON object.
    pub fn to_json(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Value::Object(map)
    }
}

/// A request a policy makes.
#[derive(Debug, Default)]
pub struct HttpRequest {
    /// The method, any case (`GET`, `post`, ...).
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// The call's own budget; the request's deadline still bounds it.
    pub timeout: Option<Duration>,
}

/// The answer to an [`HttpRequest`].
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

/// A worker's client: its agent (connection pool), its confinement, its host's counters.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    confinement: Confinement,
    counters: Arc<UpstreamCounters>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("confinement", &self.confinement)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// This thread's agent per host (keyed by the host's counters), so that every engine
    /// instance a worker has shares one pool of connections across reloads.
    static AGENTS: RefCell<Vec<(std::sync::Weak<UpstreamCounters>, ureq::Agent)>> =
        const { RefCell::new(Vec::new()) };
    /// The client Python's `authhost.http` uses on this thread (see [`Client::install`]).
    static INSTALLED: RefCell<Option<Client>> = const { RefCell::new(None) };
}

impl Client {
    /// A client confined to the operator's prefixes (for Lua): with none, every URL is
    /// refused.
    pub fn confined(settings: &UpstreamSettings) -> Result<Client, HttpError> {
        let prefixes = settings.prefixes()?;
        Client::for_thread(settings, Confinement::Only(prefixes.into()))
    }

    /// A client confined to the operator's prefixes if there are any, free otherwise (for
    /// Python, whose policies are trusted).
    pub fn trusted(settings: &UpstreamSettings) -> Result<Client, HttpError> {
        if settings.allow.is_empty() {
            Client::for_thread(settings, Confinement::Any)
        } else {
            Client::confined(settings)
        }
    }

    fn for_thread(
        settings: &UpstreamSettings,
        confinement: Confinement,
    ) -> Result<Client, HttpError> {
        let agent = AGENTS.with(|agents| -> Result<ureq::Agent, HttpError> {
            let mut agents = agents.borrow_mut();
            agents.retain(|(owner, _)| owner.strong_count() > 0);
            if let Some((_, agent)) = agents
                .iter()
                .find(|(owner, _)| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(&settings.counters)))
            {
                return Ok(agent.clone());
            }
            let agent = new_agent(settings)?;
            agents.push((Arc::downgrade(&settings.counters), agent.clone()));
            Ok(agent)
        })?;
        Ok(Client {
            agent,
            confinement,
            counters: settings.counters.clone(),
        })
    }

    /// Makes this the client of [`Client::installed`] on this thread.
    pub fn install(self) {
        INSTALLED.with(|c| *c.borrow_mut() = Some(self));
    }

    /// The client installed on this thread, if any.
    pub fn installed() -> Option<Client> {
        INSTALLED.with(|c| c.borrow().clone())
    }

    /// The operator's prefixes this client is held to (empty when it is free), so that a
    /// policy can build its URLs from them (`authhost.http.allowed`).
    pub fn allowed(&self) -> Vec<String> {
        match &self.confinement {
            Confinement::Any => Vec::new(),
            Confinement::Only(prefixes) => prefixes.iter().map(|p| p.text.clone()).collect(),
        }
    }

    /// The host's counters, for `authhost.http.fallback()`.
    pub fn counters(&self) -> &UpstreamCounters {
        &self.counters
    }

    /// Sends `request` and reads its answer, following redirects that stay allowed, all by
    /// the request's deadline (or `request.timeout`, if sooner).
    pub fn request(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let started = Instant::now();
        let own = request.timeout.map(|t| started + t);
        let deadline = match (db::request_deadline(), own) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => started + NO_REQUEST_BUDGET,
        };
        let method_name = request.method.to_ascii_uppercase();
        let mut method = ureq::http::Method::from_bytes(method_name.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("bad method {:?}", request.method)))?;
        let mut url = self.check(&request.url)?;
        let mut body = request.body.clone();
        let timeout = |method: &ureq::http::Method, url: &Url| HttpError::Timeout {
            method: method.to_string(),
            url: shown(url),
            budget_ms: deadline.saturating_duration_since(started).as_millis(),
        };
        for hop in 0..=MAX_REDIRECTS {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                self.counters.record(Outcome::Timeout);
                return Err(timeout(&method, &url));
            }
            let mut builder = ureq::http::Request::builder()
                .method(method.clone())
                .uri(url.as_str());
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            let sent = builder
                .body(body.clone().unwrap_or_default())
                .map_err(|e| HttpError::Invalid(format!("bad request: {e}")))?;
            let sent = self
                .agent
                .configure_request(sent)
                .timeout_global(Some(remaining))
                .build();
            let response = self.agent.run(sent).and_then(|mut response| {
                let status = response.status().as_u16();
                let headers: Vec<(String, String)> = response
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let mut bytes = Vec::new();
                response
                    .body_mut()
                    .as_reader()
                    .take(MAX_BODY + 1)
                    .read_to_end(&mut bytes)
                    .map_err(ureq::Error::Io)?;
                Ok(HttpResponse {
                    status,
                    headers,
                    body: bytes,
                })
            });
            let response = match response {
                Ok(response) => response,
                Err(e) => {
                    let timed_out = matches!(e, ureq::Error::Timeout(_))
                        || Instant::now() >= deadline
                        || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut);
                    if timed_out {
                        self.counters.record(Outcome::Timeout);
                        return Err(timeout(&method, &url));
                    }
                    self.counters.record(Outcome::Unreachable);
                    return Err(HttpError::Unreachable {
                        method: method.to_string(),
                        url: shown(&url),
                        cause: e.to_string(),
                    });
                }
            };
            if response.body.len() as u64 > MAX_BODY {
                self.counters.record(Outcome::Unreachable);
                return Err(HttpError::Unreachable {
                    method: method.to_string(),
                    url: shown(&url),
                    cause: format!("the response body is larger than {MAX_BODY} bytes"),
                });
            }
            let location = response
                .headers
                .iter()
                .find(|(k, _)| k == "location")
                .map(|(_, v)| v.clone());
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            match location {
                Some(location) if redirect && hop < MAX_REDIRECTS => {
                    let next = url.join(&location).map_err(|e| {
                        self.counters.record(Outcome::Unreachable);
                        HttpError::Unreachable {
                            method: method.to_string(),
                            url: shown(&url),
                            cause: format!("bad redirect Location {location:?}: {e}"),
                        }
                    })?;
                    url = self.check(next.as_str())?;
                    // As browsers do: 303, and 301/302 after a POST, become a GET.
                    if response.status == 303
                        || (matches!(response.status, 301 | 302)
                            && method == ureq::http::Method::POST)
                    {
                        method = ureq::http::Method::GET;
                        body = None;
                    }
                }
                _ => {
                    self.counters.record(match response.status {
                        400..=499 => Outcome::Refused,
                        500.. => Outcome::Error,
                        _ => Outcome::Ok,
                    });
                    return Ok(response);
                }
            }
        }
        unreachable!("the last hop returns")
    }

    /// The normalised URL, if this client may ask it.
    fn check(&self, text: &str) -> Result<Url, HttpError> {
        let refused = |url: &str, why: &str| {
            self.counters.record(Outcome::Blocked);
            HttpError::Refused {
                url: url.to_string(),
                why: why.to_string(),
            }
        };
        let url =
            Url::parse(text).map_err(|e| HttpError::Invalid(format!("bad URL {text:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Invalid(format!(
                "bad URL {text:?}: only http and https URLs"
            )));
        }
        let Confinement::Only(prefixes) = &self.confinement else {
            return Ok(url);
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused(text, ": it holds a user or password"));
        }
        // An encoded slash or backslash is one segment to the URL, and maybe two to the
        // server: such a path cannot be checked against a prefix.
        let path = url.path().to_ascii_lowercase();
        if path.contains("%2f") || path.contains("%5c") {
            return Err(refused(text, ": its path holds an encoded slash"));
        }
        if prefixes.iter().any(|p| p.allows(&url)) {
            Ok(url)
        } else {
            Err(refused(url.as_str(), ""))
        }
    }
}

fn new_agent(settings: &UpstreamSettings) -> Result<ureq::Agent, HttpError> {
    let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
    if let Some(certs) = settings.root_certs()? {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
    }
    let config = ureq::Agent::config_builder()
        // Statuses are answers the policy reads, not errors.
        .http_status_as_error(false)
        // Redirects are followed here, where each one is checked against the prefixes.
        .max_redirects(0)
        .max_redirects_will_error(false)
        // The operator's prefixes name the upstream itself: no proxy from the environment.
        .proxy(None)
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_show_urls_without_their_query() {
        let url = Url::parse("http://10.0.0.5:8080/auth?login=alice&password=s3cret#x").unwrap();
        assert_eq!(shown(&url), "http://10.0.0.5:8080/auth?…");
        let plain = Url::parse("https://a.example/auth").unwrap();
        assert_eq!(shown(&plain), "https://a.example/auth");
        let error = HttpError::Unreachable {
            method: "GET".into(),
            url: shown(&url),
            cause: "connection refused".into(),
        };
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    fn confined(prefixes: &[&str]) -> Client {
        let settings = UpstreamSettings {
            allow: prefixes.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        Client::confined(&settings).unwrap()
    }

    #[test]
    fn prefixes_match_normalised_urls_segment_by_segment() {
        let client = confined(&["http://a.example/api/", "https://b.example/auth"]);
        for allowed in [
            "http://a.example/api/",
            "http://a.example/api/auth?login=x",
            "http://A.EXAMPLE:80/api/x/../y",
            "https://b.example/auth",
            "https://b.example/auth/sub",
            "https://b.example:443/auth?x=1",
        ] {
            assert!(client.check(allowed).is_ok(), "{allowed} should be allowed");
        }
        for refused in [
            "http://a.example/api/../admin",
            "http://a.example/api/%2e%2e/admin",
            "http://a.example/api/..%2fadmin",
            "http://a.example/api/..%5Cadmin",
            "http://a.example/api",
            "http://a.example.evil/api/",
            "http://a.example@evil.example/api/",
            "http://user:pw@a.example/api/",
            "http://a.example:8080/api/",
            "https://a.example/api/",
            "https://b.example/authx",
            "https://b.example/",
        ] {
            let error = client.check(refused).unwrap_err();
            assert!(
                matches!(error, HttpError::Refused { .. }),
                "{refused} should be refused, got {error}"
            );
            assert!(error.to_string().contains("refused URL"), "{error}");
        }
    }

    #[test]
    fn no_prefixes_refuse_everything_when_confined_and_nothing_when_trusted() {
        let settings = UpstreamSettings::default();
        let lua = Client::confined(&settings).unwrap();
        assert!(matches!(
            lua.check("http://127.0.0.1/"),
            Err(HttpError::Refused { .. })
        ));
        let python = Client::trusted(&settings).unwrap();
        assert!(python.check("http://127.0.0.1/").is_ok());
        assert!(matches!(
            python.check("file:///etc/passwd"),
            Err(HttpError::Invalid(_))
        ));
    }

    #[test]
    fn bad_prefixes_are_settings_errors() {
        for bad in [
            "a.example/api",
            "ftp://a.example/",
            "http://u@a.example/",
            "http://a.example/?q",
        ] {
            let settings = UpstreamSettings {
                allow: vec![bad.into()],
                ..Default::default()
            };
            assert!(
                matches!(settings.validate(), Err(HttpError::Settings(_))),
                "{bad}"
            );
        }
    }
}
