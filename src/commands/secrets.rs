//! `swg secrets`: creates a tenant's admin token or authentication key offline, for
//! an operator who lost the ones `swg serve` printed at first start.
//!
//! It writes to the console state store in the data folder, which a running
//! `swg serve` shares (SQLite serializes the writers), so the new secret works at
//! once without a restart.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use swg_identity::{AuthenticationKey, NewAdminToken, Role, SecretStore, SqliteSecretStore};

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
    ReadOnly,
}

/// Error of a `swg secrets` command.
#[derive(Debug, thiserror::Error)]
enum SecretsError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("no console state at {0}; start `swg serve` once with this data folder first")]
    NoStore(PathBuf),
    #[error("tenant {tenant:?} has no secrets in {path}; `swg serve` creates them at start for every tenant of the policy")]
    UnknownTenant { tenant: String, path: PathBuf },
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
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            ExitCode::SUCCESS
        }
        Err(error) => super::fail(&error),
    }
}

/// Creates the secret and returns the line that shows it.
async fn create(command: SecretsCommand) -> Result<String, SecretsError> {
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
    let keys = store
        .list_authentication_keys(tenant)
        .await
        .map_err(store_error)?;
    let tokens = store.list_admin_tokens(tenant).await.map_err(store_error)?;
    if keys.is_empty() && tokens.is_empty() {
        return Err(SecretsError::UnknownTenant {
            tenant: tenant.clone(),
            path,
        });
    }

    let now = swg_identity::unix_now();
    match command {
        SecretsCommand::AdminToken { role, .. } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::ReadOnly => Role::ReadOnly,
            };
            let token = NewAdminToken::generate(tenant, role, now);
            store
                .insert_admin_token(&token.record)
                .await
                .map_err(store_error)?;
            tracing::info!(%tenant, token_id = %token.record.id, role = role.as_str(), "admin token created");
            Ok(format!(
                "admin token {} ({}) for tenant {tenant}: {}",
                token.record.id,
                role.as_str(),
                token.token
            ))
        }
        SecretsCommand::AuthKey { .. } => {
            let key = AuthenticationKey::generate(tenant, now);
            store
                .insert_authentication_key(&key)
                .await
                .map_err(store_error)?;
            tracing::info!(%tenant, key_id = %key.id, "authentication key created");
            Ok(format!(
                "authentication key {} for tenant {tenant}: {}",
                key.id, key.key
            ))
        }
    }
}
