//! Making request-derived text safe to display: bidirectional controls, invisible and
//! control characters are neutralized and lengths are bounded. HTML escaping is separate:
//! the template engine escapes every value.

/// Characters shown as the URL before "Show full address".
pub(crate) const SHORT_URL_CHARS: usize = 80;
/// Upper bound of the full URL shown on a page; longer URLs are cut and marked with `…`.
pub(crate) const MAX_URL_CHARS: usize = 16 * 1024;
/// Upper bound of user, device, reason and other short values.
pub(crate) const MAX_FIELD_CHARS: usize = 512;

/// Returns true for characters that change text direction or are invisible, which can make
/// displayed text read differently from what it is (e.g. U+202E RIGHT-TO-LEFT OVERRIDE).
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    ) || c.is_control()
}

/// Returns `text` with control, bidirectional and invisible characters replaced by U+FFFD
/// and cut to `max_chars` characters (the cut is marked with `…`).
pub(crate) fn display_text(text: &str, max_chars: usize) -> String {
    let cleaned = text
        .chars()
        .map(|c| if is_deceptive(c) { '\u{fffd}' } else { c });
    truncate_chars(cleaned, max_chars)
}

/// A URL prepared for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DisplayUrl {
    /// At most [`SHORT_URL_CHARS`] characters: the start and the end with `…` between.
    pub(crate) short: String,
    /// The whole URL, up to [`MAX_URL_CHARS`] characters.
    pub(crate) full: String,
    /// Whether `short` differs from `full`.
    pub(crate) shortened: bool,
}

/// Prepares a URL for display: control, bidirectional, invisible and whitespace characters are
/// percent-encoded as browsers show them in the address bar, and the length is bounded.
pub(crate) fn display_url(url: &str) -> DisplayUrl {
    let mut encoded = String::with_capacity(url.len().min(MAX_URL_CHARS));
    for c in url.chars() {
        if is_deceptive(c) || c.is_whitespace() {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        } else {
            encoded.push(c);
        }
        if encoded.len() > MAX_URL_CHARS * 4 {
            break;
        }
    }

    let full = truncate_chars(encoded.chars(), MAX_URL_CHARS);
    let count = full.chars().count();
    if count <= SHORT_URL_CHARS {
        return DisplayUrl {
            short: full.clone(),
            full,
            shortened: false,
        };
    }
    let head: String = full.chars().take(SHORT_URL_CHARS * 2 / 3).collect();
    let tail_len = SHORT_URL_CHARS - SHORT_URL_CHARS * 2 / 3 - 1;
    let tail: String = full.chars().skip(count - tail_len).collect();
    DisplayUrl {
        short: format!("{head}…{tail}"),
        full,
        shortened: true,
    }
}

/// Collects at most `max_chars` characters, replacing the last one by `…` when cut.
fn truncate_chars(chars: impl Iterator<Item = char>, max_chars: usize) -> String {
    let mut out = String::new();
    for (count, c) in chars.enumerate() {
        if count == max_chars {
            out.pop();
            out.push('…');
            return out;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_text_replaces_bidi_and_control_characters() {
        let hostile = "alice\u{202e}moc.evil\u{2066}\n\u{0}\u{200b}x";
        assert_eq!(
            display_text(hostile, 100),
            "alice\u{fffd}moc.evil\u{fffd}\u{fffd}\u{fffd}\u{fffd}x"
        );
        assert_eq!(display_text("Zoë 日本", 100), "Zoë 日本");
    }

    #[test]
    fn display_text_cuts_at_max_chars() {
        assert_eq!(display_text("abcdef", 4), "abc…");
        assert_eq!(display_text("abcd", 4), "abcd");
    }

    #[test]
    fn display_url_percent_encodes_deceptive_characters() {
        let shown = display_url("https://example.com/a\u{202e}b c\td");
        assert_eq!(shown.full, "https://example.com/a%E2%80%AEb%20c%09d");
        assert!(!shown.shortened);
        assert_eq!(shown.short, shown.full);
    }

    #[test]
    fn display_url_shortens_long_urls() {
        let url = format!("https://example.com/{}", "a".repeat(10_000));
        let shown = display_url(&url);
        assert!(shown.shortened);
        assert_eq!(shown.short.chars().count(), SHORT_URL_CHARS);
        assert!(shown.short.starts_with("https://example.com/aaa"));
        assert!(shown.short.contains('…'));
        assert_eq!(shown.full, url);
    }

    #[test]
    fn display_url_bounds_full_length() {
        let url = format!("https://example.com/{}", "\u{202e}".repeat(100_000));
        let shown = display_url(&url);
        assert_eq!(shown.full.chars().count(), MAX_URL_CHARS);
        assert!(shown.full.ends_with('…'));
    }
}
