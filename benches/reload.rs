//! Hot reload benchmarks (not tests: they measure and print, they assert nothing).
//!
//! - `latency`: save-to-live, the time from writing a plugin file to the first answer from
//!   the new version, over many saves of a watched plugins directory (target: p50 ≤ 100 ms,
//!   p99 ≤ 250 ms).
//! - `memory`: resident memory (VmRSS) before and after thousands of reloads, each followed
//!   by requests so that every worker builds its interpreters for the new set (target:
//!   growth ≤ 10%).
//!
//! ```text
//! cargo bench --bench reload                      # both, default sizes
//! cargo bench --bench reload -- latency 50        # 50 saves
//! cargo bench --bench reload -- memory 5000       # 5,000 reloads
//! cargo bench --bench reload -- memory 5000 POLICY  # with another policy file, e.g. a .py
//! ```
//!
//! Each prints one JSON line.

use std::path::Path;
use std::time::{Duration, Instant};

use authhost::{Host, UserDecision};
use serde_json::json;

const LOGIN: &str = r#"{"name":"user-1500"}"#;
const NODE: &str = r#"{"public_key":"k"}"#;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this without it, as a quick
    // smoke run with small sizes. Every other word is ours.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let which = args.first().map(String::as_str).unwrap_or("all");
    let (saves, reloads) = if benchmarking { (50, 5000) } else { (3, 50) };
    let count = |default: usize| args.get(1).and_then(|n| n.parse().ok()).unwrap_or(default);
    match which {
        "latency" => save_to_live(count(saves)),
        "memory" => memory(count(reloads), args.get(2).map(Path::new)),
        "all" => {
            save_to_live(saves);
            memory(reloads, None);
        }
        other => eprintln!("unknown benchmark {other:?}: latency [SAVES] or memory [RELOADS]"),
    }
}

fn policy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/reload")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn login_id(host: &Host) -> Option<i64> {
    match host.user_login(LOGIN, NODE).user() {
        Some(UserDecision::UserId(id)) => Some(*id),
        _ => None,
    }
}

/// Saves a new version of a watched plugin `saves` times and times each save until the first
/// answer from it.
fn save_to_live(saves: usize) {
    let template = policy("login_versioned.lua");
    let version = |v: usize| template.replace("local VERSION = 0", &format!("local VERSION = {v}"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("login.lua");
    std::fs::write(&file, version(0)).unwrap();
    let host = Host::builder()
        .plugins(dir.path())
        .workers(2)
        .timeout(Duration::from_secs(10))
        .watch(true)
        .build()
        .expect("the host builds");

    let mut latencies = Vec::with_capacity(saves);
    let mut missed = 0;
    for v in 1..=saves {
        let expected = 1000 + v as i64;
        // Apart enough that each save is its own burst.
        std::thread::sleep(Duration::from_millis(150));
        let saved = Instant::now();
        std::fs::write(&file, version(v)).unwrap();
        let give_up = saved + Duration::from_secs(10);
        loop {
            if login_id(&host) == Some(expected) {
                latencies.push(saved.elapsed());
                break;
            }
            if Instant::now() >= give_up {
                missed += 1;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    latencies.sort();
    let ms = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    let status = host.status();
    println!(
        "{}",
        json!({
            "bench": "save_to_live",
            "saves": saves,
            "missed": missed,
            "debounce_ms": host.config().watch_debounce.as_millis() as u64,
            "p50_ms": round(ms(0.50)),
            "p90_ms": round(ms(0.90)),
            "p99_ms": round(ms(0.99)),
            "max_ms": round(ms(1.0)),
            "min_ms": round(ms(0.0)),
            "reloads": status.reloads,
            "reload_failures": status.reload_failures,
        })
    );
}

/// Reloads `reloads` times, each followed by requests, and reports resident memory. The
/// policy (default `memory_churn.lua`) must answer [`LOGIN`] with user 1500.
fn memory(reloads: usize, policy_file: Option<&Path>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    match policy_file {
        Some(file) => {
            let name = file.file_name().expect("a policy file name");
            std::fs::copy(file, dir.path().join(name)).expect("the policy file copies");
        }
        None => std::fs::write(dir.path().join("policy.lua"), policy("memory_churn.lua")).unwrap(),
    }
    let workers = 2;
    let host = Host::builder()
        .plugins(dir.path())
        .workers(workers)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("the host builds");
    let exercise = |host: &Host| {
        // Enough requests that both workers most likely move to the new set.
        for _ in 0..workers * 2 {
            assert_eq!(login_id(host), Some(1500), "{}", host.status().to_json());
        }
    };
    exercise(&host);
    let at_start = rss_kib();
    // Let allocator arenas and caches reach their working size before the baseline.
    let warm_up = 100.min(reloads);
    for _ in 0..warm_up {
        host.reload().expect("reloads");
        exercise(&host);
    }
    let before = rss_kib();
    let started = Instant::now();
    let mut samples = Vec::new();
    for i in 1..=reloads {
        host.reload().expect("reloads");
        exercise(&host);
        if i % (reloads / 10).max(1) == 0 {
            samples.push(rss_kib());
        }
    }
    let after = rss_kib();
    let status = host.status();
    println!(
        "{}",
        json!({
            "bench": "reload_memory",
            "reloads": reloads,
            "workers": workers,
            "generation": status.generation,
            "seconds": round(started.elapsed().as_secs_f64()),
            "rss_kib_at_start": at_start,
            "rss_kib_before": before,
            "rss_kib_after": after,
            "growth_percent": round((after as f64 - before as f64) * 100.0 / before as f64),
            "rss_kib_samples": samples,
        })
    );
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// This process's resident memory, in KiB, from `/proc/self/status` (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
