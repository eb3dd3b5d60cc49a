//! `authhost test CASES`: runs policy test cases and prints a PASS/FAIL line per case and
//! the summary `N passed, M failed`.

use std::path::PathBuf;
use std::process::ExitCode;

use authhost::cases;
use clap::Args;

use super::{output, start_host, usage_error, HostOptions};

/// Options of `authhost test`.
#[derive(Args)]
pub struct TestArgs {
    /// The cases file (JSON): see `authhost::cases` for its form.
    cases: PathBuf,
}

/// Runs the cases in file order against a fresh `:memory:` database unless `--db` was
/// given. Exit status 0 when all pass, 1 when any fails (or the set does not load), 2 when
/// the cases file cannot be read or parsed: CI can tell a broken file from a failing case.
pub fn run(options: &HostOptions, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let cases = match cases::load(&args.cases) {
        Ok(cases) => cases,
        Err(e) => return Ok(usage_error("test", e)),
    };
    let builder = options.builder(Some(1), ":memory:");
    log::debug!(
        "running the cases against the database {}",
        builder.config().db.display()
    );
    let host = start_host(builder)?;
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let result = cases::run(&host, case);
        output::line(result.report())?;
        results.push(result);
    }
    output::line(cases::summary(&results))?;
    host.shutdown();
    Ok(if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
