//! `swg agent`: the reference device agent (enrolment, token renewal, local DNS proxy
//! over DoH).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use swg_dns::agent::limits::ProxyLimits;
use swg_dns::agent::proxy::LocalListener;
use swg_dns::agent::{check_bundle_id, presentation, Agent, AgentOptions};

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
        /// Port 0 picks a free port, the same for UDP and TCP.
        #[arg(
            long = "listen",
            value_name = "ADDR[=BUNDLE]",
            default_value = "127.0.0.1:5300"
        )]
        listens: Vec<String>,
        /// Allow --listen addresses outside loopback. Anyone who reaches such a
        /// listener resolves through swg as this device and user.
        #[arg(long)]
        allow_remote_clients: bool,
    },
    /// Enrol and send one query through DoH, printing swg's response.
    Query {
        #[command(flatten)]
        enrol: EnrolArgs,
        /// Record type: a name such as A, AAAA or HTTPS, a number such as 65, or TYPE65.
        #[arg(long = "type", default_value = "A")]
        query_type: String,
        /// Bundle id of the app the query is sent for (1 to 255 bytes).
        #[arg(long, value_name = "BUNDLE")]
        app: Option<String>,
        /// The name to resolve.
        name: String,
    },
    /// Enrol and print the block and warn events of the last 30 days of this device
    /// and user (JSON).
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
            AgentCommand::Run {
                enrol,
                listens,
                allow_remote_clients,
            } => run_agent(enrol, &listens, allow_remote_clients).await,
            AgentCommand::Query {
                enrol,
                query_type,
                app,
                name,
            } => {
                // Checked before enrolment, so that a typing error costs no device record.
                presentation::parse_record_type(&query_type).map_err(|e| e.to_string())?;
                presentation::parse_name(&name).map_err(|e| e.to_string())?;
                if let Some(app) = &app {
                    check_bundle_id(app).map_err(|e| format!("--app: {e}"))?;
                }
                let agent = Agent::enroll(&options(enrol))
                    .await
                    .map_err(|e| e.to_string())?;
                let text = agent
                    .query_text(&name, &query_type, app.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                write_stdout(&text)
            }
            AgentCommand::Activity { enrol } => {
                let agent = Agent::enroll(&options(enrol))
                    .await
                    .map_err(|e| e.to_string())?;
                let events = agent.activity().await.map_err(|e| e.to_string())?;
                write_stdout(&format!("{events:#}\n"))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail(&error),
    }
}

/// Binds the listeners, enrols, and serves until an error stops the agent.
async fn run_agent(
    enrol: EnrolArgs,
    listens: &[String],
    allow_remote_clients: bool,
) -> Result<(), String> {
    let listens = parse_listens(listens, allow_remote_clients)?;
    // Bound first, so that a busy port fails before enrolment.
    let mut listeners = Vec::with_capacity(listens.len());
    for (addr, bundle_id) in listens {
        let listener = LocalListener::bind(addr, bundle_id)
            .await
            .map_err(|e| e.to_string())?;
        if !is_loopback(addr) {
            tracing::warn!(
                listen = %listener.local_addr(),
                "listener outside loopback (--allow-remote-clients): anyone who reaches it \
                 resolves through swg as this device and user"
            );
        }
        listeners.push(listener);
    }
    let agent = Agent::enroll(&options(enrol))
        .await
        .map_err(|e| e.to_string())?;
    agent.run(listeners).await.map_err(|e| e.to_string())
}

/// Writes `text` to standard output. A reader that closed the pipe early
/// (`swg agent activity | head`) took what it wanted, so that is no error.
fn write_stdout(text: &str) -> Result<(), String> {
    use std::io::Write as _;

    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {error}"))
        }
        _ => Ok(()),
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
        limits: ProxyLimits::default(),
    }
}

/// Parses every `--listen`, and rejects an address given twice and, unless
/// `allow_remote_clients`, an address outside loopback.
fn parse_listens(
    texts: &[String],
    allow_remote_clients: bool,
) -> Result<Vec<(SocketAddr, Option<String>)>, String> {
    let mut listens: Vec<(SocketAddr, Option<String>)> = Vec::with_capacity(texts.len());
    for text in texts {
        let (addr, bundle_id) = parse_listen(text)?;
        // Port 0 requests a new port each time, so it is never a duplicate.
        if addr.port() != 0 && listens.iter().any(|(seen, _)| *seen == addr) {
            return Err(format!(
                "--listen {addr} is given twice: each listener needs its own address"
            ));
        }
        if !allow_remote_clients && !is_loopback(addr) {
            return Err(format!(
                "--listen {addr} is not a loopback address: anyone who reaches it would \
                 resolve through swg as this device and user. Use 127.0.0.1 or ::1, or \
                 pass --allow-remote-clients"
            ));
        }
        listens.push((addr, bundle_id));
    }
    Ok(listens)
}

/// Parses `ADDR` or `ADDR=BUNDLE_ID`.
fn parse_listen(text: &str) -> Result<(SocketAddr, Option<String>), String> {
    let (addr, bundle_id) = match text.split_once('=') {
        Some((addr, bundle_id)) => (addr, Some(bundle_id)),
        None => (text, None),
    };
    let addr = addr
        .parse()
        .map_err(|_| format!("invalid --listen {text:?}: expected ADDR or ADDR=BUNDLE_ID"))?;
    if let Some(bundle_id) = bundle_id {
        check_bundle_id(bundle_id).map_err(|e| {
            format!("--listen {text:?}: {e}; write ADDR alone for a listener without an app")
        })?;
    }
    Ok((addr, bundle_id.map(str::to_owned)))
}

/// Returns whether `addr` is a loopback address, IPv4-mapped IPv6 included.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listens(texts: &[&str], allow_remote_clients: bool) -> Result<usize, String> {
        let texts: Vec<String> = texts.iter().map(|text| (*text).to_owned()).collect();
        parse_listens(&texts, allow_remote_clients).map(|listens| listens.len())
    }

    #[test]
    fn listen_given_twice_is_rejected() {
        let error = listens(
            &["127.0.0.1:5300", "127.0.0.1:5300=com.example.notes"],
            false,
        );
        assert_eq!(
            error,
            Err(
                "--listen 127.0.0.1:5300 is given twice: each listener needs its own address"
                    .to_owned()
            )
        );
        assert_eq!(listens(&["127.0.0.1:0", "127.0.0.1:0"], false), Ok(2));
    }

    #[test]
    fn listen_outside_loopback_needs_flag() {
        for addr in ["0.0.0.0:5300", "[::]:5300", "192.0.2.1:5300"] {
            let error = listens(&[addr], false);
            assert!(
                error
                    .as_ref()
                    .is_err_and(|e| e.contains("--allow-remote-clients")),
                "{addr}: {error:?}"
            );
            assert_eq!(listens(&[addr], true), Ok(1), "{addr}");
        }
        for addr in ["127.0.0.2:5300", "[::1]:5300", "[::ffff:127.0.0.1]:5300"] {
            assert_eq!(listens(&[addr], false), Ok(1), "{addr}");
        }
    }

    #[test]
    fn listen_bundle_id_empty_or_long() {
        let empty = parse_listen("127.0.0.1:5300=");
        assert!(
            empty
                .as_ref()
                .is_err_and(|e| e.contains("invalid bundle id")),
            "{empty:?}"
        );
        let long = parse_listen(&format!("127.0.0.1:5300={}", "a".repeat(256)));
        assert!(
            long.as_ref().is_err_and(|e| e.contains("256 bytes")),
            "{long:?}"
        );
        assert_eq!(
            parse_listen("127.0.0.1:5300=com.example.notes"),
            Ok((
                SocketAddr::from(([127, 0, 0, 1], 5300)),
                Some("com.example.notes".to_owned())
            ))
        );
    }
}
