//! Gives the C library (`libauthhost.so`) its SONAME, and, on release builds, also builds the
//! SQLite loadable extension (`sqlite-ext/`) and puts it beside the other artifacts:
//! `target/release/libauthhost_sqlite.so`.
//!
//! The SONAME, `libauthhost.so.0`, is what a C program linked with `-lauthhost` asks the
//! dynamic loader for; `scripts/install` installs the library under that name (and
//! `libauthhost.so` for the linker) and reads the name from the library, so it is said only
//! here. Bump it when the C ABI (`src/ffi.rs`) changes incompatibly.
//!
//! Why a cargo run of its own: the extension needs rusqlite's `loadable_extension` (SQLite
//! through the loader's function table), authhost itself needs `bundled` (its own SQLite).
//! Built in one cargo run, cargo would unify the two, and the `authhost` binary would call
//! SQLite through a table nobody fills in. So `sqlite-ext` is a workspace member outside
//! `default-members`, built here with its own target directory (`target/sqlite-ext`; the
//! outer build holds the lock on `target/release`).
//!
//! Skipped on debug builds (the tests build the extension themselves), for the nested build
//! itself (authhost without `bundled`), and when `AUTHHOST_SKIP_SQLITE_EXTENSION` is set.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The C library's SONAME (see the module docs).
const SONAME: &str = "libauthhost.so.0";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
    }
    println!("cargo:rerun-if-env-changed=AUTHHOST_SKIP_SQLITE_EXTENSION");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let bundled = env::var_os("CARGO_FEATURE_BUNDLED").is_some();
    if !release || !bundled || env::var_os("AUTHHOST_SKIP_SQLITE_EXTENSION").is_some() {
        return;
    }
    if env::var("TARGET").ok() != env::var("HOST").ok() {
        println!("cargo:warning=not building the SQLite extension when cross-compiling");
        return;
    }
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    for input in [
        "src",
        "sqlite-ext/src",
        "sqlite-ext/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(input).display()
        );
    }
    // OUT_DIR is <target>/release/build/authhost-<hash>/out.
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside the target directory");
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory has a parent");
    let extension_target = target_dir.join("sqlite-ext");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&manifest_dir)
        .args([
            "build",
            "--release",
            "--package",
            "authhost-sqlite",
            "--target-dir",
        ])
        .arg(&extension_target);
    // The extension runs the same languages as the authhost being built.
    if env::var_os("CARGO_FEATURE_PYTHON").is_some() {
        command.args(["--features", "python"]);
    }
    // What cargo told this script about the outer build must not leak into the inner one.
    for (name, _) in env::vars_os() {
        let name = name.to_string_lossy();
        let outer = [
            "CARGO_FEATURE_",
            "CARGO_CFG_",
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || [
                "OUT_DIR",
                "TARGET",
                "HOST",
                "NUM_JOBS",
                "OPT_LEVEL",
                "DEBUG",
                "PROFILE",
            ]
            .contains(&name.as_ref());
        if outer {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .status()
        .expect("running cargo for the SQLite extension");
    if !status.success() {
        panic!("building the SQLite extension (sqlite-ext/) failed: {status}");
    }
    let built = extension_target.join("release").join(library_name());
    copy_atomically(&built, &profile_dir.join(library_name()));
}

fn library_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libauthhost_sqlite.dylib"
    } else {
        "libauthhost_sqlite.so"
    }
}

/// Copies through a temporary name, so a program loading the old file never sees half a file.
fn copy_atomically(from: &Path, to: &Path) {
    let partial = to.with_extension("so.partial");
    std::fs::copy(from, &partial)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), partial.display()));
    std::fs::rename(&partial, to)
        .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", partial.display(), to.display()));
}
