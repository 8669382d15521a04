//! The `quarks-job` binary: parses the command line and hands off to [`quarks_job::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    quarks_job::cli::main()
}
