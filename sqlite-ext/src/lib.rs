//! authhost as a SQLite loadable extension: any SQLite program can ask the policies in SQL.
//!
//! ```text
//! sqlite> .load target/release/libauthhost_sqlite
//! sqlite> SELECT authhost_configure('{"plugins":"plugins","db":"authhost.db","workers":4}');
//! sqlite> SELECT user_login('{"name":"alice"}', '{"public_key":"pk-office"}');
//! 1
//! ```
//!
//! SQLite finds the entry point from the file name (`libauthhost_sqlite` → strip `lib`, keep
//! the letters, lowercase → `sqlite3_authhostsqlite_init`), so no entry-point argument is
//! needed. The extension registers, on each connection that loads it, the SQL functions of
//! [`authhost::sqlite`] plus `authhost_configure(json)`.
//!
//! **One host per process**, shared by every connection that loaded the extension. It starts
//! at `authhost_configure('{"plugins":…,"db":…,"workers":N,"timeout_ms":N}')`, or, when that
//! was not called, at the first call of any function, from `AUTHHOST_PLUGINS`, `AUTHHOST_DB`,
//! `AUTHHOST_WORKERS` and `AUTHHOST_TIMEOUT_MS` (defaults as in the contract). Once it runs,
//! `authhost_configure` with the same settings is a no-op and with other settings an error.
//! If the host cannot start (no plugins, a plugin that does not load), each call fails with
//! an SQL error that says why, and the next call tries again: with the settings of the last
//! `authhost_configure` once that was called (so its failure's cause is what every later call
//! reports), never then with the environment's. A panic inside authhost is an SQL error that
//! quotes it, never an unwinding across SQLite.
//!
//! **The loader's SQLite, never a second copy**: rusqlite is built with
//! `loadable_extension`, so every SQLite call — the functions' own and those of the
//! policies' `authhost.db` connections — goes through the `sqlite3_api_routines` the loading
//! program passes at load time.
//!
//! **Python policies** (cargo feature `python`, on when authhost is built with it) run on the
//! loading program's interpreter when it has one: the extension links libpython3.11, but a
//! program that already runs Python (Debian's `python3.11`, which exports libpython's symbols
//! from its executable, or a Python linked to `libpython3.11.so`) comes first in symbol
//! lookup, so the policies see that program's modules and `builtins`. A program without Python
//! (the `sqlite3` shell) gets an interpreter of authhost's own. In a Python program, give each
//! thread its own connection: a policy needs the GIL, and a connection shared by threads can
//! have a thread that holds the GIL wait for the connection's mutex, held by the statement
//! waiting for that policy (it ends at the timeout, as `error`).
//!
//! The extension loads permanently (`SQLITE_OK_LOAD_PERMANENTLY`): its worker threads run its
//! code, so it must stay mapped after the connection that loaded it closes.
//!
//! Logs go to stderr, at the level in `AUTHHOST_LOG` (`warn` by default).

mod client_data;
mod older_sqlite;

use std::ffi::{c_char, c_int};
use std::sync::{Mutex, OnceLock};

use authhost::{Config, Host, HostBuilder};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{ffi, Connection};

/// The process's host, once started.
static HOST: OnceLock<Host> = OnceLock::new();
/// Serializes starting the host, so that two connections' first calls start one host.
static STARTING: Mutex<()> = Mutex::new(());
/// The settings `authhost_configure` was last given while no host ran: what later calls
/// start the host from (see [`process_host`]).
static CONFIGURED: Mutex<Option<String>> = Mutex::new(None);

/// The entry point SQLite derives from the file name `libauthhost_sqlite.so`.
///
/// # Safety
///
/// Called by SQLite's extension loader with a connection, an error out-pointer and its API
/// routines.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_authhostsqlite_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // Nothing may unwind into SQLite's C frames: a panic fails the load, saying why.
    let loaded = authhost::sqlite::guard("sqlite3_authhostsqlite_init", || {
        // SAFETY: the table SQLite passed to this entry point.
        let api = match unsafe { older_sqlite::compatible_table(p_api) } {
            Ok(api) => api,
            Err(message) => {
                // SAFETY: SQLite's error out-pointer.
                unsafe { set_load_error(p_api, pz_err_msg, &message) };
                return Ok(ffi::SQLITE_ERROR);
            }
        };
        // SAFETY: the loader's arguments, with a table rusqlite accepts.
        Ok(older_sqlite::checking(|| unsafe {
            Connection::extension_init2(db, pz_err_msg, api, register)
        }))
    });
    loaded.unwrap_or_else(|panicked| {
        // SAFETY: SQLite's error out-pointer and table.
        unsafe { set_load_error(p_api, pz_err_msg, &panicked.to_string()) };
        ffi::SQLITE_ERROR
    })
}

/// Reports a load failure the way SQLite expects: a message in memory from the loader's
/// `sqlite3_malloc`, which SQLite frees.
///
/// # Safety
///
/// `pz_err_msg` is NULL or SQLite's error out-pointer; `api` is NULL or the loader's table.
unsafe fn set_load_error(
    api: *mut ffi::sqlite3_api_routines,
    pz_err_msg: *mut *mut c_char,
    message: &str,
) {
    if pz_err_msg.is_null() || api.is_null() {
        return;
    }
    // SAFETY: the loader's table.
    let Some(malloc) = (unsafe { (*api).malloc }) else {
        return;
    };
    let bytes = message.as_bytes();
    // SAFETY: SQLite's allocator; the copy fits the allocation, which ends with a NUL.
    unsafe {
        let text = malloc(bytes.len() as c_int + 1) as *mut u8;
        if text.is_null() {
            return;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), text, bytes.len());
        *text.add(bytes.len()) = 0;
        *pz_err_msg = text as *mut c_char;
    }
}

/// Registers the functions on the loading connection; `Ok(true)` loads permanently.
fn register(conn: Connection) -> rusqlite::Result<bool> {
    start_logging();
    authhost::sqlite::register_functions_with(&conn, process_host)?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function("authhost_configure", 1, flags, |ctx| {
        authhost::sqlite::guard("authhost_configure", || {
            let settings = match ctx.get_raw(0) {
                ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|_| {
                    sql_error("authhost_configure(): the settings are not valid UTF-8".into())
                })?,
                _ => {
                    return Err(sql_error(
                        "authhost_configure(): the settings must be TEXT (a JSON object)".into(),
                    ))
                }
            };
            if HOST.get().is_none() {
                *CONFIGURED.lock().unwrap_or_else(|e| e.into_inner()) = Some(settings.to_string());
            }
            let host = start_configured(settings).map_err(sql_error)?;
            Ok(host.status().to_json().to_string())
        })
    })?;
    Ok(true)
}

/// The process's host: the running one, else one started from the settings of the last
/// `authhost_configure` call, else from the environment.
fn process_host() -> Result<Host, String> {
    if let Some(host) = HOST.get() {
        return Ok(host.clone());
    }
    // Once authhost_configure was called, its settings are the ones meant: a call after it
    // failed tries them again and reports their failure, never starts something else.
    let configured = CONFIGURED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(settings) = configured {
        return start_configured(&settings);
    }
    let builder = authhost::settings::from_env().map_err(|e| format!("authhost: {e}"))?;
    start(builder, "the environment")
}

/// Starts the process's host from `authhost_configure`'s JSON `settings`.
fn start_configured(settings: &str) -> Result<Host, String> {
    let builder = authhost::settings::from_json(settings)
        .map_err(|e| format!("authhost_configure(): {e}"))?;
    start(builder, "authhost_configure()")
}

/// Starts the process's host from `builder`, or returns the running one if its settings are
/// the same. `source` names where the settings came from, for messages.
fn start(builder: HostBuilder, source: &str) -> Result<Host, String> {
    thread_local! {
        static STARTING_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    // A plugin that calls these SQL functions while its set loads (from setup(), or a Python
    // module's top level) would otherwise wait for its own start forever.
    if STARTING_HERE.with(|here| here.replace(true)) {
        return Err(format!(
            "{source}: authhost is still starting on this thread (a plugin called an authhost \
             SQL function while loading)"
        ));
    }
    struct Started;
    impl Drop for Started {
        fn drop(&mut self) {
            STARTING_HERE.with(|here| here.set(false));
        }
    }
    let _started = Started;
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(host) = HOST.get() {
        // From the environment: whatever runs is the host. From authhost_configure: only if
        // it is what was asked for.
        if source == "the environment" || same_settings(host.config(), builder.config()) {
            return Ok(host.clone());
        }
        return Err(format!(
            "{source}: authhost is already running with other settings ({}); configure it \
             before the first call, with the same settings in every connection",
            describe(host.config())
        ));
    }
    let host = builder
        .build()
        .map_err(|e| format!("authhost could not start (settings from {source}): {e}"))?;
    log::info!("authhost started: {}", describe(host.config()));
    Ok(HOST.get_or_init(|| host).clone())
}

fn same_settings(a: &Config, b: &Config) -> bool {
    a.plugins == b.plugins && a.db == b.db && a.workers == b.workers && a.timeout == b.timeout
}

fn describe(config: &Config) -> String {
    format!(
        "plugins {}, db {}, {} workers, timeout {} ms",
        config.plugins.display(),
        config.db.display(),
        config.workers,
        config.timeout.as_millis()
    )
}

fn sql_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

/// Logs to stderr at `AUTHHOST_LOG` (default `warn`), unless the program has a logger.
fn start_logging() {
    let env = env_logger::Env::new().filter_or("AUTHHOST_LOG", "warn");
    let _ = env_logger::Builder::from_env(env).try_init();
}
