//! Load errors: the problems found in a set of policy files, each with its file, line and
//! column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Maximum number of problems a [`LoadErrors`] lists. The others are counted in one
/// [`DiagnosticKind::Omitted`] entry, so that the report on a file full of errors stays
/// short and is built quickly.
pub(crate) const MAX_LISTED: usize = 100;

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
    /// An entry for `count` more problems, found at or after this position, that are not
    /// listed because the list reached its maximum length (100).
    Omitted {
        /// The number of problems that are not listed.
        count: usize,
    },
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
    /// Builds a diagnostic for a byte range of the text of `path`, whose lines are `lines`.
    pub(crate) fn at(
        path: &Path,
        lines: &LineIndex<'_>,
        span: Range<usize>,
        kind: DiagnosticKind,
        message: String,
    ) -> Diagnostic {
        let (line, column) = lines.position(span.start);
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

/// The problems found while loading a set of policy files; the set is rejected whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors {
    /// The problems, in file order and then in position order, at most 100 of them. When
    /// more were found, a last [`DiagnosticKind::Omitted`] entry, at the position of the
    /// first one not listed, counts them.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadErrors {
    /// Counts the problems found, including those that are not listed (see
    /// [`DiagnosticKind::Omitted`]).
    pub fn count(&self) -> usize {
        self.diagnostics
            .iter()
            .map(|diagnostic| match diagnostic.kind {
                DiagnosticKind::Omitted { count } => count,
                _ => 1,
            })
            .sum()
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in the policy", self.count())?;
        for diagnostic in &self.diagnostics {
            write!(f, "\n{diagnostic}")?;
        }
        Ok(())
    }
}

/// Builds the message of a [`DiagnosticKind::Omitted`] entry for `count` problems.
pub(crate) fn omitted_message(count: usize) -> String {
    let problems = if count == 1 {
        "1 more problem from here on is".to_owned()
    } else {
        format!("{count} more problems from here on are")
    };
    format!(
        "{problems} not listed, because at most {MAX_LISTED} are listed; fix the listed ones and check the policy again"
    )
}

/// A problem with a position, which orders problems as they appear in the files.
pub(crate) trait Positioned {
    /// The sort key: problems with smaller keys come first.
    type Key: Ord;

    fn position(&self) -> Self::Key;
}

/// The first [`MAX_LISTED`] problems in position order, out of any number pushed, and a
/// count of the others with the first of them.
///
/// Memory stays below twice the maximum whatever the number of problems, and a push costs
/// O(log MAX_LISTED) on average.
#[derive(Debug)]
pub(crate) struct FirstProblems<T: Positioned> {
    kept: Vec<T>,
    /// The position of the last listed problem, once `MAX_LISTED` problems are known: a
    /// problem at or after it will not be listed.
    last_listed: Option<T::Key>,
    omitted: usize,
    first_omitted: Option<T>,
}

impl<T: Positioned> FirstProblems<T> {
    pub(crate) fn new() -> Self {
        FirstProblems {
            kept: Vec::new(),
            last_listed: None,
            omitted: 0,
            first_omitted: None,
        }
    }

    /// Adds the problem at `position` that `build` returns. `build` runs only when the
    /// problem may be listed or may be the first omitted one, so that a file with
    /// millions of errors does not format millions of messages.
    pub(crate) fn push_with(&mut self, position: T::Key, build: impl FnOnce() -> T) {
        let listable = self
            .last_listed
            .as_ref()
            .is_none_or(|last| position < *last);
        if listable {
            self.kept.push(build());
            if self.kept.len() >= 2 * MAX_LISTED {
                self.drop_beyond_maximum();
            }
            return;
        }

        self.omitted += 1;
        let first = self
            .first_omitted
            .as_ref()
            .is_none_or(|known| position < known.position());
        if first {
            self.first_omitted = Some(build());
        }
    }

    /// Counts `count` problems that are not listed, of which `first` is the first. Each of
    /// them comes after the problems listed by whoever counted them, so none of them
    /// could be among the first `MAX_LISTED` here.
    pub(crate) fn omit(&mut self, first: T, count: usize) {
        self.omitted += count;
        let earlier = self
            .first_omitted
            .as_ref()
            .is_some_and(|known| known.position() <= first.position());
        if !earlier {
            self.first_omitted = Some(first);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.omitted == 0
    }

    /// Returns the listed problems in position order, and the first of the others with
    /// their number, when there are others.
    pub(crate) fn finish(mut self) -> (Vec<T>, Option<(T, usize)>) {
        self.drop_beyond_maximum();
        let omitted = self.first_omitted.map(|first| (first, self.omitted));
        (self.kept, omitted)
    }

    /// Sorts the kept problems and counts those beyond the maximum instead of keeping them.
    fn drop_beyond_maximum(&mut self) {
        // A stable sort, so problems at one position stay in the order they were found.
        self.kept.sort_by_key(Positioned::position);
        if self.kept.len() <= MAX_LISTED {
            return;
        }

        self.last_listed = Some(self.kept[MAX_LISTED - 1].position());
        let mut dropped = self.kept.drain(MAX_LISTED..);
        self.omitted += dropped.len();
        if let Some(first) = dropped.next() {
            let earlier = self
                .first_omitted
                .as_ref()
                .is_some_and(|known| known.position() <= first.position());
            if !earlier {
                self.first_omitted = Some(first);
            }
        }
    }
}

/// The problems of a load: the first [`MAX_LISTED`] in file order and then in position
/// order, and a count of the others.
#[derive(Debug)]
pub(crate) struct DiagnosticList {
    /// The files in load order, which orders their problems.
    files: Vec<PathBuf>,
    problems: FirstProblems<FileDiagnostic>,
}

/// A diagnostic with the load order of its file.
#[derive(Debug)]
struct FileDiagnostic {
    file: usize,
    diagnostic: Diagnostic,
}

impl Positioned for FileDiagnostic {
    type Key = (usize, usize, usize);

    fn position(&self) -> (usize, usize, usize) {
        (self.file, self.diagnostic.line, self.diagnostic.column)
    }
}

impl DiagnosticList {
    pub(crate) fn new() -> Self {
        DiagnosticList {
            files: Vec::new(),
            problems: FirstProblems::new(),
        }
    }

    /// Records that `path` is the next file of the load, so that its problems come after
    /// those of the files added before it. A path first seen in a diagnostic is added the
    /// same way. Returns the file's place in the load order.
    pub(crate) fn add_file(&mut self, path: &Path) -> usize {
        match self.files.iter().position(|file| file == path) {
            Some(index) => index,
            None => {
                self.files.push(path.to_path_buf());
                self.files.len() - 1
            }
        }
    }

    /// Adds a problem. A [`DiagnosticKind::Omitted`] entry adds its count to the
    /// problems that are not listed.
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        let file = self.add_file(&diagnostic.path);
        let position = (file, diagnostic.line, diagnostic.column);
        let problem = FileDiagnostic { file, diagnostic };
        match problem.diagnostic.kind {
            DiagnosticKind::Omitted { count } => self.problems.omit(problem, count),
            _ => self.problems.push_with(position, || problem),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Returns the listed problems, followed by one [`DiagnosticKind::Omitted`] entry
    /// when there are others.
    pub(crate) fn into_errors(self) -> LoadErrors {
        let (listed, omitted) = self.problems.finish();
        let mut diagnostics: Vec<Diagnostic> = listed
            .into_iter()
            .map(|problem| problem.diagnostic)
            .collect();
        if let Some((first, count)) = omitted {
            diagnostics.push(Diagnostic {
                kind: DiagnosticKind::Omitted { count },
                message: omitted_message(count),
                ..first.diagnostic
            });
        }
        LoadErrors { diagnostics }
    }
}

impl Extend<Diagnostic> for DiagnosticList {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, diagnostics: I) {
        for diagnostic in diagnostics {
            self.push(diagnostic);
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The start offset of every line of a text, to turn byte offsets into lines and columns
/// in O(log lines) each.
#[derive(Debug)]
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of the first character of each line, in order, starting with 0.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, byte)| *byte == b'\n')
                .map(|(offset, _)| offset + 1),
        );
        LineIndex { text, starts }
    }

    /// Converts a byte offset into a 1-based line and a 1-based column counted in
    /// characters. An offset past the end counts as the end, and one inside a character
    /// as the start of that character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        // The number of line starts at or before `offset` is the 1-based line number.
        let line = self.starts.partition_point(|start| *start <= offset);
        let line_start = self.starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        let lines = LineIndex::new(text);
        assert_eq!(lines.position(0), (1, 1));
        assert_eq!(lines.position(5), (1, 6));
        assert_eq!(lines.position(6), (2, 1));
        // `=` sits after the two characters `bé` and a space: column 4.
        assert_eq!(lines.position(10), (2, 4));
        // Inside `é`, which starts at offset 7: the column of `é`.
        assert_eq!(lines.position(8), (2, 2));
        // The end of the text is the start of the empty third line.
        assert_eq!(lines.position(text.len()), (3, 1));
        assert_eq!(lines.position(text.len() + 10), (3, 1));
    }

    #[derive(Debug, PartialEq)]
    struct At(usize, &'static str);

    impl Positioned for At {
        type Key = usize;

        fn position(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn first_problems_keeps_first_hundred_in_order() {
        let mut problems = FirstProblems::new();
        // Descending positions, so that every batch displaces the previous one.
        for position in (0..1000).rev() {
            problems.push_with(position, || At(position, "x"));
        }

        let (kept, omitted) = problems.finish();

        let positions: Vec<usize> = kept.iter().map(|problem| problem.0).collect();
        assert_eq!(positions, (0..MAX_LISTED).collect::<Vec<_>>());
        assert_eq!(omitted, Some((At(MAX_LISTED, "x"), 1000 - MAX_LISTED)));
    }

    #[test]
    fn first_problems_builds_only_listable_problems() {
        let mut problems = FirstProblems::new();
        let mut built = 0;
        for position in 0..1000 {
            problems.push_with(position, || {
                built += 1;
                At(position, "x")
            });
        }

        let (kept, omitted) = problems.finish();

        // Every problem is built up to the first sort, and none after it.
        assert_eq!(built, 2 * MAX_LISTED);
        let positions: Vec<usize> = kept.iter().map(|problem| problem.0).collect();
        assert_eq!(positions, (0..MAX_LISTED).collect::<Vec<_>>());
        assert_eq!(omitted, Some((At(MAX_LISTED, "x"), 1000 - MAX_LISTED)));
    }

    #[test]
    fn first_problems_keeps_order_of_equal_positions() {
        let mut problems = FirstProblems::new();
        problems.push_with(5, || At(5, "second line"));
        problems.push_with(1, || At(1, "first"));
        problems.push_with(5, || At(5, "second line, found later"));

        let (kept, omitted) = problems.finish();

        assert_eq!(
            kept,
            vec![
                At(1, "first"),
                At(5, "second line"),
                At(5, "second line, found later")
            ]
        );
        assert_eq!(omitted, None);
    }

    #[test]
    fn first_problems_counts_exactly_beyond_maximum() {
        let mut problems = FirstProblems::new();
        for position in 0..=MAX_LISTED {
            problems.push_with(position, || At(position, "x"));
        }

        let (kept, omitted) = problems.finish();

        assert_eq!(kept.len(), MAX_LISTED);
        assert_eq!(omitted, Some((At(MAX_LISTED, "x"), 1)));
    }

    #[test]
    fn count_includes_omitted_problems() {
        let listed = Diagnostic::whole_file(
            Path::new("p.toml"),
            DiagnosticKind::UnknownKey,
            "unknown key".into(),
        );
        let omitted = Diagnostic::whole_file(
            Path::new("p.toml"),
            DiagnosticKind::Omitted { count: 7 },
            omitted_message(7),
        );
        let errors = LoadErrors {
            diagnostics: vec![listed, omitted],
        };

        assert_eq!(errors.count(), 8);
        assert!(
            errors.to_string().starts_with("8 error(s) in the policy\n"),
            "{errors}"
        );
        assert!(
            errors
                .to_string()
                .contains("7 more problems from here on are not listed"),
            "{errors}"
        );
    }

    fn at(path: &str, line: usize, kind: DiagnosticKind) -> Diagnostic {
        Diagnostic {
            path: PathBuf::from(path),
            line,
            column: 1,
            kind,
            message: format!("{path}:{line}"),
        }
    }

    #[test]
    fn diagnostic_list_orders_by_file_then_position() {
        let mut list = DiagnosticList::new();
        list.add_file(Path::new("b.toml"));
        list.add_file(Path::new("a.toml"));
        for (path, line) in [("a.toml", 3), ("b.toml", 9), ("a.toml", 1), ("b.toml", 2)] {
            list.push(at(path, line, DiagnosticKind::InvalidValue));
        }

        let errors = list.into_errors();

        let order: Vec<&str> = errors
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(order, ["b.toml:2", "b.toml:9", "a.toml:1", "a.toml:3"]);
    }

    #[test]
    fn diagnostic_list_merges_omitted_entries() {
        let mut list = DiagnosticList::new();
        list.add_file(Path::new("a.toml"));
        // What reading the file listed and omitted, then what later checks found.
        for line in 1..=MAX_LISTED {
            list.push(at("a.toml", line * 2, DiagnosticKind::UnknownKey));
        }
        list.push(at("a.toml", 500, DiagnosticKind::Omitted { count: 40 }));
        for line in 0..10 {
            list.push(at("a.toml", line * 2 + 1, DiagnosticKind::InvalidValue));
        }

        let errors = list.into_errors();

        assert_eq!(errors.diagnostics.len(), MAX_LISTED + 1);
        assert_eq!(errors.count(), MAX_LISTED + 40 + 10);
        let last = &errors.diagnostics[MAX_LISTED];
        assert_eq!(last.kind, DiagnosticKind::Omitted { count: 50 });
        // The first problem not listed: the unknown key on line 182, since the ten
        // later problems on lines 1 to 19 displaced the unknown keys on 182 to 200.
        assert_eq!(last.line, 182);
        assert_eq!(errors.diagnostics[0].line, 1);
        assert_eq!(errors.diagnostics[MAX_LISTED - 1].line, 180);
    }

    #[test]
    fn diagnostic_displays_file_line_column() {
        let d = Diagnostic::at(
            Path::new("p.toml"),
            &LineIndex::new("x\ny"),
            2..3,
            DiagnosticKind::UnknownKey,
            "unknown key".into(),
        );
        assert_eq!(d.to_string(), "p.toml:2:1: unknown key");
    }
}
