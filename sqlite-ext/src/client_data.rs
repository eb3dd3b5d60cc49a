//! `sqlite3_get_clientdata` and `sqlite3_set_clientdata` for a loader older than SQLite 3.44,
//! which has neither.
//!
//! rusqlite 0.43 keeps every callback it installs on a connection (busy handler, progress
//! handler, authorizer, hooks) as the connection's client data, so that SQLite frees it when
//! the connection closes; it also clears that slot when a connection opens (its default busy
//! timeout). Through a 3.40 loader's table those entries are NULL, and rusqlite panics on
//! them: every policy database connection (`authhost.db`) failed to open. These functions
//! take the entries' place: the data lives in a process-wide map keyed by connection and
//! name, and [`close`] (put in place of the table's `sqlite3_close`) runs the destructors once
//! the connection is really closed, as SQLite 3.44 does.
//!
//! Only connections opened by this extension's rusqlite reach these functions (the loading
//! program's own connections call its SQLite directly), and rusqlite closes its connections
//! with `sqlite3_close`, never `sqlite3_close_v2`.
//!
//! Nothing here may unwind into SQLite: a poisoned lock is taken over (the map is consistent
//! between statements), and a destructor's panic is caught.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi::{self, sqlite3, sqlite3_api_routines};

/// A destructor as `sqlite3_set_clientdata` takes it.
type Destructor = Option<unsafe extern "C" fn(*mut c_void)>;

/// One connection's datum under one name.
struct Datum {
    data: *mut c_void,
    destructor: Destructor,
}

// SAFETY: the pointer is rusqlite's boxed callback, which rusqlite requires to be `Send`
// (`set_clientdata<T: Send>`); this module only stores it and hands it to its destructor.
unsafe impl Send for Datum {}

/// The client data of every open connection, by connection address and name.
static DATA: Mutex<Option<HashMap<(usize, CString), Datum>>> = Mutex::new(None);

/// The loader's own `sqlite3_close`.
static LOADER_CLOSE: OnceLock<unsafe extern "C" fn(*mut sqlite3) -> c_int> = OnceLock::new();

/// Fills `table`'s client-data entries with this module's, and routes `sqlite3_close`
/// through [`close`] so the data is freed with its connection. Returns false (and changes
/// nothing) when the table has no `sqlite3_close`.
pub fn install(table: &mut sqlite3_api_routines) -> bool {
    let Some(loader_close) = table.close else {
        return false;
    };
    // One SQLite per process: a later load brings the same function.
    let _ = LOADER_CLOSE.set(loader_close);
    table.get_clientdata = Some(get_clientdata);
    table.set_clientdata = Some(set_clientdata);
    table.close = Some(close);
    true
}

/// Runs `f` on the map, whatever a panic elsewhere left the lock in.
fn with_data<T>(f: impl FnOnce(&mut HashMap<(usize, CString), Datum>) -> T) -> T {
    let mut guard = DATA.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Runs a datum's destructor, outside the map's lock (a destructor may drop a connection's
/// callback, and so, in principle, anything). A panic in it is caught: these functions are
/// called from SQLite's C, where nothing may unwind (the datum is then leaked).
fn destroy(datum: Datum) {
    if let (Some(destructor), false) = (datum.destructor, datum.data.is_null()) {
        let _ = std::panic::catch_unwind(|| {
            // SAFETY: the destructor and data were given together to sqlite3_set_clientdata,
            // and each datum leaves the map (and is destroyed) exactly once.
            unsafe { destructor(datum.data) }
        });
    }
}

/// `sqlite3_get_clientdata`: the datum stored under `name`, or NULL.
unsafe extern "C" fn get_clientdata(db: *mut sqlite3, name: *const c_char) -> *mut c_void {
    if name.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: SQLite's contract: a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) };
    with_data(|data| {
        data.get(&(db as usize, name.to_owned()))
            .map_or(std::ptr::null_mut(), |datum| datum.data)
    })
}

/// `sqlite3_set_clientdata`: stores `value` under `name` (NULL removes it); the datum it
/// replaces is destroyed, as SQLite does.
unsafe extern "C" fn set_clientdata(
    db: *mut sqlite3,
    name: *const c_char,
    value: *mut c_void,
    destructor: Destructor,
) -> c_int {
    if name.is_null() {
        return ffi::SQLITE_MISUSE;
    }
    // SAFETY: SQLite's contract: a NUL-terminated name.
    let key = (db as usize, unsafe { CStr::from_ptr(name) }.to_owned());
    let replaced = with_data(|data| {
        if value.is_null() {
            data.remove(&key)
        } else {
            data.insert(
                key,
                Datum {
                    data: value,
                    destructor,
                },
            )
        }
    });
    if let Some(old) = replaced {
        destroy(old);
    }
    ffi::SQLITE_OK
}

/// `sqlite3_close` for rusqlite: the loader's, then, once the connection is gone, its client
/// data's destructors.
unsafe extern "C" fn close(db: *mut sqlite3) -> c_int {
    let Some(loader_close) = LOADER_CLOSE.get() else {
        return ffi::SQLITE_MISUSE;
    };
    // SAFETY: forwarded to SQLite's own sqlite3_close with the caller's connection.
    let rc = unsafe { loader_close(db) };
    if rc == ffi::SQLITE_OK {
        let gone: Vec<Datum> = with_data(|data| {
            let keys: Vec<_> = data
                .keys()
                .filter(|k| k.0 == db as usize)
                .cloned()
                .collect();
            keys.iter().filter_map(|key| data.remove(key)).collect()
        });
        gone.into_iter().for_each(destroy);
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DESTROYED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_destroyed(data: *mut c_void) {
        // SAFETY: the tests store boxed u32s.
        drop(unsafe { Box::from_raw(data as *mut u32) });
        DESTROYED.fetch_add(1, Ordering::SeqCst);
    }

    unsafe extern "C" fn fake_close(_: *mut sqlite3) -> c_int {
        ffi::SQLITE_OK
    }

    fn boxed(value: u32) -> *mut c_void {
        Box::into_raw(Box::new(value)) as *mut c_void
    }

    /// Set, replace, read, remove and close, as rusqlite uses them; each datum is destroyed
    /// exactly once.
    #[test]
    fn data_lives_until_replaced_removed_or_closed() {
        let _ = LOADER_CLOSE.set(fake_close);
        let (a, b) = (0x1000 as *mut sqlite3, 0x2000 as *mut sqlite3);
        let name = c"sqlite3_busy_handler";
        // SAFETY: valid names and boxed data with their destructor.
        unsafe {
            assert_eq!(
                set_clientdata(a, name.as_ptr(), boxed(1), Some(count_destroyed)),
                0
            );
            set_clientdata(b, name.as_ptr(), boxed(2), Some(count_destroyed));
            assert_eq!(*(get_clientdata(a, name.as_ptr()) as *const u32), 1);
            set_clientdata(a, name.as_ptr(), boxed(3), Some(count_destroyed));
            assert_eq!(DESTROYED.load(Ordering::SeqCst), 1, "the replaced datum");
            assert_eq!(*(get_clientdata(a, name.as_ptr()) as *const u32), 3);
            set_clientdata(b, name.as_ptr(), std::ptr::null_mut(), None);
            assert_eq!(DESTROYED.load(Ordering::SeqCst), 2, "the removed datum");
            assert!(get_clientdata(b, name.as_ptr()).is_null());
            assert_eq!(close(a), 0);
            assert_eq!(
                DESTROYED.load(Ordering::SeqCst),
                3,
                "the closed connection's"
            );
            assert!(get_clientdata(a, name.as_ptr()).is_null());
        }
    }
}
