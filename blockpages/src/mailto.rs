//! `mailto:` links for "Report a mistake" (RFC 6068).

/// Upper bound of the body of a report link, in bytes before encoding. Mail clients and
/// browsers cut or reject very long `mailto:` links, so a long URL in the body is shortened.
pub(crate) const MAX_BODY_BYTES: usize = 2000;

/// Builds `mailto:<to>?subject=…&body=…` with subject and body percent-encoded, line breaks as
/// CRLF. `to` must already be validated (see `validate_contact_email`).
pub(crate) fn mailto_link(to: &str, subject: &str, body: &str) -> String {
    let body = body.replace("\r\n", "\n").replace('\n', "\r\n");
    let body = cut_at_char_boundary(&body, MAX_BODY_BYTES);
    format!(
        "mailto:{to}?subject={}&body={}",
        percent_encode(subject),
        percent_encode(body)
    )
}

/// Percent-encodes every byte except RFC 3986 unreserved characters, so `&`, `=`, `#`, `?`,
/// `%` and spaces in the text cannot change the link's structure.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn cut_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailto_link_percent_encodes_subject_and_body() {
        let link = mailto_link(
            "help@example.com",
            "Blocked: a&b=c",
            "URL: https://x.test/?q=1&r=2#frag\nUser: zoë",
        );
        assert_eq!(
            link,
            "mailto:help@example.com?subject=Blocked%3A%20a%26b%3Dc&body=URL%3A%20https%3A%2F%2Fx.test%2F%3Fq%3D1%26r%3D2%23frag%0D%0AUser%3A%20zo%C3%AB"
        );
    }

    #[test]
    fn mailto_link_bounds_body_on_char_boundary() {
        let link = mailto_link("help@example.com", "s", &"ë".repeat(5000));
        let body = link.split("&body=").nth(1).unwrap();
        assert_eq!(body.len(), MAX_BODY_BYTES * 3);
    }
}
