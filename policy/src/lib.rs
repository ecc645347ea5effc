//! Policy model, domain and URL matching, categories and feeds, decisions.
//!
//! A [`PolicySet`] is loaded from TOML policy files (one or several tenants per file, see
//! `docs/policy.md`). Each [`Tenant`] decides DNS queries ([`Tenant::decide_dns`], or a
//! whole answer with its CNAME chain, [`Tenant::decide_dns_answer`]) and proxied requests
//! ([`Tenant::decide_url`]) for a [`Subject`] (user, groups, location) and an [`App`]
//! (bundle id, class hint). A [`Verdict`] carries the action after the app-class mapping,
//! the rule, category and policy that decided, and a reason for people. Every decision
//! function has a `_traced` form that records the rules it consulted, for
//! `swg policy explain` and the console.
//!
//! [`PolicyWatcher`] reloads changed files in a running process and swaps the set
//! atomically; a bad file never replaces a good set.
//!
//! ```
//! use swg_policy::{Action, App, PolicySet, Subject};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("policy.toml");
//! std::fs::write(&path, r#"
//! id = "acme"
//! [[policies]]
//! id = "everyone"
//! [policies.block]
//! domains = ["example.com"]
//! "#).unwrap();
//!
//! let set = PolicySet::load(&[&path]).unwrap();
//! let tenant = set.tenant("acme").unwrap();
//! let verdict = tenant.decide_dns("www.Example.com.", &Subject::anyone(), &App::bundle("com.acme.app"));
//! assert_eq!(verdict.action, Action::Block);
//! ```

mod app;
mod category;
mod compile;
mod config;
mod decide;
mod error;
mod explain;
mod feed;
mod index;
mod model;
mod name;
mod parse;
mod request_target;
mod set;
pub mod synthetic;
mod tenant;
mod upload;
mod verdict;
mod watch;

pub use app::{is_built_in_browser, App, AppClass, BUILT_IN_BROWSERS};
pub use category::{Category, CategoryGroup};
pub use config::{PolicyConfig, PolicyConfigError, MAX_POLL_INTERVAL_MS, MIN_POLL_INTERVAL_MS};
pub use error::{Diagnostic, DiagnosticKind, LoadErrors};
pub use explain::{ExplainError, Explained, Explanation};
pub use feed::{FeedFormat, FeedStats, SkippedLine, MAX_LINE_LEN};
pub use model::{
    CategoryAction, CategorySetting, FeedInfo, Group, Location, Policy, Target, TenantStats,
};
pub use name::{normalize_name, NameError, MAX_LABEL_LEN, MAX_NAME_LEN};
pub use request_target::canonical_target;
pub use set::PolicySet;
pub use tenant::{
    Canary, Subject, Tenant, CANARY_DOH, CANARY_PRIVATE_RELAY, DEFAULT_EXCEPTION_DOMAINS,
    TENANT_DEFAULT_POLICY,
};
pub use upload::Upload;
pub use verdict::{Action, ExceptionKind, Trace, TraceStep, Verdict};
pub use watch::{PolicyMetrics, PolicyWatcher, ReplaceError, WatchError, POLL_INTERVAL};
