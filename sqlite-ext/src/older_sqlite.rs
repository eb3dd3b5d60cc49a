//! Loading into an SQLite older than the one rusqlite's bindings describe.
//!
//! rusqlite 0.43 ships bindings for SQLite 3.45.3 and refuses, at load time, any loader whose
//! `sqlite3_libversion_number()` is lower. Debian 12's SQLite (the `sqlite3` shell, Python's
//! `sqlite3` module) is 3.40.1, and rusqlite cannot be built against 3.40's headers (it calls
//! functions added in 3.41 and 3.44).
//!
//! `sqlite3_api_routines` is a table of function pointers that only ever grows at its end, so
//! an older loader's table is a prefix of the 3.45.3 one. This module copies that prefix into
//! a full-size table whose newer entries stay NULL, and reports a version rusqlite accepts
//! only while rusqlite checks it; afterwards `sqlite3_libversion_number()` is the loader's
//! again.
//!
//! Of the functions missing from 3.40, rusqlite needs `sqlite3_get_clientdata` and
//! `sqlite3_set_clientdata` for every connection it opens (it keeps its callbacks there):
//! `client_data` supplies them. The others (`sqlite3_is_interrupted`, `sqlite3_stmt_explain`)
//! are reached only through rusqlite APIs that authhost does not use; were one called,
//! rusqlite would panic on the NULL entry, and the SQL function's call would fail with that
//! message (`authhost::sqlite` catches panics).

use std::ffi::c_int;
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rusqlite::ffi::{self, sqlite3_api_routines};

use crate::client_data;

/// Entries in the table rusqlite's bindings describe (SQLite 3.45.3).
const ENTRIES: usize = size_of::<sqlite3_api_routines>() / size_of::<usize>();

/// The version that added `sqlite3_get_clientdata` and `sqlite3_set_clientdata`.
const CLIENT_DATA_ADDED: c_int = 3_044_000;

/// The first entry each version after 3.40 added, newest first.
const ADDED_AFTER_3_40: [(c_int, usize); 3] = [
    (
        CLIENT_DATA_ADDED,
        offset_of!(sqlite3_api_routines, get_clientdata),
    ),
    (3_043_000, offset_of!(sqlite3_api_routines, stmt_explain)),
    (3_041_000, offset_of!(sqlite3_api_routines, is_interrupted)),
];

/// The oldest SQLite whose table this module knows how to extend.
pub const OLDEST: c_int = 3_040_000;

/// The loader's `sqlite3_libversion_number`, as an address (0 before the first load).
static LOADER_VERSION: AtomicUsize = AtomicUsize::new(0);
/// Set while rusqlite checks the version.
static CHECKING: AtomicBool = AtomicBool::new(false);

/// Why the loader's SQLite cannot be used.
pub fn unsupported(version: c_int) -> String {
    format!(
        "authhost needs SQLite {} or later; this program runs SQLite {}",
        version_text(OLDEST),
        version_text(version)
    )
}

fn version_text(version: c_int) -> String {
    format!(
        "{}.{}.{}",
        version / 1_000_000,
        version / 1000 % 1000,
        version % 1000
    )
}

/// How many entries the table of SQLite `version` has, if this module knows.
fn entries_of(version: c_int) -> Option<usize> {
    if version >= ffi::SQLITE_VERSION_NUMBER {
        return Some(ENTRIES);
    }
    if version < OLDEST {
        return None;
    }
    let mut entries = ENTRIES;
    for (added_in, offset) in ADDED_AFTER_3_40 {
        if version < added_in {
            entries = offset / size_of::<usize>();
        }
    }
    Some(entries)
}

/// A table rusqlite accepts, made from the loader's `api`: the loader's own when it is new
/// enough, otherwise a full-size copy (leaked: rusqlite keeps no pointer to it, but it is
/// small and made once per load). Run `init` with it; [`checking`] brackets that call.
///
/// # Safety
///
/// `api` is the table SQLite passed to the extension's entry point.
pub unsafe fn compatible_table(
    api: *mut sqlite3_api_routines,
) -> Result<*mut sqlite3_api_routines, String> {
    if api.is_null() {
        return Err("SQLite passed no API routines".into());
    }
    // SAFETY: the loader's table, valid for the whole process.
    let Some(version_fn) = (unsafe { (*api).libversion_number }) else {
        return Err("SQLite's API routines have no sqlite3_libversion_number".into());
    };
    // SAFETY: SQLite's own function.
    let version = unsafe { version_fn() };
    if version >= ffi::SQLITE_VERSION_NUMBER {
        return Ok(api);
    }
    let entries = entries_of(version).ok_or_else(|| unsupported(version))?;
    // All-NULL entries are valid `Option<fn>` values.
    // SAFETY: the table is only `Option<unsafe extern "C" fn>` fields, for which zero is None.
    let table: &'static mut sqlite3_api_routines =
        Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    // SAFETY: the loader's table has at least `entries` pointer-sized entries (it is the table
    // of `version`), and ours has ENTRIES ≥ entries.
    unsafe {
        std::ptr::copy_nonoverlapping(
            api as *const usize,
            table as *mut sqlite3_api_routines as *mut usize,
            entries,
        )
    };
    if version < CLIENT_DATA_ADDED && !client_data::install(table) {
        return Err("SQLite's API routines have no sqlite3_close".into());
    }
    LOADER_VERSION.store(version_fn as usize, Ordering::Release);
    table.libversion_number = Some(reported_version);
    Ok(table)
}

/// Runs `check` (rusqlite's initialization) while [`reported_version`] reports a version
/// rusqlite accepts.
pub fn checking<T>(check: impl FnOnce() -> T) -> T {
    CHECKING.store(true, Ordering::Release);
    let result = check();
    CHECKING.store(false, Ordering::Release);
    result
}

/// `sqlite3_libversion_number` for rusqlite: the loader's version, except while rusqlite
/// checks it at load time.
unsafe extern "C" fn reported_version() -> c_int {
    let loader = LOADER_VERSION.load(Ordering::Acquire);
    let real = if loader == 0 {
        0
    } else {
        // SAFETY: the address of the loader's sqlite3_libversion_number, stored above.
        let loader: unsafe extern "C" fn() -> c_int = unsafe { std::mem::transmute(loader) };
        // SAFETY: SQLite's own function.
        unsafe { loader() }
    };
    if CHECKING.load(Ordering::Acquire) {
        real.max(ffi::SQLITE_VERSION_NUMBER)
    } else {
        real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_tables_are_prefixes() {
        assert_eq!(entries_of(3_045_003), Some(ENTRIES));
        assert_eq!(entries_of(3_050_000), Some(ENTRIES));
        assert_eq!(entries_of(3_044_002), Some(ENTRIES));
        assert_eq!(entries_of(3_043_001), Some(ENTRIES - 2));
        assert_eq!(entries_of(3_042_000), Some(ENTRIES - 3));
        assert_eq!(entries_of(3_040_001), Some(ENTRIES - 4));
        assert_eq!(entries_of(3_039_004), None);
        assert_eq!(
            offset_of!(sqlite3_api_routines, value_encoding) / size_of::<usize>(),
            ENTRIES - 5,
            "value_encoding (3.40) is the last entry of the 3.40 table"
        );
        assert_eq!(
            unsupported(3_037_002),
            "authhost needs SQLite 3.40.0 or later; this program runs SQLite 3.37.2"
        );
    }
}
