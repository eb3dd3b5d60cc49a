//! Host settings as text: a JSON object or environment variables, for embedders that cannot
//! call [`HostBuilder`] themselves (the C ABI, the SQLite loadable extension).
//!
//! ```
//! let builder = authhost::settings::from_json(r#"{"plugins":"policies","workers":2}"#)?;
//! assert_eq!(builder.config().workers, 2);
//! assert_eq!(builder.config().db, std::path::Path::new("authhost.db")); // the default
//! # Ok::<(), authhost::Error>(())
//! ```
//!
//! | JSON key | environment | meaning | default |
//! | --- | --- | --- | --- |
//! | `plugins` | `AUTHHOST_PLUGINS` | a plugin file or directory | `plugins` |
//! | `db` | `AUTHHOST_DB` | the policies' SQLite database | `authhost.db` |
//! | `workers` | `AUTHHOST_WORKERS` | worker threads (1 to 256, [`crate::MAX_WORKERS`]) | the machine's cores (at most 256) |
//! | `timeout_ms` | `AUTHHOST_TIMEOUT_MS` | time from submission to decision (≥ 1) | 2000 |
//! | `session_idle_s` | `AUTHHOST_SESSION_IDLE_S` | a session's inactivity timeout (≥ 1) | 300 |
//! | `session_max_s` | `AUTHHOST_SESSION_MAX_S` | a session's absolute lifetime (≥ 1) | 43200 |
//! | `watch` | `AUTHHOST_WATCH` (`1`/`0`) | reload when a plugin file changes | on |
//! | `upstream` | `AUTHHOST_UPSTREAM` (space-separated) | URL prefixes `authhost.http` may reach (a string or a list) | none |
//! | `upstream_ca` | `AUTHHOST_UPSTREAM_CA` | a PEM file of CAs `authhost.http` trusts instead of the web roots | none |
//! | `confine_python_sql` | `AUTHHOST_CONFINE_PYTHON_SQL` (`1`/`0`) | confine Python policies' SQL as Lua's (no ATTACH, VACUUM, extensions, file pragmas) | off |
//!
//! Watching is on by default here, unlike [`HostBuilder`]: these embedders are long-running
//! database nodes whose operators expect a saved policy to go live without a restart.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::host::{Host, HostBuilder};

/// The JSON object's fields. Unknown keys are refused: a misspelt `"worker": 4` must not
/// silently run with the defaults.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    plugins: Option<String>,
    db: Option<String>,
    workers: Option<u64>,
    timeout_ms: Option<u64>,
    session_idle_s: Option<u64>,
    session_max_s: Option<u64>,
    watch: Option<bool>,
    upstream: Option<OneOrMany>,
    upstream_ca: Option<String>,
    confine_python_sql: Option<bool>,
}

/// `"upstream"`: one prefix or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Settings {
    fn into_builder(self) -> Result<HostBuilder> {
        let mut builder = Host::builder()
            .watch(self.watch.unwrap_or(true))
            .confine_python_sql(self.confine_python_sql.unwrap_or(false));
        if let Some(plugins) = self.plugins {
            builder = builder.plugins(plugins);
        }
        if let Some(db) = self.db {
            builder = builder.db(db);
        }
        if let Some(workers) = self.workers {
            if workers == 0 {
                return Err(Error::Config("workers must be at least 1".into()));
            }
            let workers = usize::try_from(workers)
                .map_err(|_| Error::Config(format!("workers: {workers} is too many")))?;
            builder = builder.workers(workers);
        }
        if let Some(timeout_ms) = self.timeout_ms {
            if timeout_ms == 0 {
                return Err(Error::Config("timeout_ms must be at least 1".into()));
            }
            builder = builder.timeout(Duration::from_millis(timeout_ms));
        }
        for (name, value) in [
            ("session_idle_s", self.session_idle_s),
            ("session_max_s", self.session_max_s),
        ] {
            match value {
                Some(0) => return Err(Error::Config(format!("{name} must be at least 1"))),
                Some(seconds) if name == "session_idle_s" => {
                    builder = builder.session_idle(Duration::from_secs(seconds))
                }
                Some(seconds) => builder = builder.session_max(Duration::from_secs(seconds)),
                None => {}
            }
        }
        let prefixes = match self.upstream {
            None => Vec::new(),
            Some(OneOrMany::One(prefix)) => vec![prefix],
            Some(OneOrMany::Many(prefixes)) => prefixes,
        };
        for prefix in prefixes {
            builder = builder.upstream(prefix);
        }
        if let Some(ca) = self.upstream_ca {
            builder = builder.upstream_ca(ca);
        }
        // A bad prefix is a settings error here, before any plugin loads.
        builder
            .config()
            .upstream
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(builder)
    }
}

/// A builder from a JSON object such as
/// `{"plugins":"policies","db":"authhost.db","workers":4,"timeout_ms":2000}`; missing keys
/// keep their defaults.
///
/// # Failure
///
/// [`Error::Config`] naming the problem: text that is not a JSON object, an unknown key, a
/// value of the wrong type, or `workers`/`timeout_ms` of 0.
pub fn from_json(text: &str) -> Result<HostBuilder> {
    let settings: Settings = serde_json::from_str(text)
        .map_err(|e| Error::Config(format!("the settings are not a valid JSON object: {e}")))?;
    settings.into_builder()
}

/// A builder from the environment: `AUTHHOST_PLUGINS`, `AUTHHOST_DB`, `AUTHHOST_WORKERS`,
/// `AUTHHOST_TIMEOUT_MS`, `AUTHHOST_WATCH`; unset variables keep their defaults.
///
/// # Failure
///
/// [`Error::Config`] naming the variable when `AUTHHOST_WORKERS` or `AUTHHOST_TIMEOUT_MS` is not
/// a positive integer, or a variable is not valid Unicode.
pub fn from_env() -> Result<HostBuilder> {
    from_vars(|name| std::env::var(name))
}

/// [`from_env`] with the variables read through `var`, so that tests need not touch the
/// process environment.
fn from_vars(
    var: impl Fn(&str) -> std::result::Result<String, std::env::VarError>,
) -> Result<HostBuilder> {
    let get = |name: &str| match var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::Config(format!("{name} is not valid Unicode")))
        }
    };
    let number = |name: &str| -> Result<Option<u64>> {
        get(name)?
            .map(|text| {
                text.trim().parse::<u64>().map_err(|_| {
                    Error::Config(format!("{name}={text:?} is not a positive integer"))
                })
            })
            .transpose()
    };
    let flag = |name: &str| -> Result<Option<bool>> {
        get(name)?
            .map(|text| match text.trim() {
                "1" | "true" | "on" => Ok(true),
                "0" | "false" | "off" => Ok(false),
                _ => Err(Error::Config(format!("{name}={text:?} is not 1 or 0"))),
            })
            .transpose()
    };
    Settings {
        plugins: get("AUTHHOST_PLUGINS")?,
        db: get("AUTHHOST_DB")?,
        workers: number("AUTHHOST_WORKERS")?,
        timeout_ms: number("AUTHHOST_TIMEOUT_MS")?,
        session_idle_s: number("AUTHHOST_SESSION_IDLE_S")?,
        session_max_s: number("AUTHHOST_SESSION_MAX_S")?,
        watch: flag("AUTHHOST_WATCH")?,
        upstream: get("AUTHHOST_UPSTREAM")?
            .map(|text| OneOrMany::Many(text.split_whitespace().map(String::from).collect())),
        upstream_ca: get("AUTHHOST_UPSTREAM_CA")?,
        confine_python_sql: flag("AUTHHOST_CONFINE_PYTHON_SQL")?,
    }
    .into_builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fills_the_builder_and_keeps_defaults() {
        let builder =
            from_json(r#"{"plugins":"p.lua","db":":memory:","workers":3,"timeout_ms":250}"#)
                .unwrap();
        let config = builder.config();
        assert_eq!(config.plugins, std::path::Path::new("p.lua"));
        assert_eq!(config.db, std::path::Path::new(":memory:"));
        assert_eq!(config.workers, 3);
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert!(config.watch);
        let quiet = from_json(r#"{"watch":false}"#).unwrap();
        assert!(!quiet.config().watch);
        assert!(!quiet.config().confine_python_sql);
        let confined = from_json(r#"{"confine_python_sql":true}"#).unwrap();
        assert!(confined.config().confine_python_sql);
        let defaults = from_json("{}").unwrap();
        assert_eq!(defaults.config().timeout, Duration::from_millis(2000));
        assert_eq!(defaults.config().plugins, std::path::Path::new("plugins"));
    }

    #[test]
    fn session_settings_come_from_json() {
        let config = from_json(r#"{"session_idle_s":60,"session_max_s":3600}"#).unwrap();
        assert_eq!(config.config().session_idle, Duration::from_secs(60));
        assert_eq!(config.config().session_max, Duration::from_secs(3600));
        let defaults = from_json("{}").unwrap();
        assert_eq!(defaults.config().session_idle, Duration::from_secs(300));
        assert_eq!(
            defaults.config().session_max,
            Duration::from_secs(12 * 3600)
        );
    }

    #[test]
    fn bad_json_names_the_problem() {
        for (text, expected) in [
            ("not json", "not a valid JSON object"),
            ("[1]", "not a valid JSON object"),
            (r#"{"worker":2}"#, "unknown field `worker`"),
            (r#"{"workers":"2"}"#, "invalid type"),
            (r#"{"workers":-1}"#, "invalid value"),
            (r#"{"workers":0}"#, "workers must be at least 1"),
            (r#"{"timeout_ms":0}"#, "timeout_ms must be at least 1"),
            (r#"{"watch":"yes"}"#, "invalid type"),
            (
                r#"{"session_idle_s":0}"#,
                "session_idle_s must be at least 1",
            ),
            (r#"{"session_max_s":0}"#, "session_max_s must be at least 1"),
        ] {
            let error = from_json(text).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn environment_variables_fill_the_builder() {
        let vars = |name: &str| match name {
            "AUTHHOST_PLUGINS" => Ok("policies".to_string()),
            "AUTHHOST_WORKERS" => Ok("5".to_string()),
            "AUTHHOST_TIMEOUT_MS" => Ok(" 900 ".to_string()),
            _ => Err(std::env::VarError::NotPresent),
        };
        let builder = from_vars(vars).unwrap();
        assert_eq!(builder.config().plugins, std::path::Path::new("policies"));
        assert_eq!(builder.config().db, std::path::Path::new("authhost.db"));
        assert_eq!(builder.config().workers, 5);
        assert_eq!(builder.config().timeout, Duration::from_millis(900));
        assert!(builder.config().watch, "watching is on unless turned off");
        let off = |name: &str| match name {
            "AUTHHOST_WATCH" => Ok("0".to_string()),
            _ => Err(std::env::VarError::NotPresent),
        };
        assert!(!from_vars(off).unwrap().config().watch);
        let bad = |name: &str| match name {
            "AUTHHOST_WORKERS" => Ok("many".to_string()),
            _ => Err(std::env::VarError::NotPresent),
        };
        let error = from_vars(bad).map(|_| ()).unwrap_err().to_string();
        assert!(
            error.contains(r#"AUTHHOST_WORKERS="many" is not a positive integer"#),
            "{error}"
        );
    }

    #[test]
    fn upstream_takes_one_prefix_or_a_list_and_refuses_bad_ones() {
        let one = from_json(r#"{"upstream":"http://127.0.0.1:9/auth"}"#).unwrap();
        assert_eq!(one.config().upstream.allow, ["http://127.0.0.1:9/auth"]);
        let many =
            from_json(r#"{"upstream":["http://a.example/","https://b.example/x"]}"#).unwrap();
        assert_eq!(many.config().upstream.allow.len(), 2);
        let bad = from_json(r#"{"upstream":"ftp://a.example/"}"#).unwrap_err();
        assert!(bad.to_string().contains("only http and https"), "{bad}");
        let vars = from_vars(|name| match name {
            "AUTHHOST_UPSTREAM" => Ok("http://a.example/ http://b.example/".into()),
            _ => Err(std::env::VarError::NotPresent),
        })
        .unwrap();
        assert_eq!(vars.config().upstream.allow.len(), 2);
    }
}
