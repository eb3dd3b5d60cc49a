//! The C ABI: every `extern "C"` function of authhost, in one module, each named `authhost_*`.
//!
//! `cargo build --release` builds it into `target/release/libauthhost.so`; the header is
//! `include/authhost.h` (generated from this module by cbindgen; a test keeps it current).
//!
//! ```c
//! char *error = NULL;
//! AuthhostHost *host = authhost_open("{\"plugins\":\"plugins\",\"workers\":4}", &error);
//! if (!host) { fprintf(stderr, "%s\n", error); authhost_string_free(error); return 1; }
//! int64_t code = authhost_user_login(host, login_json, node_json, NULL);
//! if (code > 0) { /* log in as user `code` */ }
//! authhost_close(host);
//! ```
//!
//! # Rules
//!
//! - Strings in are NUL-terminated UTF-8, borrowed for the call only. A NULL pointer or
//!   invalid UTF-8 is answered with an error (the `error` decision, or an
//!   [`AuthhostResult`] code), never a crash.
//! - Strings out (`char **` out-parameters, [`authhost_status`]) belong to the caller, who
//!   frees each with [`authhost_string_free`]. The `decision_json` given to a completion
//!   callback is only borrowed, for the duration of the callback.
//! - An [`AuthhostHost`] may be used from any number of threads at once.
//! - Nothing unwinds across the boundary: a panic inside authhost becomes an error answer.
//! - Using a host after [`authhost_close`], or closing it twice, is undefined behaviour, as
//!   is closing it from inside one of its own completion callbacks or while another thread
//!   still calls it.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use serde_json::json;

use crate::decision::{Callback, DecisionError, ErrorKind, NodeDecision, Outcome, UserDecision};
use crate::error::panic_message;
use crate::host::Host;

/// A running host: its plugin set and workers. Opaque to C; made by [`authhost_open`], ended
/// by [`authhost_close`].
pub struct AuthhostHost {
    host: Host,
}

/// What a C API call itself reports (not a policy's decision).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthhostResult {
    /// It worked.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// The configuration JSON was malformed or unusable.
    #[allow(dead_code)]
    // In the C header for callers that switch on it; `authhost_open` reports configuration errors through its error string.
    InvalidConfig = 3,
    /// The plugin set did not load.
    LoadFailed = 4,
    /// authhost failed inside (a bug); the call did nothing.
    Panicked = 5,
}

/// The decision of `on_new_node`: a role, or the contract's `-1` / `-3`.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthhostNode {
    /// Join as a primary node.
    Primary = 1,
    /// Join as a secondary node.
    Secondary = 2,
    /// Join as an asynchronous node.
    Async = 3,
    /// Not authorized (`-1`).
    Unauthorized = -1,
    /// A general error (`-3`); the decision JSON says why.
    Error = -3,
}

/// Runs when a user callback asked with `*_async` has its decision: `code` is the user id,
/// `0`, `-1` or `-3`; `decision_json` (borrowed for the call) is the decision as JSON, with
/// the message when it is an error. Runs on a worker thread, or on the calling thread when
/// the request is refused at once; it should return quickly.
pub type AuthhostUserDone =
    Option<unsafe extern "C" fn(user_data: *mut c_void, code: i64, decision_json: *const c_char)>;

/// Runs when `authhost_new_node_async` has its decision; see [`AuthhostUserDone`].
pub type AuthhostNodeDone = Option<
    unsafe extern "C" fn(user_data: *mut c_void, node: AuthhostNode, decision_json: *const c_char),
>;

/// Starts a host from a JSON configuration:
/// `{"plugins":"…","db":"…","workers":N,"timeout_ms":N}` (every key optional; defaults as
/// in the contract). Returns NULL on failure, with the reason in `*error_out` (when
/// `error_out` is not NULL) for the caller to free with [`authhost_string_free`].
///
/// # Safety
///
/// `config_json` is NULL or a NUL-terminated string; `error_out` is NULL or points to a
/// writable `char *`.
#[no_mangle]
pub unsafe extern "C" fn authhost_open(
    config_json: *const c_char,
    error_out: *mut *mut c_char,
) -> *mut AuthhostHost {
    // SAFETY: the caller passes a valid out-pointer or NULL.
    unsafe { set_out(error_out, ptr::null_mut()) };
    let opened = catch_unwind(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let text = unsafe { text_arg(config_json, "config_json") }.map_err(|e| e.message)?;
        let builder = crate::settings::from_json(text).map_err(|e| e.to_string())?;
        builder.build().map_err(|e| e.to_string())
    });
    let failure = match opened {
        Ok(Ok(host)) => return Box::into_raw(Box::new(AuthhostHost { host })),
        Ok(Err(message)) => message,
        Err(panic) => format!(
            "authhost failed while opening the host: {}",
            panic_message(&*panic)
        ),
    };
    // SAFETY: as above.
    unsafe { set_out(error_out, owned_c_string(&failure)) };
    ptr::null_mut()
}

/// Stops the host: it takes no more requests, answers those queued, joins its threads and
/// frees it. NULL is ignored. Using `host` afterwards, closing it twice, or closing it from
/// inside one of its completion callbacks is undefined behaviour.
///
/// # Safety
///
/// `host` is NULL or a pointer from [`authhost_open`] not yet closed, and no other thread
/// uses it any more.
#[no_mangle]
pub unsafe extern "C" fn authhost_close(host: *mut AuthhostHost) {
    if host.is_null() {
        return;
    }
    // SAFETY: the caller hands back a live host from authhost_open, once.
    let host = unsafe { Box::from_raw(host) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(host)));
}

/// Frees a string that authhost returned. NULL is ignored.
///
/// # Safety
///
/// `text` is NULL or a string from authhost not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authhost_string_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: authhost made it with CString::into_raw.
        drop(unsafe { CString::from_raw(text) });
    }
}

/// Asks `on_user_signup(signup_info, node_info)` and waits. Returns the code: the user id
/// (≥ 1), `0` (new user), `-1` (not authorized) or `-3` (error, including NULL or invalid
/// UTF-8 arguments). When `decision_json_out` is not NULL it receives the decision as JSON
/// (with the error message), to free with [`authhost_string_free`].
///
/// # Safety
///
/// `host` is NULL or a live host; the strings are NULL or NUL-terminated; `decision_json_out`
/// is NULL or points to a writable `char *`.
#[no_mangle]
pub unsafe extern "C" fn authhost_user_signup(
    host: *const AuthhostHost,
    signup_info: *const c_char,
    node_info: *const c_char,
    decision_json_out: *mut *mut c_char,
) -> i64 {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        user_blocking(
            host,
            Callback::UserSignup,
            signup_info,
            node_info,
            decision_json_out,
        )
    }
}

/// Asks `on_user_login(login_info, node_info)` and waits; see [`authhost_user_signup`].
///
/// # Safety
///
/// As for [`authhost_user_signup`].
#[no_mangle]
pub unsafe extern "C" fn authhost_user_login(
    host: *const AuthhostHost,
    login_info: *const c_char,
    node_info: *const c_char,
    decision_json_out: *mut *mut c_char,
) -> i64 {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        user_blocking(
            host,
            Callback::UserLogin,
            login_info,
            node_info,
            decision_json_out,
        )
    }
}

/// Asks `on_new_node(node_info)` and waits. Returns the role, or `AUTHHOST_NODE_UNAUTHORIZED`
/// (-1) or `AUTHHOST_NODE_ERROR` (-3, including NULL or invalid UTF-8 arguments). When
/// `decision_json_out` is not NULL it receives the decision as JSON, to free with
/// [`authhost_string_free`].
///
/// # Safety
///
/// As for [`authhost_user_signup`].
#[no_mangle]
pub unsafe extern "C" fn authhost_new_node(
    host: *const AuthhostHost,
    node_info: *const c_char,
    decision_json_out: *mut *mut c_char,
) -> AuthhostNode {
    // SAFETY: the caller passes a valid out-pointer or NULL.
    unsafe { set_out(decision_json_out, ptr::null_mut()) };
    let outcome = guarded(Callback::NewNode, || {
        // SAFETY: forwarded from this function's contract.
        let (host, args) = unsafe { request(host, Callback::NewNode, [node_info, ptr::null()]) }?;
        Ok(host.call(Callback::NewNode, args))
    });
    // SAFETY: as above.
    unsafe { set_out(decision_json_out, decision_json(&outcome)) };
    node_code(&outcome)
}

/// Asks `on_user_signup` without waiting: returns `AUTHHOST_RESULT_OK` and `done(user_data,
/// code, decision_json)` runs exactly once, later, on a worker thread (or at once on this
/// thread when the request is refused as overloaded or shutting down). Returns another
/// [`AuthhostResult`] when an argument is NULL or not UTF-8; `done` then never runs.
///
/// # Safety
///
/// `host` is NULL or a live host; the strings are NULL or NUL-terminated; `user_data` may be
/// used from another thread.
#[no_mangle]
pub unsafe extern "C" fn authhost_user_signup_async(
    host: *const AuthhostHost,
    signup_info: *const c_char,
    node_info: *const c_char,
    done: AuthhostUserDone,
    user_data: *mut c_void,
) -> AuthhostResult {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        user_async(
            host,
            Callback::UserSignup,
            signup_info,
            node_info,
            done,
            user_data,
        )
    }
}

/// Asks `on_user_login` without waiting; see [`authhost_user_signup_async`].
///
/// # Safety
///
/// As for [`authhost_user_signup_async`].
#[no_mangle]
pub unsafe extern "C" fn authhost_user_login_async(
    host: *const AuthhostHost,
    login_info: *const c_char,
    node_info: *const c_char,
    done: AuthhostUserDone,
    user_data: *mut c_void,
) -> AuthhostResult {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        user_async(
            host,
            Callback::UserLogin,
            login_info,
            node_info,
            done,
            user_data,
        )
    }
}

/// Asks `on_new_node` without waiting: `done(user_data, node, decision_json)` runs exactly
/// once; see [`authhost_user_signup_async`].
///
/// # Safety
///
/// As for [`authhost_user_signup_async`].
#[no_mangle]
pub unsafe extern "C" fn authhost_new_node_async(
    host: *const AuthhostHost,
    node_info: *const c_char,
    done: AuthhostNodeDone,
    user_data: *mut c_void,
) -> AuthhostResult {
    let submitted = catch_unwind(AssertUnwindSafe(|| {
        let done = done.ok_or(AuthhostResult::NullPointer)?;
        // SAFETY: forwarded from this function's contract.
        let (host, args) = unsafe { request(host, Callback::NewNode, [node_info, ptr::null()]) }
            .map_err(|e| e.code)?;
        let user_data = UserData(user_data);
        host.call_async(Callback::NewNode, args, move |outcome| {
            let json = json_text(&outcome);
            // SAFETY: the caller gave a callback and user data valid on any thread.
            unsafe { done(user_data.get(), node_code(&outcome), json.as_ptr()) };
        });
        Ok(())
    }));
    flatten(submitted)
}

/// The host's status as JSON (contract §8): the live set, the last load error, counters.
/// Returns NULL when `host` is NULL; free the text with [`authhost_string_free`].
///
/// # Safety
///
/// `host` is NULL or a live host.
#[no_mangle]
pub unsafe extern "C" fn authhost_status(host: *const AuthhostHost) -> *mut c_char {
    // SAFETY: the caller passes NULL or a live host.
    let Some(host) = (unsafe { host.as_ref() }) else {
        return ptr::null_mut();
    };
    catch_unwind(AssertUnwindSafe(|| {
        owned_c_string(&host.host.status().to_json().to_string())
    }))
    .unwrap_or(ptr::null_mut())
}

/// Loads the plugins afresh and makes them live if they load. Returns `AUTHHOST_RESULT_OK`,
/// or `AUTHHOST_RESULT_LOAD_FAILED` with the load error in `*error_out` (the running set
/// stays live); free it with [`authhost_string_free`].
///
/// # Safety
///
/// `host` is NULL or a live host; `error_out` is NULL or points to a writable `char *`.
#[no_mangle]
pub unsafe extern "C" fn authhost_reload(
    host: *const AuthhostHost,
    error_out: *mut *mut c_char,
) -> AuthhostResult {
    // SAFETY: the caller passes a valid out-pointer or NULL.
    unsafe { set_out(error_out, ptr::null_mut()) };
    // SAFETY: the caller passes NULL or a live host.
    let Some(host) = (unsafe { host.as_ref() }) else {
        // SAFETY: as above.
        unsafe { set_out(error_out, owned_c_string("host is NULL")) };
        return AuthhostResult::NullPointer;
    };
    let (result, message) = match catch_unwind(AssertUnwindSafe(|| host.host.reload())) {
        Ok(Ok(_)) => return AuthhostResult::Ok,
        Ok(Err(e)) => (AuthhostResult::LoadFailed, e.to_string()),
        Err(panic) => (
            AuthhostResult::Panicked,
            format!(
                "authhost failed while reloading: {}",
                panic_message(&*panic)
            ),
        ),
    };
    // SAFETY: as above.
    unsafe { set_out(error_out, owned_c_string(&message)) };
    result
}

/// A bad argument: the [`AuthhostResult`] for async calls, the message for decisions.
struct BadArgument {
    code: AuthhostResult,
    message: String,
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
///
/// `text` is NULL or NUL-terminated and outlives the returned borrow.
unsafe fn text_arg<'a>(text: *const c_char, name: &str) -> Result<&'a str, BadArgument> {
    if text.is_null() {
        return Err(BadArgument {
            code: AuthhostResult::NullPointer,
            message: format!("{name} is NULL"),
        });
    }
    // SAFETY: the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|e| BadArgument {
            code: AuthhostResult::InvalidUtf8,
            message: format!("{name} is not valid UTF-8: {e}"),
        })
}

/// The host and the owned arguments of a request, or why they are unusable.
///
/// # Safety
///
/// `host` is NULL or live; the used `args` are NULL or NUL-terminated.
unsafe fn request<'a>(
    host: *const AuthhostHost,
    callback: Callback,
    args: [*const c_char; 2],
) -> Result<(&'a Host, [String; 2]), BadArgument> {
    // SAFETY: the caller passes NULL or a live host.
    let host = unsafe { host.as_ref() }.ok_or_else(|| BadArgument {
        code: AuthhostResult::NullPointer,
        message: "host is NULL".into(),
    })?;
    let names = match callback {
        Callback::UserSignup => ["signup_info", "node_info"],
        Callback::UserLogin => ["login_info", "node_info"],
        Callback::NewNode => ["node_info", ""],
    };
    let mut owned = [String::new(), String::new()];
    for index in 0..callback.arity() {
        // SAFETY: forwarded from this function's contract.
        owned[index] = unsafe { text_arg(args[index], names[index]) }?.to_string();
    }
    Ok((&host.host, owned))
}

/// Runs `ask` with panics and bad arguments turned into `error` outcomes.
fn guarded(callback: Callback, ask: impl FnOnce() -> Result<Outcome, BadArgument>) -> Outcome {
    let failed = |message: String| {
        Outcome::failed(
            callback,
            DecisionError::new(ErrorKind::Unavailable, message),
            Default::default(),
        )
    };
    match catch_unwind(AssertUnwindSafe(ask)) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(bad)) => failed(format!("{}(): {}", callback.method_name(), bad.message)),
        Err(panic) => failed(format!(
            "{}(): authhost failed while asking: {}",
            callback.method_name(),
            panic_message(&*panic)
        )),
    }
}

/// # Safety
///
/// As for [`authhost_user_signup`].
unsafe fn user_blocking(
    host: *const AuthhostHost,
    callback: Callback,
    info: *const c_char,
    node_info: *const c_char,
    decision_json_out: *mut *mut c_char,
) -> i64 {
    // SAFETY: the caller passes a valid out-pointer or NULL.
    unsafe { set_out(decision_json_out, ptr::null_mut()) };
    let outcome = guarded(callback, || {
        // SAFETY: forwarded from the caller's contract.
        let (host, args) = unsafe { request(host, callback, [info, node_info]) }?;
        Ok(host.call(callback, args))
    });
    // SAFETY: as above.
    unsafe { set_out(decision_json_out, decision_json(&outcome)) };
    user_code(&outcome)
}

/// # Safety
///
/// As for [`authhost_user_signup_async`].
unsafe fn user_async(
    host: *const AuthhostHost,
    callback: Callback,
    info: *const c_char,
    node_info: *const c_char,
    done: AuthhostUserDone,
    user_data: *mut c_void,
) -> AuthhostResult {
    let submitted = catch_unwind(AssertUnwindSafe(|| {
        let done = done.ok_or(AuthhostResult::NullPointer)?;
        // SAFETY: forwarded from the caller's contract.
        let (host, args) =
            unsafe { request(host, callback, [info, node_info]) }.map_err(|e| e.code)?;
        let user_data = UserData(user_data);
        host.call_async(callback, args, move |outcome| {
            let json = json_text(&outcome);
            // SAFETY: the caller gave a callback and user data valid on any thread.
            unsafe { done(user_data.get(), user_code(&outcome), json.as_ptr()) };
        });
        Ok(())
    }));
    flatten(submitted)
}

fn flatten(submitted: std::thread::Result<Result<(), AuthhostResult>>) -> AuthhostResult {
    match submitted {
        Ok(Ok(())) => AuthhostResult::Ok,
        Ok(Err(code)) => code,
        Err(_) => AuthhostResult::Panicked,
    }
}

/// The caller's `user_data`, carried to the worker thread that completes the request.
struct UserData(*mut c_void);

// SAFETY: passing `user_data` to a callback on another thread is the documented contract of
// the `*_async` functions; authhost never dereferences it.
unsafe impl Send for UserData {}

impl UserData {
    /// Taking the pointer through a method makes a closure capture the whole (Send) wrapper.
    fn get(&self) -> *mut c_void {
        self.0
    }
}

fn user_code(outcome: &Outcome) -> i64 {
    outcome.user().map_or(-3, UserDecision::code)
}

fn node_code(outcome: &Outcome) -> AuthhostNode {
    match outcome.node() {
        Some(NodeDecision::Primary) => AuthhostNode::Primary,
        Some(NodeDecision::Secondary) => AuthhostNode::Secondary,
        Some(NodeDecision::Async) => AuthhostNode::Async,
        Some(NodeDecision::Unauthorized) => AuthhostNode::Unauthorized,
        Some(NodeDecision::Error(_)) | None => AuthhostNode::Error,
    }
}

/// The decision JSON as a C string. JSON text never contains NUL (serde escapes it).
fn json_text(outcome: &Outcome) -> CString {
    CString::new(outcome.to_json().to_string()).unwrap_or_else(|_| {
        CString::new(json!({"decision": "error", "code": -3}).to_string()).unwrap_or_default()
    })
}

fn decision_json(outcome: &Outcome) -> *mut c_char {
    json_text(outcome).into_raw()
}

/// `text` as a caller-owned C string; NUL bytes (impossible in our messages) become `?`.
fn owned_c_string(text: &str) -> *mut c_char {
    CString::new(text.replace('\0', "?"))
        .unwrap_or_default()
        .into_raw()
}

/// Writes `value` through `out` unless `out` is NULL.
///
/// # Safety
///
/// `out` is NULL or points to a writable `char *`.
unsafe fn set_out(out: *mut *mut c_char, value: *mut c_char) {
    if out.is_null() {
        if !value.is_null() {
            // SAFETY: made by CString::into_raw just now, and nobody else has it.
            drop(unsafe { CString::from_raw(value) });
        }
    } else {
        // SAFETY: the caller promises `out` is writable.
        unsafe { *out = value };
    }
}
