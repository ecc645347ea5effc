//! The template environment: built-in templates, operator overrides and compile errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

use crate::error::PagesError;

/// Built-in templates as (name, source). An operator file with the same name replaces one;
/// `.html` templates are HTML-escaped, `.css` and `.txt` are not.
pub(crate) const BUILT_IN: [(&str, &str); 10] = [
    ("layout.html", include_str!("../templates/layout.html")),
    ("details.html", include_str!("../templates/details.html")),
    ("help.html", include_str!("../templates/help.html")),
    ("block.html", include_str!("../templates/block.html")),
    ("warn.html", include_str!("../templates/warn.html")),
    (
        "inspection.html",
        include_str!("../templates/inspection.html"),
    ),
    (
        "unidentified.html",
        include_str!("../templates/unidentified.html"),
    ),
    (
        "upstream_error.html",
        include_str!("../templates/upstream_error.html"),
    ),
    ("style.css", include_str!("../templates/style.css")),
    ("page.txt", include_str!("../templates/page.txt")),
];

/// Upper bound of one operator template file, in bytes.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

/// The compiled templates and, for error messages, which ones came from operator files.
pub(crate) struct Templates {
    pub(crate) env: Environment<'static>,
    /// Template name to the operator file that replaced or added it.
    operator_files: BTreeMap<String, PathBuf>,
}

impl Templates {
    /// Compiles the built-in templates, then every `*.html`, `*.css` and `*.txt` file directly
    /// in `template_dir`.
    pub(crate) fn load(template_dir: Option<&Path>) -> Result<Self, PagesError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Bounded so that a runaway operator template cannot stall a request.
        env.set_fuel(Some(200_000));

        let mut templates = Templates {
            env,
            operator_files: BTreeMap::new(),
        };
        for (name, source) in BUILT_IN {
            templates
                .env
                .add_template(name, source)
                .map_err(|e| templates.error(&e))?;
        }
        if let Some(dir) = template_dir {
            for (name, path) in operator_template_files(dir)? {
                let source = read_template(&path)?;
                templates.operator_files.insert(name.clone(), path);
                templates
                    .env
                    .add_template_owned(name, source)
                    .map_err(|e| templates.error(&e))?;
            }
        }
        Ok(templates)
    }

    /// Converts a template engine error into [`PagesError::Template`], naming the operator's
    /// file when the failing template came from one.
    pub(crate) fn error(&self, error: &minijinja::Error) -> PagesError {
        let name = error.name().unwrap_or("template");
        let file = match self.operator_files.get(name) {
            Some(path) => path.display().to_string(),
            None => name.to_owned(),
        };
        let message = match error.detail() {
            Some(detail) => format!("{}: {detail}", error.kind()),
            None => error.kind().to_string(),
        };
        PagesError::Template {
            file,
            line: error.line(),
            message,
        }
    }
}

/// Lists the template files directly in `dir` as (template name, path), sorted by name.
fn operator_template_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PagesError> {
    let read_error = |source| PagesError::ReadFile {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let extension = path.extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("html" | "css" | "txt")) || !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        files.push((name.to_owned(), path));
    }
    files.sort();
    Ok(files)
}

fn read_template(path: &Path) -> Result<String, PagesError> {
    let read_error = |source| PagesError::ReadFile {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_TEMPLATE_BYTES {
        return Err(PagesError::Template {
            file: path.display().to_string(),
            line: None,
            message: format!("is {size} bytes, more than the maximum of {MAX_TEMPLATE_BYTES}"),
        });
    }
    std::fs::read_to_string(path).map_err(read_error)
}
