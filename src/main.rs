//! `swg`, the secure web gateway: command-line entry point.
//!
//! `swg serve` runs the gateway; the other subcommands manage the root CA and
//! check policies offline. Each subcommand lives in its own module under
//! `commands/`.

mod app;
mod commands;
mod components;
mod config;
mod demo;
mod logging;
mod operations;
mod shutdown;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc instead of glibc's malloc. After a burst of connections glibc kept the
/// freed memory in its arenas, so RSS stayed at its peak. jemalloc's background
/// thread returns freed pages to the system after its decay time (10 s by default).
/// docs/benchmarks.md ("Whole gateway") has the measurements.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Command line of the `swg` binary.
#[derive(Debug, Parser)]
#[command(name = "swg", version, about = "Cloud secure web gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(commands::serve::ServeArgs),
    /// Manage the root CA.
    #[command(subcommand)]
    Ca(commands::ca::CaCommand),
    /// Check and explain policy files offline.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Run the reference device agent.
    #[command(subcommand)]
    Agent(commands::agent::AgentCommand),
    /// Create a tenant's admin token or authentication key offline.
    #[command(subcommand)]
    Secrets(commands::secrets::SecretsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Ca(command) => commands::ca::run(command),
        Command::Policy(command) => commands::policy::run(command),
        Command::Agent(command) => commands::agent::run(command),
        Command::Secrets(command) => commands::secrets::run(command),
    }
}
