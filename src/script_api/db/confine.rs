//! SQL confinement: what a Lua policy's SQL may not do (contract §5). A Lua policy is
//! sandboxed, and SQL must not be its way out: no other database files (`ATTACH`, and
//! `VACUUM`, which attaches one), no extensions, no pragma that touches files or the
//! schema's safety.
//!
//! One authorizer is installed on every connection at open. It refuses only while a
//! confined policy statement is being prepared ([`Confined`] is entered by the Lua binding,
//! and the database layer marks its own preparation of the policy's SQL), so authhost's own
//! statements (WAL set-up, transactions, snapshots) and Python's SQL are not affected, and
//! a cached statement costs nothing. The reason for a refusal is kept for the error message.

use std::cell::{Cell, RefCell};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Read-only pragmas a policy may use to look at its own schema.
const ALLOWED_PRAGMAS: [&str; 13] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "collation_list",
    "data_version",
    "user_version",
];

thread_local! {
    /// The language of the confined policy whose SQL runs on this thread now, if any.
    static CONFINED: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Whether the statement being prepared now is the policy's own, under confinement.
    static CHECKING: Cell<bool> = const { Cell::new(false) };
    /// What the authorizer refused last, and in which language's policy, for the message.
    static REFUSED: RefCell<Option<(&'static str, String)>> = const { RefCell::new(None) };
}

/// While alive, the SQL a policy runs on this thread is confined. Entered by the Lua
/// binding around each `authhost.db` call, and by the Python engine around each call, load
/// and `setup()` when `Config::confine_python_sql` asks for it.
pub struct Confined {
    previous: Option<&'static str>,
}

impl Confined {
    /// Confines this thread's policy SQL until the guard drops; `language` ("Lua",
    /// "Python") is named in refusals.
    pub fn enter(language: &'static str) -> Confined {
        Confined {
            previous: CONFINED.with(|c| c.replace(Some(language))),
        }
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        CONFINED.with(|c| c.set(self.previous));
    }
}

/// Whether this thread's policy SQL is confined now.
pub(super) fn is_confined() -> bool {
    CONFINED.with(|c| c.get()).is_some()
}

/// Runs `prepare`, which prepares the policy's own SQL, with the authorizer checking it if
/// the thread is confined.
pub(super) fn preparing<T>(prepare: impl FnOnce() -> T) -> T {
    let confined = is_confined();
    if confined {
        REFUSED.with(|r| r.borrow_mut().take());
    }
    let previous = CHECKING.with(|c| c.replace(confined));
    let result = prepare();
    CHECKING.with(|c| c.set(previous));
    result
}

/// The last refusal on this thread, taken: the policy's language and the reason.
pub(super) fn take_refusal() -> Option<(&'static str, String)> {
    REFUSED.with(|r| r.borrow_mut().take())
}

/// The authorizer installed on every connection.
pub(super) fn authorize(context: AuthContext<'_>) -> Authorization {
    if !CHECKING.with(|c| c.get()) {
        return Authorization::Allow;
    }
    match refusal(&context.action) {
        None => Authorization::Allow,
        Some(reason) => {
            let language = CONFINED.with(|c| c.get()).unwrap_or("confined");
            REFUSED.with(|r| *r.borrow_mut() = Some((language, reason)));
            Authorization::Deny
        }
    }
}

fn refusal(action: &AuthAction<'_>) -> Option<String> {
    match action {
        AuthAction::Attach { filename: "" } => Some(
            "VACUUM (it attaches a temporary database; a policy must not rebuild the file)".into(),
        ),
        AuthAction::Attach { filename } => Some(format!(
            "ATTACH or VACUUM INTO {filename:?} (a policy reaches only its own database)"
        )),
        AuthAction::Detach { database_name } => Some(format!(
            "DETACH {database_name:?} (a policy reaches only its own database)"
        )),
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Some("load_extension() (a policy loads no code into the process)".into())
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let read_only = name != "user_version" || pragma_value.is_none();
            if ALLOWED_PRAGMAS.contains(&name.as_str()) && read_only {
                None
            } else {
                Some(format!(
                    "PRAGMA {pragma_name} (only these read-only pragmas are allowed: {})",
                    ALLOWED_PRAGMAS.join(", ")
                ))
            }
        }
        // An action rusqlite could not name: an `ATTACH` whose file name is a bound
        // parameter arrives so (no name yet at prepare time), and anything else unknown is
        // refused too: only a known, allowed action passes.
        AuthAction::Unknown { code, .. } if *code == rusqlite::ffi::SQLITE_ATTACH => {
            Some("ATTACH (a policy reaches only its own database)".into())
        }
        AuthAction::Unknown { code, .. } => Some(format!(
            "an SQLite action this build does not know (code {code})"
        )),
        _ => None,
    }
}
