//! Policy texts that come from outside the machine, such as the console API, and the
//! files such a text may make the server read.
//!
//! An operator's policy file may name any feed file. An uploaded text may not, because
//! the feed is loaded with the server's rights and a decision reveals which names it
//! lists: an upload that names another tenant's feed or policy file could test any name
//! against it.

use std::path::{Component, Path, PathBuf};

use crate::tenant::Tenant;

/// The policy file an uploaded text replaces, and the rule for the feed files it may
/// name.
#[derive(Debug, Clone)]
pub struct Upload {
    file: PathBuf,
    feeds: FeedRule,
}

/// The feed files an uploaded text may name.
#[derive(Debug, Clone)]
enum FeedRule {
    /// Relative paths inside the policy file's folder, without `..` and without a
    /// symbolic link that leads out of the folder.
    InFolder,
    /// Only these files: the feed files of the tenant's policy in force, each in its
    /// absolute form and, when it exists, with every symbolic link resolved.
    InForce(Vec<PathBuf>),
}

impl Upload {
    /// Builds the rule for a text that replaces `file` and may name any feed file inside
    /// the folder of `file`.
    ///
    /// This rule suits a folder that contains one tenant's files only. Where tenants share a
    /// folder it lets one tenant's upload read the others' feeds and policy files, and
    /// [`Upload::for_tenant`] is the rule to use.
    pub fn in_folder(file: &Path) -> Upload {
        Upload {
            file: file.to_path_buf(),
            feeds: FeedRule::InFolder,
        }
    }

    /// Builds the rule for a text that replaces the policy file of `tenant` and may name
    /// only the feed files that `tenant`'s policy in force names, in any spelling of
    /// their path. The operator placed those files for this tenant, so an upload can
    /// keep or drop them but cannot make the server read any other file.
    pub fn for_tenant(tenant: &Tenant) -> Upload {
        let mut allowed = Vec::new();
        for feed in &tenant.feeds {
            let Some(info) = tenant.shared.feeds.get(feed.feed as usize) else {
                continue;
            };
            allowed.extend(std::path::absolute(&info.path));
            allowed.extend(std::fs::canonicalize(&info.path));
        }
        Upload {
            file: tenant.file.clone(),
            feeds: FeedRule::InForce(allowed),
        }
    }

    /// Returns the policy file that the uploaded text replaces.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Checks the feed `id` whose `path` the uploaded text names, relative to `folder`,
    /// the folder of the policy file. Returns the diagnostic message when the rule
    /// forbids the path.
    ///
    /// Under [`Upload::for_tenant`] the message is the same whether or not the file
    /// exists, so that an upload cannot probe the server's files.
    pub(crate) fn check_feed_path(
        &self,
        id: &str,
        folder: &Path,
        path: &str,
    ) -> Result<(), String> {
        let resolved = folder.join(path);
        match &self.feeds {
            FeedRule::InFolder => {
                if !stays_in_folder(path) {
                    return Err(format!(
                        "feed path {path:?} is not allowed in an uploaded policy; use a path relative to the policy file's folder, without `..`"
                    ));
                }
                if !resolves_inside(folder, &resolved) {
                    return Err(format!(
                        "feed path {path:?} leads outside the policy file's folder through a symbolic link, which an uploaded policy may not follow"
                    ));
                }
                Ok(())
            }
            FeedRule::InForce(allowed) => {
                let forms = [
                    std::path::absolute(&resolved).ok(),
                    std::fs::canonicalize(&resolved).ok(),
                ];
                if forms.iter().flatten().any(|form| allowed.contains(form)) {
                    return Ok(());
                }
                // The path is not quoted, so that the message is the same for every
                // forbidden path. The diagnostic's line and column point at it.
                Err(format!(
                    "feed `{id}`: an uploaded policy may name only the feed files that the policy in force already names, and this path is not one of them. Ask the operator to add the feed on the server."
                ))
            }
        }
    }
}

/// Tells whether `path` is relative and names something inside its base folder:
/// no root, no drive prefix and no `..` component.
fn stays_in_folder(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|component| matches!(component, Component::Normal(_) | Component::CurDir))
}

/// Tells whether `path`, with every symbolic link followed, lies inside `base`. A path
/// that does not exist counts as inside, because loading it then fails as not found.
fn resolves_inside(base: &Path, path: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else {
        return true;
    };
    let Ok(real_base) = std::fs::canonicalize(if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    }) else {
        return false;
    };
    real.starts_with(real_base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::PolicySet;

    const ACME: &str = "id = \"acme\"\n[[feeds]]\nid = \"own\"\npath = \"feeds/own.txt\"\nformat = \"domains\"\n[[policies]]\nid = \"p\"\n";
    const GLOBEX: &str = "id = \"globex\"\n[[locations]]\nid = \"office\"\ncidrs = [\"10.1.0.0/16\"]\n[[feeds]]\nid = \"private\"\npath = \"feeds/globex.txt\"\nformat = \"domains\"\n[[policies]]\nid = \"p\"\n";

    /// Writes acme's and globex's policy files and feeds into one folder and loads them.
    fn shared_folder() -> (tempfile::TempDir, PolicySet) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("feeds")).unwrap();
        std::fs::write(dir.path().join("feeds/own.txt"), "own.example\n").unwrap();
        std::fs::write(dir.path().join("feeds/globex.txt"), "secret.example\n").unwrap();
        std::fs::write(dir.path().join("acme.toml"), ACME).unwrap();
        std::fs::write(dir.path().join("globex.toml"), GLOBEX).unwrap();
        let set = PolicySet::load(&[dir.path().join("globex.toml"), dir.path().join("acme.toml")])
            .unwrap();
        (dir, set)
    }

    #[test]
    fn tenant_upload_names_only_feeds_in_force() {
        let (dir, set) = shared_folder();
        let upload = Upload::for_tenant(set.tenant("acme").unwrap());
        let folder = dir.path();
        std::os::unix::fs::symlink(folder.join("feeds/own.txt"), folder.join("own-link.txt"))
            .unwrap();
        std::os::unix::fs::symlink(folder.join("feeds/globex.txt"), folder.join("link.txt"))
            .unwrap();
        let own_absolute = folder.join("feeds/own.txt");

        for allowed in [
            "feeds/own.txt",
            "./feeds/own.txt",
            "feeds/../feeds/own.txt",
            "own-link.txt",
            own_absolute.to_str().unwrap(),
        ] {
            assert_eq!(
                upload.check_feed_path("f", folder, allowed),
                Ok(()),
                "{allowed}"
            );
        }

        let mut messages = Vec::new();
        for forbidden in [
            "feeds/globex.txt",
            "globex.toml",
            "acme.toml",
            "link.txt",
            "feeds",
            "feeds/missing.txt",
            "/etc/hostname",
        ] {
            let message = upload.check_feed_path("f", folder, forbidden).unwrap_err();
            assert!(message.starts_with("feed `f`: "), "{message}");
            messages.push(message);
        }
        assert!(
            messages.iter().all(|message| *message == messages[0]),
            "{messages:#?}"
        );
    }

    #[test]
    fn tenant_upload_cannot_load_other_feed() {
        let (dir, set) = shared_folder();
        let acme = dir.path().join("acme.toml");
        let upload = Upload::for_tenant(set.tenant("acme").unwrap());
        let stealing = ACME.replace("feeds/own.txt", "feeds/globex.txt");
        let files = [
            (dir.path().join("globex.toml"), GLOBEX.to_owned()),
            (acme.clone(), stealing),
        ];

        let errors = PolicySet::from_texts(&files, Some(&upload)).unwrap_err();
        assert_eq!(errors.diagnostics.len(), 1, "{errors}");
        assert_eq!(errors.diagnostics[0].path, acme);
        assert!(
            errors.diagnostics[0].message.contains("feed `own`"),
            "{errors}"
        );
    }

    #[test]
    fn overlap_with_upload_hides_other_tenant() {
        let (dir, set) = shared_folder();
        let acme = dir.path().join("acme.toml");
        let upload = Upload::for_tenant(set.tenant("acme").unwrap());
        // acme's network overlaps both of globex's networks: one diagnostic, in acme's
        // file although globex's file comes first, so the count reveals nothing either.
        let globex = GLOBEX.replace("\"10.1.0.0/16\"", "\"10.1.0.0/16\", \"10.2.0.0/16\"");
        let overlapping = ACME.replace(
            "[[policies]]",
            "[[locations]]\nid = \"hq\"\ncidrs = [\"10.0.0.0/8\"]\n[[policies]]",
        );
        let files = [
            (dir.path().join("globex.toml"), globex),
            (acme.clone(), overlapping),
        ];

        let errors = PolicySet::from_texts(&files, Some(&upload)).unwrap_err();
        assert_eq!(errors.diagnostics.len(), 1, "{errors}");
        let diagnostic = &errors.diagnostics[0];
        assert_eq!(diagnostic.path, acme);
        assert_eq!(diagnostic.line, 8, "{diagnostic}");
        assert!(
            diagnostic
                .message
                .contains("location `hq` network 10.0.0.0/8 overlaps a network of another tenant"),
            "{diagnostic}"
        );
        for hidden in ["globex", "office", "10.1.0.0", "10.2.0.0", ".toml"] {
            assert!(!diagnostic.message.contains(hidden), "{diagnostic}");
        }

        // Loaded by the operator, the same files name both sides.
        let errors = PolicySet::from_texts(&files, None).unwrap_err();
        assert_eq!(errors.diagnostics.len(), 2, "{errors}");
        assert!(
            errors.diagnostics[0].message.contains("of tenant `globex`"),
            "{errors}"
        );
    }
}
