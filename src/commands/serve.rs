//! `swg serve`: runs the gateway.

use std::process::ExitCode;

/// Options of `swg serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub(crate) fn run(_args: ServeArgs) -> ExitCode {
    eprintln!("error: swg serve is not built yet");
    ExitCode::FAILURE
}
