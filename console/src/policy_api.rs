//! Admin API for the tenant's policy: read, validate, replace, explain.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use swg_policy::{
    App, Diagnostic, Explained, LoadErrors, PolicySet, ReplaceError, Subject, Tenant, Upload,
};

use crate::auth::Admin;
use crate::body::{ApiJson, TextBody};
use crate::{ApiError, ConsoleState};

/// Converts diagnostics of the admin's text for the client, with their server paths
/// replaced.
fn diagnostics(errors: &LoadErrors, paths: &ClientPaths) -> Vec<serde_json::Value> {
    errors
        .diagnostics
        .iter()
        .map(|diagnostic| {
            serde_json::json!({
                "line": diagnostic.line,
                "column": diagnostic.column,
                "message": paths.replace(&diagnostic.message),
            })
        })
        .collect()
}

/// The server paths that policy diagnostics may contain, each with the text the
/// client sees in its place.
///
/// Diagnostics name the policy file (a duplicate id), other policy files (a
/// location that overlaps another tenant's) and resolved feed paths (a missing
/// feed), and no server path may reach an API client.
#[derive(Debug)]
struct ClientPaths {
    /// Path and replacement, longest path first, so that a file is replaced before
    /// the folder that contains it.
    replacements: Vec<(String, &'static str)>,
}

impl ClientPaths {
    /// Builds the replacements for `file`, the tenant's policy file, and `watched`,
    /// every policy file. `file` becomes `<policy>`, the other files become
    /// `<another policy file>`, and the folder of `file` is removed, so a feed path
    /// reads as the text names it. Each path is matched as given and in its
    /// absolute form, which feed messages use.
    fn new(file: &Path, watched: &[PathBuf]) -> Self {
        let mut replacements = Vec::new();
        for form in path_forms(file) {
            replacements.push((form, "<policy>"));
        }
        for other in watched.iter().filter(|other| other.as_path() != file) {
            for form in path_forms(other) {
                replacements.push((form, "<another policy file>"));
            }
        }
        let absolute_file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        for folder in [file.parent(), absolute_file.parent()]
            .into_iter()
            .flatten()
        {
            let mut folder = folder.display().to_string();
            if folder.is_empty() {
                continue;
            }
            if !folder.ends_with(std::path::MAIN_SEPARATOR) {
                folder.push(std::path::MAIN_SEPARATOR);
            }
            replacements.push((folder, ""));
        }
        replacements.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Self { replacements }
    }

    /// Returns `message` with every known server path replaced.
    fn replace(&self, message: &str) -> String {
        self.replacements
            .iter()
            .fold(message.to_owned(), |message, (path, replacement)| {
                message.replace(path.as_str(), replacement)
            })
    }
}

/// Returns `path` as given and in its absolute form, when that differs.
fn path_forms(path: &Path) -> Vec<String> {
    let mut forms = vec![path.display().to_string()];
    if let Ok(absolute) = std::path::absolute(path) {
        let absolute = absolute.display().to_string();
        if absolute != forms[0] {
            forms.push(absolute);
        }
    }
    forms
}

/// Builds the 404 for a tenant that no loaded policy defines.
fn no_policy(tenant: &str) -> ApiError {
    ApiError::no_such_id("policy for the tenant", tenant)
}

/// Builds the 409 for a tenant whose policy file also contains other tenants. The API
/// cannot `action` ("read" or "replaced") such a file without showing or overwriting
/// their policies.
fn shared_file(tenant: &str, file: &Path, action: &str) -> ApiError {
    tracing::info!(
        tenant,
        file = %file.display(),
        action,
        "policy request rejected because the tenant shares its policy file with other tenants"
    );
    ApiError::Conflict(format!(
        "your tenant's policy is in a policy file shared with other tenants, so it is managed on the server and cannot be {action} through the API. Ask the operator to edit that file or to give your tenant a policy file of its own."
    ))
}

/// Returns the admin's tenant in `policy`: 404 when no policy defines it, 409 when its
/// policy file contains other tenants too.
fn own_tenant<'a>(
    policy: &'a PolicySet,
    tenant: &str,
    action: &str,
) -> Result<&'a Tenant, ApiError> {
    let own = policy.tenant(tenant).ok_or_else(|| no_policy(tenant))?;
    if policy
        .tenants()
        .iter()
        .any(|other| other.file() == own.file() && other.id() != tenant)
    {
        return Err(shared_file(tenant, own.file(), action));
    }
    Ok(own)
}

/// `GET /api/policy`: the text of the tenant's policy file in force.
///
/// The text comes from the policy in force, not from the disk, because a file on disk
/// that an operator is editing may already contain other tenants' policies.
pub(crate) async fn read(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    let policy = state.policy.current();
    let file = own_tenant(&policy, admin.tenant(), "read")?.file();
    let text = policy.file_text(file).ok_or_else(|| {
        ApiError::Internal(format!(
            "the policy in force has no text for {}",
            file.display()
        ))
    })?;
    Ok((
        [(CONTENT_TYPE, "application/toml; charset=utf-8")],
        text.to_owned(),
    )
        .into_response())
}

/// The result of a successful validation.
#[derive(Debug, Serialize)]
pub(crate) struct Validation {
    valid: bool,
    tenants: Vec<String>,
}

/// Builds the 400 for a text that defines other tenants than the admin's own.
///
/// The message names only the admin's tenant and the ids the text defines, so it is
/// the same whether or not another tenant has one of those ids.
fn wrong_tenant(tenant: &str, defined: &[&str]) -> ApiError {
    ApiError::BadRequest(format!(
        "the policy must define exactly one tenant, whose id is your own tenant id {tenant:?}, but it defines {defined:?}"
    ))
}

/// Compiles `text` alone as the file of `upload` and checks that it defines exactly
/// `tenant`: 422 with the text's diagnostics, or 400.
///
/// Validation and replacement both start with this check, so they agree. It runs
/// before the text is compiled with the other tenants' files, because there another
/// tenant's id fails as a duplicate, reported in that tenant's file, while an unused
/// id does not. That difference would tell the admin which tenant ids exist.
fn check_tenant_text(
    upload: &Upload,
    tenant: &str,
    text: &str,
    paths: &ClientPaths,
) -> Result<(), ApiError> {
    let files = [(upload.file().to_path_buf(), text.to_owned())];
    let set = PolicySet::from_texts(&files, Some(upload))
        .map_err(|errors| ApiError::InvalidPolicy(diagnostics(&errors, paths)))?;
    let defined: Vec<&str> = set.tenants().iter().map(|tenant| tenant.id()).collect();
    if defined != [tenant] {
        tracing::info!(
            tenant,
            ?defined,
            "policy text rejected because it defines other tenants"
        );
        return Err(wrong_tenant(tenant, &defined));
    }
    Ok(())
}

/// The policy file of a tenant's upload, with the rule for its feed paths and the
/// replacements for server paths in its diagnostics.
struct UploadContext {
    tenant: String,
    upload: Upload,
    paths: ClientPaths,
}

impl UploadContext {
    /// Builds the context for an upload by the admin's `tenant`: 404 when no policy
    /// defines the tenant, 409 when its policy file contains other tenants too.
    fn new(state: &ConsoleState, tenant: &str) -> Result<Self, ApiError> {
        let policy = state.policy.current();
        let own = own_tenant(&policy, tenant, "replaced")?;
        Ok(Self {
            tenant: tenant.to_owned(),
            upload: Upload::for_tenant(own),
            paths: ClientPaths::new(own.file(), state.policy.paths()),
        })
    }

    /// Maps a failed check or replacement to an API error.
    fn error(&self, error: ReplaceError) -> ApiError {
        replace_error(error, &self.tenant, self.upload.file(), &self.paths)
    }
}

/// `POST /api/policy/validate`: checks a policy text as `PUT /api/policy` does,
/// without changing anything.
pub(crate) async fn validate(
    State(state): State<ConsoleState>,
    admin: Admin,
    TextBody(text): TextBody,
) -> Result<Json<Validation>, ApiError> {
    let context = UploadContext::new(&state, admin.tenant())?;
    let watcher = state.policy.clone();
    tokio::task::spawn_blocking(move || {
        check_tenant_text(&context.upload, &context.tenant, &text, &context.paths)?;
        watcher
            .check_uploaded_tenant(&context.tenant, &text)
            .map_err(|error| context.error(error))
    })
    .await??;

    Ok(Json(Validation {
        valid: true,
        tenants: vec![admin.tenant().to_owned()],
    }))
}

/// `PUT /api/policy`: validates the text and, if valid, atomically replaces the
/// tenant's policy file and puts it in force. An invalid text changes nothing.
pub(crate) async fn replace(
    State(state): State<ConsoleState>,
    admin: Admin,
    TextBody(text): TextBody,
) -> Result<Json<Validation>, ApiError> {
    admin.require_write()?;
    let context = UploadContext::new(&state, admin.tenant())?;
    let watcher = state.policy.clone();
    tokio::task::spawn_blocking(move || {
        check_tenant_text(&context.upload, &context.tenant, &text, &context.paths)?;
        watcher
            .replace_uploaded_tenant(&context.tenant, &text)
            .map_err(|error| context.error(error))
    })
    .await??;

    tracing::info!(tenant = %admin.tenant(), admin = %admin.0.id, "policy replaced");
    Ok(Json(Validation {
        valid: true,
        tenants: vec![admin.tenant().to_owned()],
    }))
}

/// Maps a failed check or replacement of `tenant`'s policy file `file` to an API
/// error.
fn replace_error(error: ReplaceError, tenant: &str, file: &Path, paths: &ClientPaths) -> ApiError {
    match error {
        // Diagnostics in other files name other tenants and the server's paths, and
        // their lines are not lines of the admin's text. The text alone is valid, so
        // only an operator can fix those files, and only the server log names them.
        ReplaceError::Invalid(errors) if errors.diagnostics.iter().any(|d| d.path != file) => {
            ApiError::Internal(other_files_invalid(tenant, file, &errors))
        }
        ReplaceError::Invalid(errors) => ApiError::InvalidPolicy(diagnostics(&errors, paths)),
        ReplaceError::UnknownTenant(tenant) => no_policy(&tenant),
        // Reached only when a reload changed the policy after the context was built.
        ReplaceError::SharedFile { tenant, file } => shared_file(&tenant, &file, "replaced"),
        // Reached only when a reload changed the policy after the text was checked.
        ReplaceError::WrongTenant { expected, found } => {
            let defined: Vec<&str> = found.split(", ").filter(|id| !id.is_empty()).collect();
            wrong_tenant(&expected, &defined)
        }
        error => ApiError::Internal(error.to_string()),
    }
}

/// Describes, for the server log, the other policy files whose errors keep `tenant`'s
/// text in `file` from being checked: their paths, the error count and the first
/// error, on one line.
fn other_files_invalid(tenant: &str, file: &Path, errors: &LoadErrors) -> String {
    let others: Vec<&Diagnostic> = errors
        .diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.path != file)
        .collect();
    let mut files: Vec<String> = Vec::new();
    for diagnostic in &others {
        let path = diagnostic.path.display().to_string();
        if !files.contains(&path) {
            files.push(path);
        }
    }
    let first = others
        .first()
        .map(|diagnostic| diagnostic.to_string().replace('\n', " "))
        .unwrap_or_default();
    format!(
        "cannot check the new policy of tenant {tenant:?} because other policy files are invalid: {}. They have {} error(s), the first is {first}",
        files.join(", "),
        others.len()
    )
}

/// An explain request: a URL (proxy decision) or a domain (DNS decision).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExplainRequest {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    app: Option<String>,
}

/// One rule the decision consulted.
#[derive(Debug, Serialize)]
pub(crate) struct ExplainStep {
    matched: bool,
    rule: String,
    detail: String,
}

/// The decision and the rules behind it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Explanation {
    action: String,
    policy_action: String,
    app_class: String,
    rule_id: Option<String>,
    category: Option<String>,
    policy_id: Option<String>,
    reason: String,
    trace: Vec<ExplainStep>,
}

/// `POST /api/policy/explain`: the decision for a URL or domain and why.
pub(crate) async fn explain(
    State(state): State<ConsoleState>,
    admin: Admin,
    ApiJson(request): ApiJson<ExplainRequest>,
) -> Result<Json<Explanation>, ApiError> {
    let policy = state.policy.current();
    let tenant = policy
        .tenant(admin.tenant())
        .ok_or_else(|| no_policy(admin.tenant()))?;
    let subject = match request.user.as_deref() {
        Some(user) => Subject::user(user),
        None => Subject::anyone(),
    };
    let app = request.app.as_deref().map(App::bundle).unwrap_or_default();

    // The same explanation as `swg policy explain`, so both report canary names and
    // invalid input alike.
    let explain = |input: &str| {
        tenant
            .explain(input, &subject, &app)
            .map_err(|error| ApiError::BadRequest(error.to_string()))
    };
    let Explained { verdict, trace } = match (&request.url, &request.domain) {
        (Some(url), None) if url.contains("://") => explain(url)?
            .proxy
            .ok_or_else(|| ApiError::BadRequest("url has no host".to_owned()))?,
        (Some(_), None) => {
            return Err(ApiError::BadRequest(
                "url must be an absolute URL such as https://host/path".to_owned(),
            ))
        }
        (None, Some(domain)) if !domain.contains("://") => explain(domain)?.dns,
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(
                "domain must be a host name; give a URL as url".to_owned(),
            ))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of url and domain".to_owned(),
            ))
        }
    };

    Ok(Json(Explanation {
        action: verdict.activity_action().to_owned(),
        policy_action: verdict.policy_action.as_str().to_owned(),
        app_class: verdict.app_class.as_str().to_owned(),
        rule_id: verdict.rule_id,
        category: verdict
            .category
            .map(|category| category.as_str().to_owned()),
        policy_id: verdict.policy_id.map(|id| id.to_string()),
        reason: verdict.reason,
        trace: trace
            .steps
            .into_iter()
            .map(|step| ExplainStep {
                matched: step.matched,
                rule: step.rule,
                detail: step.detail,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_paths_replace_server_paths() {
        let file = Path::new("/srv/swg/policies/acme.toml");
        let watched = [
            file.to_path_buf(),
            PathBuf::from("/srv/swg/other/globex.toml"),
        ];
        let paths = ClientPaths::new(file, &watched);

        assert_eq!(
            paths.replace("feed file not found: /srv/swg/policies/lists/ads.txt (paths are relative to the policy file)"),
            "feed file not found: lists/ads.txt (paths are relative to the policy file)"
        );
        assert_eq!(
            paths.replace("duplicate tenant id `acme`; it is already defined at /srv/swg/policies/acme.toml:2:6"),
            "duplicate tenant id `acme`; it is already defined at <policy>:2:6"
        );
        assert_eq!(
            paths.replace(
                "overlaps 10.1.0.0/16 of tenant `globex` (/srv/swg/other/globex.toml:5:10)"
            ),
            "overlaps 10.1.0.0/16 of tenant `globex` (<another policy file>:5:10)"
        );
    }

    #[test]
    fn client_paths_replace_absolute_form_of_relative_file() {
        let file = Path::new("policies/acme.toml");
        let paths = ClientPaths::new(file, &[file.to_path_buf()]);
        let folder = std::path::absolute("policies").unwrap();
        let feed = folder.join("lists").join("ads.txt");

        assert_eq!(
            paths.replace(&format!("feed file not found: {}", feed.display())),
            "feed file not found: lists/ads.txt"
        );
        assert_eq!(
            paths.replace("cannot read feed policies/lists/ads.txt: permission denied"),
            "cannot read feed lists/ads.txt: permission denied"
        );
        assert_eq!(
            paths.replace("already defined at policies/acme.toml:2:6"),
            "already defined at <policy>:2:6"
        );
    }
}
