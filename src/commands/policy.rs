//! `swg policy`: checks and explains policy files offline.

use std::path::PathBuf;
use std::process::ExitCode;

use swg_policy::{App, AppClass, PolicySet, Subject};

/// Subcommands of `swg policy`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate policy files together; print every error, or one summary line per tenant.
    Check {
        /// Policy files (TOML). Tenant ids must be unique across them.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the verdict for a host name or URL and every rule consulted.
    Explain {
        /// Policy file to load; repeat for several files.
        #[arg(long = "policy", required = true, value_name = "FILE")]
        policies: Vec<PathBuf>,
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// User id, as in the device token.
        #[arg(long)]
        user: Option<String>,
        /// Group id, in addition to the groups the policy file gives the user; repeatable.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Location id.
        #[arg(long)]
        location: Option<String>,
        /// Bundle id of the asking app, such as com.apple.mobilesafari.
        #[arg(long, value_name = "BUNDLE")]
        app: Option<String>,
        /// App class hint, used only without --app.
        #[arg(long, value_enum, value_name = "CLASS")]
        class: Option<ClassHint>,
        /// A host name (decided at DNS) or a URL with a scheme (decided at DNS and at the proxy).
        #[arg(value_name = "NAME_OR_URL")]
        target: String,
    },
}

/// App class hints accepted by `--class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ClassHint {
    /// A browser.
    Browser,
    /// An ordinary app.
    App,
    /// A trusted app.
    TrustedApp,
}

/// Runs one `swg policy` subcommand.
pub(crate) fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { files } => check(&files),
        PolicyCommand::Explain {
            policies,
            tenant,
            user,
            groups,
            location,
            app,
            class,
            target,
        } => {
            let subject = Subject {
                user: user.as_deref(),
                groups: &groups,
                location: location.as_deref(),
            };
            let app = App {
                bundle_id: app.as_deref(),
                class_hint: class.map(|class| match class {
                    ClassHint::Browser => AppClass::Browser,
                    ClassHint::App => AppClass::App,
                    ClassHint::TrustedApp => AppClass::TrustedApp,
                }),
            };
            explain(&policies, &tenant, &subject, &app, &target)
        }
    }
}

fn load(files: &[PathBuf]) -> Option<PolicySet> {
    // A file named twice would otherwise define each of its tenants twice.
    let mut unique: Vec<&PathBuf> = Vec::with_capacity(files.len());
    let mut seen = std::collections::HashSet::new();
    for file in files {
        if seen.insert(std::fs::canonicalize(file).unwrap_or_else(|_| file.clone())) {
            unique.push(file);
        }
    }
    match PolicySet::load(&unique) {
        Ok(set) => Some(set),
        Err(errors) => {
            for diagnostic in &errors.diagnostics {
                eprintln!("{diagnostic}");
            }
            eprintln!(
                "error: {} problem(s) found; the policy was not accepted",
                errors.count()
            );
            None
        }
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    let Some(set) = load(files) else {
        return ExitCode::FAILURE;
    };
    for tenant in set.tenants() {
        let stats = tenant.stats();
        println!(
            "{}: ok, tenant {} ({}): {} policies, {} block entries, {} allow entries, {} exceptions, {} locations, {} feed entries, {} feed lines skipped",
            tenant.file().display(),
            tenant.id(),
            tenant.name(),
            stats.policies,
            stats.block_entries,
            stats.allow_entries,
            stats.exceptions,
            stats.locations,
            stats.feed_entries,
            stats.feed_skipped,
        );
    }
    for feed in set.feeds().iter().filter(|feed| feed.stats.skipped > 0) {
        let examples: Vec<String> = feed
            .stats
            .skipped_examples
            .iter()
            .map(|skipped| format!("line {}: {}", skipped.line, skipped.reason))
            .collect();
        println!(
            "{}: {} line(s) skipped, for example {}",
            feed.path.display(),
            feed.stats.skipped,
            examples.join("; ")
        );
    }
    ExitCode::SUCCESS
}

fn explain(
    files: &[PathBuf],
    tenant_id: &str,
    subject: &Subject<'_>,
    app: &App<'_>,
    target: &str,
) -> ExitCode {
    let Some(set) = load(files) else {
        return ExitCode::FAILURE;
    };
    let Some(tenant) = set.tenant(tenant_id) else {
        let known: Vec<&str> = set.tenants().iter().map(|t| t.id()).collect();
        eprintln!(
            "error: no tenant `{tenant_id}` in the policy; tenants: {}",
            known.join(", ")
        );
        return ExitCode::FAILURE;
    };
    if let Some(location) = subject.location {
        let known: Vec<&str> = tenant.locations().iter().map(|l| l.id.as_str()).collect();
        if !known.contains(&location) {
            eprintln!(
                "error: tenant `{tenant_id}` has no location `{location}`; locations: {}",
                names_or_none(&known)
            );
            return ExitCode::FAILURE;
        }
    }
    let known: Vec<&str> = tenant.groups().iter().map(|g| g.id.as_str()).collect();
    if let Some(group) = subject.groups.iter().find(|g| !known.contains(&g.as_str())) {
        eprintln!(
            "error: tenant `{tenant_id}` has no group `{group}`; groups: {}",
            names_or_none(&known)
        );
        return ExitCode::FAILURE;
    }
    match tenant.explain(target, subject, app) {
        Ok(explanation) => {
            println!("{target} for tenant {tenant_id}");
            print!("{explanation}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Joins ids for a message, or returns "none" when there are none.
fn names_or_none(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}
