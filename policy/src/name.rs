//! Host name normalization: every name the policy stores or is asked about is
//! compared in one form, lower-case A-labels (UTS #46) without a trailing dot.

use std::borrow::Cow;

/// Maximum length of a host name in its A-label form, without the trailing dot (RFC 1035).
pub const MAX_NAME_LEN: usize = 253;

/// Maximum length of one label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Reasons a string is not a host name the policy can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty (or only a dot).
    #[error("the name is empty")]
    Empty,
    /// UTS #46 processing rejected the name.
    #[error("the name is not a valid internationalized domain name (UTS #46)")]
    Idna,
    /// A label is empty, as in `a..b` or `.a`.
    #[error("the name has an empty label")]
    EmptyLabel,
    /// A label is longer than 63 octets.
    #[error("a label is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong,
    /// The name is longer than 253 octets.
    #[error("the name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// The name contains a character outside letters, digits, `-` and `_`.
    #[error(
        "the name contains {0:?}; allowed are letters, digits, '-', '_' and '.' between labels"
    )]
    InvalidCharacter(char),
}

/// Normalizes a host name: lower-case, trailing dot removed, Unicode labels turned into
/// A-labels (`bücher.de` becomes `xn--bcher-kva.de`).
///
/// Names that are already lower-case ASCII are returned borrowed, so the common case on the
/// query path does not allocate.
pub fn normalize_name(name: &str) -> Result<Cow<'_, str>, NameError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }

    let normalized = if trimmed.is_ascii() {
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            Cow::Borrowed(trimmed)
        }
    } else {
        let ascii = idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL)
            .map_err(|_| NameError::Idna)?;
        let mut owned = ascii.into_owned();
        // UTS #46 maps some characters (such as the ideographic full stop) to a dot, so
        // the trailing dot may reappear only now.
        if owned.ends_with('.') {
            owned.pop();
        }
        Cow::Owned(owned)
    };

    check_syntax(&normalized)?;
    Ok(normalized)
}

/// Checks that an already lower-case ASCII name has valid label lengths and characters.
fn check_syntax(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong);
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(NameError::InvalidCharacter(bad));
        }
    }
    Ok(())
}

/// Normalizes a name for lookup only: ASCII names are lower-cased without the syntax
/// checks entries get (a name with odd characters simply matches fewer entries), and a
/// Unicode name that UTS #46 rejects is lower-cased as it is.
pub(crate) fn normalize_query(name: &str) -> Cow<'_, str> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_ascii() {
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(trimmed.to_ascii_lowercase());
        }
        return Cow::Borrowed(trimmed);
    }
    match normalize_name(trimmed) {
        Ok(normalized) => normalized,
        Err(_) => Cow::Owned(trimmed.to_lowercase()),
    }
}

/// Number of labels in a normalized name.
pub(crate) fn label_count(name: &str) -> usize {
    name.bytes().filter(|b| *b == b'.').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_case_is_lowered() {
        assert_eq!(normalize_name("YouTube.COM").unwrap(), "youtube.com");
    }

    #[test]
    fn trailing_dot_is_removed() {
        assert_eq!(normalize_name("example.com.").unwrap(), "example.com");
    }

    #[test]
    fn unicode_becomes_a_label() {
        assert_eq!(normalize_name("Bücher.de").unwrap(), "xn--bcher-kva.de");
        assert_eq!(
            normalize_name("xn--bcher-kva.de.").unwrap(),
            "xn--bcher-kva.de"
        );
    }

    #[test]
    fn lowercase_ascii_is_borrowed() {
        assert!(matches!(
            normalize_name("a.example.com").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert_eq!(normalize_name(""), Err(NameError::Empty));
        assert_eq!(normalize_name("."), Err(NameError::Empty));
        assert_eq!(normalize_name("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(
            normalize_name("a b.com"),
            Err(NameError::InvalidCharacter(' '))
        );
        assert_eq!(
            normalize_name("a/b.com"),
            Err(NameError::InvalidCharacter('/'))
        );
        assert_eq!(
            normalize_name(&"a".repeat(64)),
            Err(NameError::LabelTooLong)
        );
        let long = vec!["abcdefghi"; 30].join(".");
        assert_eq!(normalize_name(&long), Err(NameError::TooLong));
    }

    #[test]
    fn underscores_are_allowed() {
        assert_eq!(
            normalize_name("ether_promo.kissr.com").unwrap(),
            "ether_promo.kissr.com"
        );
    }
}
