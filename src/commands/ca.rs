//! `swg ca`: shows, exports and creates the root CA.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use swg_ca::store::{self, CaFiles};
use swg_ca::{export, CaCertificate, CaError, KeyType};
use time::format_description::well_known::Rfc3339;

use crate::config::{Config, ConfigArgs};

/// Subcommands of `swg ca`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CaCommand {
    /// Print the root CA's subject, key type, SHA-256 fingerprint and validity.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write the root CA certificate for installation on devices.
    Export {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output format: PEM text, binary DER, or an Apple configuration profile.
        #[arg(long, value_enum, default_value_t = ExportFormat::Pem)]
        format: ExportFormat,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Create a new root CA; an existing one is replaced only with --force.
    Init {
        #[command(flatten)]
        config: ConfigArgs,
        /// Replace an existing root CA. Devices that trust the old root will
        /// reject leaves from the new one until they install it, and a running
        /// `swg serve` keeps using the old root until it restarts.
        #[arg(long)]
        force: bool,
        /// Key type [default: `ca.key_type` from the configuration, else ecdsa-p256].
        #[arg(long, value_name = "TYPE", value_parser = parse_key_type)]
        key_type: Option<KeyType>,
    },
}

/// Formats of `swg ca export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// PEM text (`-----BEGIN CERTIFICATE-----`).
    Pem,
    /// Binary DER.
    Der,
    /// Apple configuration profile with a `com.apple.security.root` payload.
    Mobileconfig,
}

fn parse_key_type(name: &str) -> Result<KeyType, String> {
    name.parse()
        .map_err(|error: swg_ca::KeyTypeError| error.to_string())
}

/// Error of a `swg ca` command.
#[derive(Debug, thiserror::Error)]
enum CaCommandError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("binary DER is not written to a terminal; use --out FILE or redirect standard output")]
    DerToTerminal,
    #[error("cannot write {target}: {source}")]
    Output {
        target: String,
        source: std::io::Error,
    },
}

/// Runs one `swg ca` subcommand.
pub(crate) fn run(command: CaCommand) -> ExitCode {
    let result = match command {
        CaCommand::Show { config } => show(&config),
        CaCommand::Export {
            config,
            format,
            out,
        } => export_certificate(&config, format, out),
        CaCommand::Init {
            config,
            force,
            key_type,
        } => init(&config, force, key_type),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that closed the pipe early (`swg ca show | head -1`) took what it wanted.
        Err(CaCommandError::Output { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => super::fail(&error),
    }
}

fn ca_files(args: &ConfigArgs) -> Result<(Config, CaFiles), CaCommandError> {
    let (config, _) = args.load()?;
    let files = CaFiles::new(&config.ca, &config.data_dir);
    Ok((config, files))
}

/// Reads the CA certificate only: showing and exporting need no key access.
fn load_certificate(files: &CaFiles) -> Result<CaCertificate, CaError> {
    if !files.cert.exists() {
        return Err(CaError::NotFound {
            cert_path: files.cert.display().to_string(),
            key_path: files.key.display().to_string(),
        });
    }
    CaCertificate::load(&files.cert)
}

fn show(args: &ConfigArgs) -> Result<(), CaCommandError> {
    let (_, files) = ca_files(args)?;
    let certificate = load_certificate(&files)?;
    // The key is checked when it can be read, as `serve` would; showing the
    // certificate itself needs no access to the key.
    let key_check = match store::load(&files) {
        Ok(_) => Ok("matches the certificate".to_owned()),
        Err(error @ (CaError::KeyMismatch { .. } | CaError::InvalidKey { .. })) => Err(error),
        Err(error) => Ok(format!("not checked: {error}")),
    };
    let mut out = std::io::stdout().lock();
    let note = match &key_check {
        Ok(note) => note.as_str(),
        Err(_) => "DOES NOT MATCH the certificate; swg serve will refuse to start",
    };
    write_summary(&mut out, &certificate, &files, note).map_err(|source| {
        CaCommandError::Output {
            target: "standard output".to_owned(),
            source,
        }
    })?;
    key_check.map(|_| ()).map_err(CaCommandError::from)
}

fn write_summary(
    out: &mut impl std::io::Write,
    ca: &CaCertificate,
    files: &CaFiles,
    key_check: &str,
) -> std::io::Result<()> {
    let fingerprint: Vec<&str> = ca
        .fingerprint_hex()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap_or("??"))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let state = if now > ca.not_after() {
        " (expired)"
    } else if now < ca.not_before() {
        " (not yet valid)"
    } else {
        ""
    };

    writeln!(out, "Subject:     {}", ca.subject())?;
    writeln!(out, "Key type:    {}", ca.key_algorithm())?;
    writeln!(out, "SHA-256:     {}", fingerprint.join(":"))?;
    writeln!(out, "Not before:  {}", format_time(ca.not_before()))?;
    writeln!(out, "Not after:   {}{state}", format_time(ca.not_after()))?;
    writeln!(out, "Certificate: {}", files.cert.display())?;
    writeln!(out, "Key:         {}", files.key.display())?;
    writeln!(out, "Key check:   {key_check}")
}

fn format_time(time: time::OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.to_string())
}

fn export_certificate(
    args: &ConfigArgs,
    format: ExportFormat,
    out: Option<PathBuf>,
) -> Result<(), CaCommandError> {
    let (_, files) = ca_files(args)?;
    let certificate = load_certificate(&files)?;
    let bytes = match format {
        ExportFormat::Pem => export::pem(&certificate).into_bytes(),
        ExportFormat::Der => export::der(&certificate),
        ExportFormat::Mobileconfig => export::mobileconfig(&certificate),
    };

    match out {
        Some(path) => std::fs::write(&path, &bytes).map_err(|source| CaCommandError::Output {
            target: path.display().to_string(),
            source,
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            if format == ExportFormat::Der && stdout.is_terminal() {
                return Err(CaCommandError::DerToTerminal);
            }
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|source| CaCommandError::Output {
                    target: "standard output".to_owned(),
                    source,
                })
        }
    }
}

fn init(args: &ConfigArgs, force: bool, key_type: Option<KeyType>) -> Result<(), CaCommandError> {
    let (config, files) = ca_files(args)?;
    let key_type = key_type.unwrap_or(config.ca.key_type);
    let replaced = files.cert.exists() || files.key.exists();
    let root = store::init(&config.ca, key_type, &files, force)?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "Created a new root CA.")
        .and_then(|()| {
            write_summary(
                &mut out,
                root.certificate(),
                &files,
                "matches the certificate",
            )
        })
        .and_then(|()| {
            // swg loads the CA only at start, and this command cannot tell whether
            // a gateway is running, so the note comes with every replacement.
            if replaced {
                writeln!(out, "{REPLACED_ROOT_NOTE}")
            } else {
                Ok(())
            }
        })
        .map_err(|source| CaCommandError::Output {
            target: "standard output".to_owned(),
            source,
        })
}

/// The instructions printed after `swg ca init --force` replaced a root CA.
const REPLACED_ROOT_NOTE: &str = "\
Running swg processes keep using the old root CA until they restart: restart every
`swg serve` that uses these files, and install the new root on devices first
(`swg ca export`), because devices reject leaves from a root they do not trust.";
