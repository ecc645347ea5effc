//! Logo files: type detection by magic bytes and embedding as a data URI.

use std::path::Path;

use base64::Engine;

use crate::error::PagesError;

/// Upper bound of a logo file, in bytes. The logo travels inside every page, so it stays small.
pub(crate) const MAX_LOGO_BYTES: usize = 128 * 1024;

/// Reads `path`, checks that it is a PNG, SVG, JPEG or GIF image no larger than
/// [`MAX_LOGO_BYTES`], and returns it as a `data:` URI.
pub(crate) fn load_logo(path: &Path) -> Result<String, PagesError> {
    let bytes = std::fs::read(path).map_err(|source| PagesError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    logo_data_uri(&bytes).map_err(|message| PagesError::InvalidLogo {
        path: path.to_owned(),
        message,
    })
}

/// Returns `bytes` as a `data:` URI, or why they are not an acceptable logo.
pub(crate) fn logo_data_uri(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(format!(
            "is {} bytes, more than the maximum of {MAX_LOGO_BYTES}",
            bytes.len()
        ));
    }
    let mime = image_type(bytes).ok_or_else(|| {
        "is not a PNG, SVG, JPEG or GIF image (checked by its first bytes)".to_owned()
    })?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(format!("data:{mime};base64,{encoded}"))
}

/// Detects the image type from the file's first bytes, never from its name.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if is_svg(bytes) {
        Some("image/svg+xml")
    } else {
        None
    }
}

/// An SVG file is UTF-8 text whose first element, after an optional byte order mark, XML
/// declaration, comments and doctype, is `<svg`. Scripts inside an SVG never run when it is
/// shown through `<img>`, so the content needs no further checks.
fn is_svg(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    loop {
        rest = rest.trim_start();
        let skip_to = if rest.starts_with("<?") {
            "?>"
        } else if rest.starts_with("<!--") {
            "-->"
        } else if rest.starts_with("<!") {
            ">"
        } else {
            break;
        };
        match rest.find(skip_to) {
            Some(end) => rest = &rest[end + skip_to.len()..],
            None => return false,
        }
    }
    rest.starts_with("<svg") && rest[4..].starts_with(|c: char| c.is_whitespace() || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logo_type_comes_from_magic_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert!(logo_data_uri(png)
            .unwrap()
            .starts_with("data:image/png;base64,iVBORw0KGgo"));
        assert!(logo_data_uri(b"\xff\xd8\xff\xe0\0\x10JFIF")
            .unwrap()
            .starts_with("data:image/jpeg;"));
        assert!(logo_data_uri(b"GIF89a\x01\0\x01\0")
            .unwrap()
            .starts_with("data:image/gif;"));
        let svg = b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<!-- logo -->\n<!DOCTYPE svg>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        assert!(logo_data_uri(svg)
            .unwrap()
            .starts_with("data:image/svg+xml;"));
    }

    #[test]
    fn logo_rejects_other_content() {
        for bad in [
            &b"<html><svg></svg></html>"[..],
            b"<svgx>",
            b"BM\0\0",
            b"",
            b"<?xml version=\"1.0\"",
            b"\x89PNG",
        ] {
            assert!(logo_data_uri(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn logo_rejects_oversized_file() {
        let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
        big.resize(MAX_LOGO_BYTES + 1, 0);
        let message = logo_data_uri(&big).unwrap_err();
        assert!(message.contains("131073 bytes"), "{message}");
    }
}
