//! The pool against its limit, with the trivial Lua policy: a direct call of the Lua function
//! on one thread (no pool at all), the blocking round trip through the pool, and pipelined
//! throughput with many requests in flight.
//!
//! `cargo bench --bench pool`

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authhost::{Callback, Host};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn trivial_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/policies/trivial.lua")
}

fn host(workers: usize) -> Host {
    Host::builder()
        .plugins(trivial_policy())
        .db(":memory:")
        .workers(workers)
        .build()
        .expect("the trivial policy loads")
}

/// The limit: the same Lua function called directly, on this thread, with the same arguments.
fn direct_call(c: &mut Criterion) {
    let lua = mlua::Lua::new();
    lua.load(std::fs::read_to_string(trivial_policy()).unwrap())
        .exec()
        .unwrap();
    let function: mlua::Function = lua.globals().get("on_user_login").unwrap();
    let (login, node) = (
        r#"{"name":"alice","password":"pw"}"#,
        r#"{"public_key":"k"}"#,
    );
    c.bench_function("lua/direct_call", |b| {
        b.iter(|| function.call::<mlua::Value>((login, node)).unwrap())
    });
}

fn blocking_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("lua/blocking_round_trip");
    for workers in [1, 2] {
        let host = host(workers);
        group.bench_with_input(BenchmarkId::from_parameter(workers), &host, |b, host| {
            b.iter(|| {
                host.user_login(
                    r#"{"name":"alice","password":"pw"}"#,
                    r#"{"public_key":"k"}"#,
                )
            })
        });
    }
    group.finish();
}

/// Many requests in flight through the non-blocking API; the time per request is the
/// dispatch cost amortized over the pool.
fn pipelined(c: &mut Criterion) {
    let mut group = c.benchmark_group("lua/pipelined");
    const BATCH: u64 = 20_000;
    group.throughput(Throughput::Elements(BATCH));
    for workers in [1, 2] {
        let host = host(workers);
        group.bench_with_input(BenchmarkId::from_parameter(workers), &host, |b, host| {
            b.iter_custom(|iterations| {
                // Keep fewer requests in flight than the queue holds, so none is refused.
                let window = 512 * workers as u64;
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let done = Arc::new(AtomicU64::new(0));
                    let started = Instant::now();
                    for submitted in 0..BATCH {
                        while submitted - done.load(Ordering::Relaxed) >= window {
                            std::hint::spin_loop();
                        }
                        let done = done.clone();
                        host.call_async(
                            Callback::UserLogin,
                            [
                                r#"{"name":"alice","password":"pw"}"#,
                                r#"{"public_key":"k"}"#,
                            ],
                            move |_| {
                                done.fetch_add(1, Ordering::Relaxed);
                            },
                        );
                    }
                    while done.load(Ordering::Relaxed) < BATCH {
                        std::hint::spin_loop();
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, direct_call, blocking_round_trip, pipelined);
criterion_main!(benches);
