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
