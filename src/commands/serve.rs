//! `swg serve`: runs the gateway.

use std::process::ExitCode;

use crate::app::App;
use crate::config::ConfigArgs;

/// Options of `swg serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    crate::logging::init();

    let (config, path) = match args.config.load() {
        Ok(loaded) => loaded,
        Err(error) => return super::fail(&error),
    };
    match &path {
        Some(path) => tracing::info!(config = %path.display(), "read configuration"),
        None => tracing::info!("no configuration file; using defaults"),
    }
    raise_open_file_limit();

    let worker_threads = config.worker_threads;
    let app = match App::build(config) {
        Ok(app) => app,
        Err(error) => return super::fail(&error),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return super::fail(&error),
    };
    match runtime.block_on(app.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail(&error),
    }
}

/// Raises the soft limit on open files to the hard limit. Every client connection, pooled
/// origin connection and DNS socket takes a file descriptor, and the usual soft limit of
/// 1024 would refuse connections long before memory or CPU run out.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open-file limit"),
        Err(error) => tracing::warn!(
            %error,
            "cannot raise the open-file limit; connections beyond it will be refused"
        ),
    }
}
