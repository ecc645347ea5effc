//! `swg policy`: checks and explains policy files offline.

use std::process::ExitCode;

/// Subcommands of `swg policy`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PolicyCommand {}

/// Runs one `swg policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> ExitCode {
    match command {}
}
