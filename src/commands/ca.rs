//! `swg ca`: shows, exports and creates the root CA.

use std::process::ExitCode;

/// Subcommands of `swg ca`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CaCommand {}

/// Runs one `swg ca` subcommand.
pub(crate) fn run(command: CaCommand) -> ExitCode {
    match command {}
}
