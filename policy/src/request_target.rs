//! The canonical form of a request path, so that URL rules match every spelling an
//! origin server treats as the same resource.
//!
//! Origins decode percent-encoded octets, merge repeated slashes and resolve `.` and
//! `..` segments before they route a request (nginx's `location` documentation
//! describes all three). A
//! rule for `/blocked/` must therefore also match `/%62locked/`, `//blocked/` and
//! `/x/../blocked/`, or a client could fetch a blocked page by spelling its path
//! differently. Rule paths go through the same function, so both sides compare in
//! one form.

/// Returns the canonical, lower-case form of an origin-form request target (a path
/// with an optional `?query`).
///
/// In the path, every percent-encoded octet that is part of valid UTF-8 is decoded,
/// and backslashes become slashes because some origins treat them alike. Runs of
/// slashes become one, and dot segments are resolved (RFC 3986, section 5.2.4), so
/// the result always starts with `/`. In the query only octets that encode unreserved characters are
/// decoded, since decoding `&` or `=` would change its meaning. Octets that are not
/// valid UTF-8 stay encoded, with upper-case hex digits.
pub fn canonical_target(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    // Most paths are already canonical: lower-casing is then the only work.
    if is_plain_path(path) && !query.is_some_and(|query| query.contains('%')) {
        return path_and_query.to_lowercase();
    }
    let decoded = percent_decode(path, Decode::All).replace('\\', "/");
    let mut canonical = remove_dot_segments(&decoded);
    if let Some(query) = query {
        canonical.push('?');
        canonical.push_str(&percent_decode(query, Decode::Unreserved));
    }
    canonical.to_lowercase()
}

/// Tells whether `path` starts with `/` and has no escape, backslash, empty segment
/// or dot segment, so that only its case can differ from the canonical form.
fn is_plain_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.contains(['%', '\\']) {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == "." || segment == ".." {
            return false;
        }
    }
    true
}

/// The set of escapes that [`percent_decode`] decodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// Every escape that is part of valid UTF-8.
    All,
    /// Only RFC 3986 unreserved characters, whose decoding never changes a URI's
    /// meaning.
    Unreserved,
}

impl Decode {
    fn accepts(self, byte: u8) -> bool {
        match self {
            Decode::All => true,
            Decode::Unreserved => {
                byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
            }
        }
    }
}

/// Decodes the `%XX` octets of `text` that `decode` accepts and that form valid
/// UTF-8; every other escape is kept, with upper-case hex digits.
fn percent_decode(text: &str, decode: Decode) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            if let Some((run, consumed)) = decoded_run(&bytes[index..], decode) {
                out.push_str(&run);
                index += consumed;
                continue;
            }
            if let Some(byte) = hex_octet(&bytes[index..]) {
                out.push_str(&format!("%{byte:02X}"));
                index += 3;
                continue;
            }
        }
        // Not an escape: copy one character.
        let char_len = text[index..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[index..index + char_len]);
        index += char_len;
    }
    out
}

/// Decodes the escapes at the start of `bytes` that form one UTF-8 character which
/// `decode` accepts. Returns the character and the number of input bytes it used.
fn decoded_run(bytes: &[u8], decode: Decode) -> Option<(String, usize)> {
    let first = hex_octet(bytes)?;
    if first.is_ascii() {
        return decode
            .accepts(first)
            .then(|| (char::from(first).to_string(), 3));
    }
    if decode != Decode::All {
        return None;
    }
    // A non-ASCII character takes two to four escaped octets.
    let width = match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let mut octets = Vec::with_capacity(width);
    for position in 0..width {
        octets.push(hex_octet(bytes.get(position * 3..)?)?);
    }
    let text = String::from_utf8(octets).ok()?;
    Some((text, width * 3))
}

/// Reads the octet of a `%XX` escape at the start of `bytes`.
fn hex_octet(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b'%', high, low, ..] => {
            let high = char::from(*high).to_digit(16)?;
            let low = char::from(*low).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        }
        _ => None,
    }
}

/// Merges runs of slashes and resolves `.` and `..` segments. The result starts with
/// `/`, and ends with one when the path ends with a slash or a dot segment.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/') {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            segment => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::canonical_target;

    #[test]
    fn spellings_of_one_path_share_a_canonical_form() {
        for spelling in [
            "/blocked/",
            "/BLOCKED/",
            "/%62locked/",
            "/%62%6c%6f%63%6b%65%64/",
            "/%62%6C%6F%63%6B%65%64/",
            "//blocked/",
            "/blocked//",
            "///blocked/",
            "/x/../blocked/",
            "/x/%2e%2e/blocked/",
            "/./blocked/",
            "/blocked/.",
            "\\blocked\\",
            "/%5cblocked/",
            "/a/b/../../blocked/",
        ] {
            assert_eq!(canonical_target(spelling), "/blocked/", "{spelling}");
        }
    }

    #[test]
    fn plain_paths_only_change_case() {
        for path in ["/", "/a", "/a/", "/A/b.c/D?Q=1", "/a.b/..c/.d"] {
            assert!(
                super::is_plain_path(path.split('?').next().unwrap()),
                "{path}"
            );
            assert_eq!(canonical_target(path), path.to_lowercase(), "{path}");
        }
        for path in ["a", "//a", "/a//b", "/./a", "/a/..", "/%41", "/a\\b"] {
            assert!(!super::is_plain_path(path), "{path}");
        }
    }

    #[test]
    fn dot_segments_never_climb_above_the_root() {
        assert_eq!(canonical_target("/../../blocked"), "/blocked");
        assert_eq!(canonical_target(".."), "/");
        assert_eq!(canonical_target(""), "/");
    }

    #[test]
    fn path_keeps_its_last_segment() {
        assert_eq!(canonical_target("/a/b"), "/a/b");
        assert_eq!(canonical_target("/a/b/"), "/a/b/");
        assert_eq!(canonical_target("/a/b/.."), "/a/");
    }

    #[test]
    fn query_decodes_only_unreserved_octets() {
        assert_eq!(canonical_target("/p?%61=1%26b%3D2"), "/p?a=1%26b%3d2");
        assert_eq!(canonical_target("/%70?x=%2F"), "/p?x=%2f");
        // The query is not a path: its slashes and dots stay.
        assert_eq!(canonical_target("/p?a=//../b"), "/p?a=//../b");
    }

    #[test]
    fn utf8_escapes_decode_and_invalid_octets_stay_encoded() {
        assert_eq!(canonical_target("/caf%C3%A9/"), "/café/");
        assert_eq!(canonical_target("/%ff%fe/"), "/%ff%fe/");
        assert_eq!(canonical_target("/%C3/"), "/%c3/");
        assert_eq!(canonical_target("/%zz/%4"), "/%zz/%4");
        assert_eq!(canonical_target("/a%00b"), "/a\u{0}b");
    }
}
