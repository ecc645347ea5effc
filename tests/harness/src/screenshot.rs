//! Where screenshots go, so CI can keep them.

use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// Environment variable that overrides the screenshot folder.
pub const SCREENSHOT_DIR_ENV: &str = "SWG_SCREENSHOT_DIR";

/// The screenshot folder: `$SWG_SCREENSHOT_DIR`, else `target/screenshots` under the workspace
/// (found from this crate's manifest folder, `<workspace>/tests/harness`). Created if missing.
///
/// # Errors
/// [`HarnessError::Io`] if the folder cannot be created.
pub fn screenshot_dir() -> Result<PathBuf, HarnessError> {
    let dir = match std::env::var_os(SCREENSHOT_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"),
    };
    std::fs::create_dir_all(&dir).map_err(HarnessError::io(format!(
        "cannot create screenshot folder {}",
        dir.display()
    )))?;
    // Canonical, so the paths printed for CI logs have no `..` in them.
    dir.canonicalize().map_err(HarnessError::io(format!(
        "cannot resolve screenshot folder {}",
        dir.display()
    )))
}

/// Path of a screenshot named `name` (e.g. `block-390.png`) in [`screenshot_dir`].
///
/// # Errors
/// [`HarnessError::Io`] if the folder cannot be created.
pub fn screenshot_path(name: &str) -> Result<PathBuf, HarnessError> {
    Ok(screenshot_dir()?.join(name))
}
