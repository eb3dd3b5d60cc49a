//! `authhost test CASES`: runs policy test cases and prints a PASS/FAIL line per case and
//! the summary `N passed, M failed`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use authhost::cases;
use clap::Args;

use super::HostOptions;

/// Options of `authhost test`.
#[derive(Args)]
pub struct TestArgs {
    /// The cases file (JSON): see `authhost::cases` for its form.
    cases: PathBuf,
}

/// Runs the cases in file order against a fresh `:memory:` database unless `--db` was
/// given. Exit status 0 when all pass, 1 when any fails.
pub fn run(options: &HostOptions, db_given: bool, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let cases = cases::load(&args.cases)?;
    let mut builder = options.builder(Some(1));
    if !db_given {
        builder = builder.db(":memory:");
    }
    log::debug!(
        "running the cases against the database {}",
        builder.config().db.display()
    );
    let host = builder.build().context("the plugin set does not load")?;
    let results: Vec<cases::CaseResult> = cases
        .iter()
        .map(|case| {
            let result = cases::run(&host, case);
            println!("{}", result.report());
            result
        })
        .collect();
    println!("{}", cases::summary(&results));
    host.shutdown();
    Ok(if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
