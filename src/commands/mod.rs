//! One module per `swg` subcommand.

pub(crate) mod agent;
pub(crate) mod ca;
pub(crate) mod policy;
pub(crate) mod secrets;
pub(crate) mod serve;

use std::process::ExitCode;

/// Prints `error` on standard error and returns the failure exit code.
pub(crate) fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
