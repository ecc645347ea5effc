//! `swg agent`: the reference device agent (enrolment, token renewal, local DNS proxy
//! over DoH).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use swg_dns::agent::proxy::LocalListener;
use swg_dns::agent::{Agent, AgentOptions};

/// The console address and the identity the agent enrols with.
#[derive(Debug, clap::Args)]
pub(crate) struct EnrolArgs {
    /// Console URL, such as https://localhost:9443 (the console certificate names localhost).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The tenant's authentication key.
    #[arg(long, value_name = "KEY", env = "SWG_AGENT_AUTH_KEY")]
    auth_key: String,
    /// User id.
    #[arg(long)]
    user: String,
    /// Device id.
    #[arg(long)]
    device: String,
    /// PEM file of extra trusted root certificates (the swg root CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

/// Subcommands of `swg agent`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AgentCommand {
    /// Enrol and serve local DNS proxies that forward to swg over DoH.
    Run {
        #[command(flatten)]
        enrol: EnrolArgs,
        /// Local listener as ADDR or ADDR=BUNDLE_ID (queries tagged with that app); repeatable.
        #[arg(
            long = "listen",
            value_name = "ADDR[=BUNDLE]",
            default_value = "127.0.0.1:5300"
        )]
        listens: Vec<String>,
    },
    /// Enrol and send one query through DoH, printing swg's response.
    Query {
        #[command(flatten)]
        enrol: EnrolArgs,
        /// Record type, such as A, AAAA or HTTPS.
        #[arg(long = "type", default_value = "A")]
        query_type: String,
        /// Bundle id of the app the query is sent for.
        #[arg(long, value_name = "BUNDLE")]
        app: Option<String>,
        /// The name to resolve.
        name: String,
    },
    /// Enrol and print this device's block and warn events of the last 30 days (JSON).
    Activity {
        #[command(flatten)]
        enrol: EnrolArgs,
    },
}

/// Runs one `swg agent` subcommand.
pub(crate) fn run(command: AgentCommand) -> ExitCode {
    crate::logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return super::fail(&format!("cannot start the runtime: {error}")),
    };
    let result = runtime.block_on(async move {
        match command {
            AgentCommand::Run { enrol, listens } => {
                let listens = listens
                    .iter()
                    .map(|text| parse_listen(text))
                    .collect::<Result<Vec<_>, String>>()?;
                // Bound first, so that a busy port fails before enrolment.
                let mut listeners = Vec::with_capacity(listens.len());
                for (addr, bundle_id) in listens {
                    listeners.push(
                        LocalListener::bind(addr, bundle_id)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let agent = Agent::enroll(&options(enrol))
                    .await
                    .map_err(|e| e.to_string())?;
                agent.run(listeners).await.map_err(|e| e.to_string())
            }
            AgentCommand::Query {
                enrol,
                query_type,
                app,
                name,
            } => {
                let agent = Agent::enroll(&options(enrol))
                    .await
                    .map_err(|e| e.to_string())?;
                let text = agent
                    .query_text(&name, &query_type, app.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{text}");
                Ok(())
            }
            AgentCommand::Activity { enrol } => {
                let agent = Agent::enroll(&options(enrol))
                    .await
                    .map_err(|e| e.to_string())?;
                let events = agent.activity().await.map_err(|e| e.to_string())?;
                println!("{events:#}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail(&error),
    }
}

fn options(enrol: EnrolArgs) -> AgentOptions {
    AgentOptions {
        server: enrol.server,
        auth_key: enrol.auth_key,
        user: enrol.user,
        device: enrol.device,
        ca_file: enrol.ca_file,
        system_resolvers: Vec::new(),
    }
}

/// Parses `ADDR` or `ADDR=BUNDLE_ID`.
fn parse_listen(text: &str) -> Result<(SocketAddr, Option<String>), String> {
    let (addr, bundle_id) = match text.split_once('=') {
        Some((addr, bundle_id)) => (addr, Some(bundle_id.to_owned())),
        None => (text, None),
    };
    let addr = addr
        .parse()
        .map_err(|_| format!("invalid --listen {text:?}: expected ADDR or ADDR=BUNDLE_ID"))?;
    Ok((addr, bundle_id.filter(|id| !id.is_empty())))
}
