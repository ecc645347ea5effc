//! `swg secrets`: creates a tenant's admin token or authentication key offline, for
//! an operator who lost the ones `swg serve` printed at first start.
//!
//! It writes to the console state store in the data folder, which a running
//! `swg serve` shares (SQLite serializes the writers), so the new secret works at
//! once without a restart.
//!
//! `swg serve` seeds the tenants of its policy only at start. For a tenant that is
//! in the policy but was never seeded, such as one added while swg runs, the
//! command first creates the tenant's first authentication key, admin token and
//! disabler password, as `swg serve` would, and prints them too.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use swg_identity::{
    seed_tenant, AuthenticationKey, NewAdminToken, Role, SecretStore, SeededSecrets,
    SqliteSecretStore,
};

use crate::components::CONSOLE_DATABASE;
use crate::config::ConfigArgs;

/// Subcommands of `swg secrets`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SecretsCommand {
    /// Create an admin token for a tenant and print it once (only its hash is stored).
    AdminToken {
        #[command(flatten)]
        config: ConfigArgs,
        /// The tenant id, as in its policy file.
        #[arg(long)]
        tenant: String,
        /// The role, which limits what the token may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
    },
    /// Create an authentication key (for agents and MDM profiles) for a tenant and print it.
    AuthKey {
        #[command(flatten)]
        config: ConfigArgs,
        /// The tenant id, as in its policy file.
        #[arg(long)]
        tenant: String,
    },
}

/// Roles of `swg secrets admin-token --role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RoleArg {
    /// Read and change everything of the tenant.
    Admin,
    /// Read everything of the tenant, change nothing.
    // Spelled as in the API; `read-only` is kept for scripts written before.
    #[value(name = "read_only", alias = "read-only")]
    ReadOnly,
}

/// Error of a `swg secrets` command.
#[derive(Debug, thiserror::Error)]
enum SecretsError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("no console state at {0}; start `swg serve` once with this data folder first")]
    NoStore(PathBuf),
    #[error(
        "tenant {tenant:?} has no secrets in {path} and is not in the policy ({files}); \
         add the tenant to a policy file, or check the tenant id"
    )]
    UnknownTenant {
        tenant: String,
        path: PathBuf,
        files: String,
    },
    #[error(
        "tenant {tenant:?} has no secrets in {path}, and the policy that would show \
         whether it exists is invalid: {errors}"
    )]
    InvalidPolicy {
        tenant: String,
        path: PathBuf,
        errors: swg_policy::LoadErrors,
    },
    #[error("console state {path}: {source}")]
    Store {
        path: PathBuf,
        source: swg_identity::StoreError,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs one `swg secrets` subcommand.
pub(crate) fn run(command: SecretsCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return super::fail(&SecretsError::Runtime(error)),
    };
    match runtime.block_on(create(command)) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => super::fail(&error),
    }
}

/// Creates the requested secret, and the tenant's first secrets if it was never
/// seeded, and returns the lines that show them, the requested one last.
async fn create(command: SecretsCommand) -> Result<Vec<String>, SecretsError> {
    let (args, tenant) = match &command {
        SecretsCommand::AdminToken { config, tenant, .. }
        | SecretsCommand::AuthKey { config, tenant } => (config, tenant),
    };
    let (config, _) = args.load()?;
    let path = config.data_dir.join(CONSOLE_DATABASE);
    if !path.is_file() {
        return Err(SecretsError::NoStore(path));
    }
    let store_error = |source| SecretsError::Store {
        path: path.clone(),
        source,
    };
    let store = SqliteSecretStore::open(&path).map_err(store_error)?;
    let now = swg_identity::unix_now();

    let mut seeded = SeededSecrets::default();
    if !store.is_seeded(tenant).await.map_err(store_error)? {
        check_policy_tenant(&config, tenant, &path)?;
        // Empty when a `swg serve` starting at the same moment seeded it first.
        seeded = seed_tenant(&store, tenant, now)
            .await
            .map_err(store_error)?;
        if seeded.authentication_key.is_some() {
            tracing::info!(%tenant, "tenant had no secrets yet; created its first ones");
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "Tenant {tenant} had no secrets yet, so its first secrets were created: an \
                 authentication key, an admin token and a disabler password. The admin token \
                 is shown only now."
            );
        }
    }

    let mut lines = Vec::new();
    let mut requested = None;
    if let Some(key) = &seeded.authentication_key {
        let line = key_line(key);
        match command {
            SecretsCommand::AuthKey { .. } => requested = Some(line),
            SecretsCommand::AdminToken { .. } => lines.push(line),
        }
    }
    if let Some(token) = &seeded.admin_token {
        let line = token_line(token);
        match command {
            SecretsCommand::AdminToken {
                role: RoleArg::Admin,
                ..
            } => requested = Some(line),
            _ => lines.push(line),
        }
    }
    let requested = match requested {
        Some(line) => line,
        None => create_requested(&store, &command, tenant, now)
            .await
            .map_err(store_error)?,
    };
    lines.push(requested);
    Ok(lines)
}

/// Creates the secret `command` requests and returns the line that shows it.
async fn create_requested(
    store: &SqliteSecretStore,
    command: &SecretsCommand,
    tenant: &str,
    now: u64,
) -> Result<String, swg_identity::StoreError> {
    match command {
        SecretsCommand::AdminToken { role, .. } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::ReadOnly => Role::ReadOnly,
            };
            let token = NewAdminToken::generate(tenant, role, now);
            store.insert_admin_token(&token.record).await?;
            tracing::info!(%tenant, token_id = %token.record.id, role = role.as_str(), "admin token created");
            Ok(token_line(&token))
        }
        SecretsCommand::AuthKey { .. } => {
            let key = AuthenticationKey::generate(tenant, now);
            store.insert_authentication_key(&key).await?;
            tracing::info!(%tenant, key_id = %key.id, "authentication key created");
            Ok(key_line(&key))
        }
    }
}

fn key_line(key: &AuthenticationKey) -> String {
    format!(
        "authentication key {} for tenant {}: {}",
        key.id, key.tenant, key.key
    )
}

fn token_line(token: &NewAdminToken) -> String {
    format!(
        "admin token {} ({}) for tenant {}: {}",
        token.record.id,
        token.record.role.as_str(),
        token.record.tenant,
        token.token
    )
}

/// Checks that `tenant` is in the policy that `swg serve` loads with this
/// configuration: the configured files, or the demo policy in the data folder.
fn check_policy_tenant(
    config: &crate::config::Config,
    tenant: &str,
    store: &Path,
) -> Result<(), SecretsError> {
    let mut files = config.policy.files.clone();
    if files.is_empty() {
        // `swg serve` installs and loads this file when no policy file is configured.
        let demo = config.data_dir.join("policy").join("demo.toml");
        if demo.is_file() {
            files.push(demo);
        }
    }
    let unknown = |files: &[PathBuf]| {
        let names: Vec<String> = files
            .iter()
            .map(|file| file.display().to_string())
            .collect();
        SecretsError::UnknownTenant {
            tenant: tenant.to_owned(),
            path: store.to_owned(),
            files: if names.is_empty() {
                "no policy file".to_owned()
            } else {
                names.join(", ")
            },
        }
    };
    if files.is_empty() {
        return Err(unknown(&files));
    }

    let policy =
        swg_policy::PolicySet::load(&files).map_err(|errors| SecretsError::InvalidPolicy {
            tenant: tenant.to_owned(),
            path: store.to_owned(),
            errors,
        })?;
    match policy.tenant(tenant) {
        Some(_) => Ok(()),
        None => Err(unknown(&files)),
    }
}
