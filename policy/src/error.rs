//! Load errors: every problem found in a set of policy files, each with its file, line and
//! column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The kind of problem a [`Diagnostic`] reports, so a caller can react to classes of
/// errors (for example, show missing feed files differently from typos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The file could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key the format does not define.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value has the wrong TOML type.
    WrongType,
    /// A value has the right type but is not acceptable (bad domain, CIDR, category...).
    InvalidValue,
    /// An id is defined twice.
    Duplicate,
    /// A reference names something that is not defined (an unknown group or location).
    UnknownReference,
    /// A feed file or directory named by the policy does not exist or cannot be read.
    MissingFeed,
}

/// One problem in a policy file, located at `path:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The policy file.
    pub path: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column in characters; 0 when the problem concerns the whole file.
    pub column: usize,
    /// The kind of problem.
    pub kind: DiagnosticKind,
    /// The problem and what is allowed instead.
    pub message: String,
}

impl Diagnostic {
    /// Builds a diagnostic for a byte range of `text`, the content of `path`.
    pub(crate) fn at(
        path: &Path,
        text: &str,
        span: Range<usize>,
        kind: DiagnosticKind,
        message: String,
    ) -> Diagnostic {
        let (line, column) = line_column(text, span.start);
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            kind,
            message,
        }
    }

    /// Builds a diagnostic about a whole file.
    pub(crate) fn whole_file(path: &Path, kind: DiagnosticKind, message: String) -> Diagnostic {
        Diagnostic {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            kind,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every problem found while loading a set of policy files; the set is rejected whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors {
    /// The problems, in file order and then in position order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in the policy", self.diagnostics.len())?;
        for diagnostic in &self.diagnostics {
            write!(f, "\n{diagnostic}")?;
        }
        Ok(())
    }
}

/// Converts a byte offset into a 1-based line and a 1-based column counted in characters.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // `=` sits after the two characters `bé` and a space: column 4.
        assert_eq!(line_column(text, 10), (2, 4));
    }

    #[test]
    fn diagnostic_displays_file_line_column() {
        let d = Diagnostic::at(
            Path::new("p.toml"),
            "x\ny",
            2..3,
            DiagnosticKind::UnknownKey,
            "unknown key".into(),
        );
        assert_eq!(d.to_string(), "p.toml:2:1: unknown key");
    }
}
