//! Storage of the root CA on disk: loading, generating and writing it.
//!
//! Without `[ca] cert_file`/`key_file` the CA lives in `<data_dir>/ca/`:
//! `root-cert.pem` and `root-key.pem` (PKCS#8, mode 0600).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::{CaConfig, KeyType};
use crate::root::{CaError, RootCa};

/// The certificate and key files of a root CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
    /// True when the operator named the files in the configuration; swg then
    /// never generates a CA there on its own.
    pub supplied: bool,
}

impl CaFiles {
    /// Returns the configured files, or the default files in `data_dir`.
    pub fn new(config: &CaConfig, data_dir: &Path) -> Self {
        match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => Self {
                cert: cert.clone(),
                key: key.clone(),
                supplied: true,
            },
            _ => {
                let folder = data_dir.join("ca");
                Self {
                    cert: folder.join("root-cert.pem"),
                    key: folder.join("root-key.pem"),
                    supplied: false,
                }
            }
        }
    }

    fn existing(&self) -> Result<Presence<'_>, CaError> {
        let cert = exists(&self.cert)?;
        let key = exists(&self.key)?;
        Ok(match (cert, key) {
            (true, true) => Presence::Both,
            (false, false) => Presence::Neither,
            (true, false) => Presence::Only {
                present: &self.cert,
                missing: &self.key,
            },
            (false, true) => Presence::Only {
                present: &self.key,
                missing: &self.cert,
            },
        })
    }
}

enum Presence<'a> {
    Both,
    Neither,
    Only {
        present: &'a Path,
        missing: &'a Path,
    },
}

fn exists(path: &Path) -> Result<bool, CaError> {
    path.try_exists().map_err(|source| CaError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Source of the CA that [`load_or_generate`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaOrigin {
    /// Read from existing files.
    Loaded,
    /// Generated now and written to the files.
    Generated,
}

/// Loads the CA from `files`. When neither file exists and the files are
/// swg's own rather than operator-supplied, generates a CA from `config`
/// and writes it there.
pub fn load_or_generate(config: &CaConfig, files: &CaFiles) -> Result<(RootCa, CaOrigin), CaError> {
    match files.existing()? {
        Presence::Both => Ok((RootCa::load(&files.cert, &files.key)?, CaOrigin::Loaded)),
        Presence::Only { present, missing } => Err(CaError::Incomplete {
            present: present.display().to_string(),
            missing: missing.display().to_string(),
        }),
        Presence::Neither if files.supplied => Err(not_found(files)),
        Presence::Neither => {
            let root = RootCa::generate(config.key_type, config)?;
            write(&root, files, false)?;
            Ok((root, CaOrigin::Generated))
        }
    }
}

/// Loads the CA from `files`, which must both exist.
pub fn load(files: &CaFiles) -> Result<RootCa, CaError> {
    match files.existing()? {
        Presence::Both => RootCa::load(&files.cert, &files.key),
        Presence::Only { present, missing } => Err(CaError::Incomplete {
            present: present.display().to_string(),
            missing: missing.display().to_string(),
        }),
        Presence::Neither => Err(not_found(files)),
    }
}

/// Generates a CA with `key_type` and writes it to `files`. An existing CA
/// (either file) is replaced only when `force` is set.
pub fn init(
    config: &CaConfig,
    key_type: KeyType,
    files: &CaFiles,
    force: bool,
) -> Result<RootCa, CaError> {
    let root = RootCa::generate(key_type, config)?;
    write(&root, files, force)?;
    Ok(root)
}

fn not_found(files: &CaFiles) -> CaError {
    CaError::NotFound {
        cert_path: files.cert.display().to_string(),
        key_path: files.key.display().to_string(),
    }
}

/// Writes the CA to `files`: the key created with mode 0600 and the
/// certificate with mode 0644, each through a temporary file renamed into
/// place so a crash never leaves a half-written file. Refuses to replace
/// existing files unless `replace` is set.
pub fn write(root: &RootCa, files: &CaFiles, replace: bool) -> Result<(), CaError> {
    if !replace && !matches!(files.existing()?, Presence::Neither) {
        let existing = if exists(&files.cert)? {
            &files.cert
        } else {
            &files.key
        };
        return Err(CaError::AlreadyExists {
            cert_path: existing.display().to_string(),
        });
    }

    for path in [&files.cert, &files.key] {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(|source| CaError::Write {
                    path: folder.display().to_string(),
                    source,
                })?;
        }
    }

    write_atomically(&files.key, root.key_pem().as_bytes(), 0o600)?;
    write_atomically(&files.cert, root.cert_pem().as_bytes(), 0o644)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let write_error = |path: &Path, source| CaError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);

    // A leftover from an interrupted write is ours to replace; create_new
    // below then guarantees the mode is set at creation, never changed later.
    match std::fs::remove_file(&temporary) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(write_error(&temporary, source))
        }
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|source| write_error(&temporary, source))?;
    file.write_all(contents)
        .map_err(|source| write_error(&temporary, source))?;
    file.sync_all()
        .map_err(|source| write_error(&temporary, source))?;
    drop(file);

    std::fs::rename(&temporary, path).map_err(|source| write_error(path, source))
}
