//! The demo tenant that `swg serve` loads when no policy file is configured.
//!
//! The policy and its feeds (copies of real public threat lists) are embedded in the
//! binary and written into `<data_dir>/policy/` on first start, so that an operator can
//! edit the copy while swg runs. Files that already exist are never overwritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Each embedded file: its path below `<data_dir>/policy/` and its content.
const FILES: &[(&str, &str)] = &[
    (
        "demo.toml",
        include_str!("../deploy/examples/demo/policy.toml"),
    ),
    (
        "feeds/urlhaus-filter-online.txt",
        include_str!("../deploy/examples/demo/feeds/urlhaus-filter-online.txt"),
    ),
    (
        "feeds/phishing-domains.txt",
        include_str!("../deploy/examples/demo/feeds/phishing-domains.txt"),
    ),
    (
        "feeds/phishing-allowlist.txt",
        include_str!("../deploy/examples/demo/feeds/phishing-allowlist.txt"),
    ),
    (
        "feeds/gambling.txt",
        include_str!("../deploy/examples/demo/feeds/gambling.txt"),
    ),
    (
        "feeds/SOURCES.md",
        include_str!("../deploy/examples/demo/feeds/SOURCES.md"),
    ),
    (
        "feeds/LICENSE-urlhaus-filter.md",
        include_str!("../deploy/examples/demo/feeds/LICENSE-urlhaus-filter.md"),
    ),
    (
        "feeds/LICENSE-eth-phishing-detect",
        include_str!("../deploy/examples/demo/feeds/LICENSE-eth-phishing-detect"),
    ),
];

/// Writes the demo policy and its feeds below `data_dir` where they are missing, and
/// returns the path of the policy file.
pub(crate) fn install(data_dir: &Path) -> std::io::Result<PathBuf> {
    let folder = data_dir.join("policy");
    for (relative, content) in FILES {
        let path = folder.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => file.write_all(content.as_bytes())?,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(folder.join("demo.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_policy_once_and_keeps_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = install(dir.path()).unwrap();
        assert!(path.ends_with("policy/demo.toml"));
        let set = swg_policy::PolicySet::load(std::slice::from_ref(&path)).unwrap();
        assert!(set.tenant("demo").is_some());

        std::fs::write(&path, "id = \"edited\"\n").unwrap();
        install(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "id = \"edited\"\n");
    }
}
