//! The `quarks-job` binary: parses the command line and hands off to [`quarks_job::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    // `quarks-job policy compile`: the operator's bounded policy compiler, run by the operator
    // in a child process (hidden; see `quarks_job::policy::compile`).
    if quarks_job::policy::compile::is_child() {
        return quarks_job::policy::compile::run_child();
    }
    quarks_job::cli::main()
}
