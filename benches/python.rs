//! A trivial Python policy (`benches/policies/trivial.py`, `return 42`), from the limit to the
//! whole pool:
//!
//! - `direct_call_holding_gil`: calling the function from Rust with the GIL held and the
//!   arguments already Python strings: what CPython itself costs, the limit;
//! - `engine_call`: the engine's own call on one thread (taking the GIL, converting the
//!   arguments and the return, deadline tickets), no pool;
//! - `engine_call_threads/N`: the same from N threads at once, taking turns at the GIL;
//! - `pool_blocking/N`: blocking calls through a host with N workers, from N caller threads;
//! - `pool_pipelined/N`: 64 requests in flight through `call_async`, N workers.
//!
//! Run with `cargo bench --bench python`. Compare with the seed-style peer
//! (`python3 ../shared/bench/peer_seed.py --policy trivial --threads 1|2`) run beside it.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authhost::engine::python::PythonEngine;
use authhost::engine::{Call, Engine, PluginSource};
use authhost::{Callback, Host};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyo3::prelude::*;
use pyo3::types::PyString;

fn trivial_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/policies/trivial.py")
}

const LOGIN: &str = r#"{"name":"alice","password":"pw"}"#;
const NODE: &str = r#"{"public_key":"k"}"#;

fn host(workers: usize) -> Host {
    Host::builder()
        .plugins(trivial_policy())
        .db(":memory:")
        .workers(workers)
        .build()
        .expect("the trivial policy loads")
}

/// Worker counts to compare: 1 and the machine's cores (at least 2).
fn worker_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    vec![1, cores.max(2)]
}

fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("python");
    group.throughput(Throughput::Elements(1));

    // The engine first, so that it starts the interpreter (and owns its stdout).
    // Its call, on a thread attached the way workers are:
    let engine = PythonEngine::new();
    let host_config = Host::builder().plugins(trivial_policy()).config().clone();
    let plugins = vec![PluginSource {
        path: trivial_policy(),
        text: std::fs::read_to_string(trivial_policy()).unwrap(),
    }];
    let prepared = engine.prepare(plugins, &host_config).unwrap();
    let args = [LOGIN, NODE];
    engine.run_worker(&mut || {
        let mut instance = prepared.instantiate(&host_config).unwrap();
        let mut ticket = 0;
        group.bench_function("engine_call", |b| {
            b.iter(|| {
                ticket += 1;
                black_box(instance.call(Call {
                    callback: Callback::UserLogin,
                    plugin: 0,
                    args: &args,
                    deadline: Instant::now() + Duration::from_secs(2),
                    ticket,
                }))
            })
        });
    });

    // The same from several threads at once: what taking turns at the GIL costs.
    let threads = worker_counts().last().copied().unwrap_or(2);
    group.bench_function(format!("engine_call_threads/{threads}"), |b| {
        b.iter_custom(|iters| {
            let next = AtomicU64::new(0);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        engine.run_worker(&mut || {
                            let mut instance = prepared.instantiate(&host_config).unwrap();
                            loop {
                                let ticket = next.fetch_add(1, Ordering::Relaxed) + 1;
                                if ticket > iters {
                                    break;
                                }
                                black_box(instance.call(Call {
                                    callback: Callback::UserLogin,
                                    plugin: 0,
                                    args: &args,
                                    deadline: Instant::now() + Duration::from_secs(2),
                                    ticket,
                                }))
                                .unwrap();
                            }
                        })
                    });
                }
            });
            started.elapsed()
        })
    });

    Python::attach(|py| {
        let source = std::fs::read_to_string(trivial_policy()).unwrap();
        let module = PyModule::from_code(
            py,
            &std::ffi::CString::new(source).unwrap(),
            c"trivial.py",
            c"trivial_bench",
        )
        .unwrap();
        let function = module.getattr("on_user_login").unwrap();
        let (login, node) = (PyString::new(py, LOGIN), PyString::new(py, NODE));
        group.bench_function("direct_call_holding_gil", |b| {
            b.iter(|| black_box(function.call1((&login, &node)).unwrap()))
        });
    });
    group.finish();
}

fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("python_pool");
    group.throughput(Throughput::Elements(1));
    for workers in worker_counts() {
        let host = host(workers);
        group.bench_function(format!("blocking/{workers}"), |b| {
            b.iter_custom(|iters| blocking(&host, workers, iters))
        });
        group.bench_function(format!("pipelined/{workers}"), |b| {
            b.iter_custom(|iters| pipelined(&host, 64, iters))
        });
    }
    group.finish();
}

/// `iters` blocking calls spread over `threads` caller threads.
fn blocking(host: &Host, threads: usize, iters: u64) -> Duration {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < iters {
                    let outcome = host.user_login(LOGIN, NODE);
                    assert!(outcome.decision.error_cause().is_none(), "{outcome:?}");
                }
            });
        }
    });
    started.elapsed()
}

/// `iters` calls through `call_async`, `window` of them in flight.
fn pipelined(host: &Host, window: usize, iters: u64) -> Duration {
    let (tokens_back, tokens) = crossbeam_channel::bounded::<()>(window);
    for _ in 0..window {
        tokens_back.send(()).unwrap();
    }
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for _ in 0..iters {
        tokens.recv().unwrap();
        let tokens_back = tokens_back.clone();
        let errors = errors.clone();
        host.call_async(Callback::UserLogin, [LOGIN, NODE], move |outcome| {
            if outcome.decision.error_cause().is_some() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tokens_back.send(());
        });
    }
    for _ in 0..window {
        tokens.recv().unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    elapsed
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = direct, pool
}
criterion_main!(benches);
