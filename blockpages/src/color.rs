//! `#rrggbb` colours and WCAG 2 contrast, so text on the tenant's primary colour stays readable.

/// An sRGB colour with 8 bits per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb {
    pub(crate) red: u8,
    pub(crate) green: u8,
    pub(crate) blue: u8,
}

/// White text.
pub(crate) const WHITE: Rgb = Rgb {
    red: 0xff,
    green: 0xff,
    blue: 0xff,
};

/// Black text: against any colour, white or black reaches at least 4.58:1, above the
/// WCAG AA minimum of 4.5:1 for normal text.
pub(crate) const BLACK: Rgb = Rgb {
    red: 0,
    green: 0,
    blue: 0,
};

impl Rgb {
    /// Formats the colour as lower-case `#rrggbb`.
    pub(crate) fn to_hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.red, self.green, self.blue)
    }

    /// Relative luminance as WCAG 2.1 defines it (0 for black, 1 for white).
    pub(crate) fn relative_luminance(self) -> f64 {
        fn linear(channel: u8) -> f64 {
            let c = f64::from(channel) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        }
        0.2126 * linear(self.red) + 0.7152 * linear(self.green) + 0.0722 * linear(self.blue)
    }
}

/// Parses a `#rrggbb` colour; the error text says what is allowed.
pub(crate) fn parse_color(text: &str) -> Result<Rgb, String> {
    let invalid = || format!("must be a colour in the form #rrggbb, got {text:?}");
    let hex = text.strip_prefix('#').ok_or_else(invalid)?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| invalid());
    Ok(Rgb {
        red: channel(0)?,
        green: channel(2)?,
        blue: channel(4)?,
    })
}

/// Contrast ratio between two colours as WCAG 2.1 defines it, from 1 to 21.
pub(crate) fn contrast_ratio(a: Rgb, b: Rgb) -> f64 {
    let (la, lb) = (a.relative_luminance(), b.relative_luminance());
    let (lighter, darker) = if la >= lb { (la, lb) } else { (lb, la) };
    (lighter + 0.05) / (darker + 0.05)
}

/// Picks white or black text for `background`, whichever contrasts more.
pub(crate) fn text_color_on(background: Rgb) -> Rgb {
    if contrast_ratio(background, WHITE) >= contrast_ratio(background, BLACK) {
        WHITE
    } else {
        BLACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_color_accepts_rrggbb_only() {
        assert_eq!(
            parse_color("#1F4e8c"),
            Ok(Rgb {
                red: 0x1f,
                green: 0x4e,
                blue: 0x8c
            })
        );
        for bad in [
            "1f4e8c", "#1f4e8", "#1f4e8c0", "#gg0000", "red", "", "#", "#1f4e8c;",
        ] {
            assert!(parse_color(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn contrast_ratio_matches_wcag_reference_values() {
        assert!((contrast_ratio(WHITE, BLACK) - 21.0).abs() < 1e-9);
        assert!((contrast_ratio(WHITE, WHITE) - 1.0).abs() < 1e-9);
        // #767676 on white is the well-known lightest grey that passes AA: 4.54:1.
        let grey = parse_color("#767676").unwrap();
        assert!((contrast_ratio(grey, WHITE) - 4.54).abs() < 0.01);
    }

    #[test]
    fn chosen_text_color_meets_aa_on_every_background() {
        // Every 17th step of each channel covers the whole cube, including the mid greys
        // where white and black contrast about equally.
        for red in (0..=255u8).step_by(17) {
            for green in (0..=255u8).step_by(17) {
                for blue in (0..=255u8).step_by(17) {
                    let background = Rgb { red, green, blue };
                    let text = text_color_on(background);
                    let ratio = contrast_ratio(background, text);
                    assert!(
                        ratio >= 4.5,
                        "{} on {} has {ratio:.2}:1",
                        text.to_hex(),
                        background.to_hex()
                    );
                }
            }
        }
    }

    #[test]
    fn text_color_is_white_on_dark_and_black_on_light() {
        assert_eq!(text_color_on(parse_color("#1f4e8c").unwrap()), WHITE);
        assert_eq!(text_color_on(parse_color("#ffd700").unwrap()), BLACK);
        assert_eq!(text_color_on(parse_color("#000000").unwrap()), WHITE);
        assert_eq!(text_color_on(parse_color("#ffffff").unwrap()), BLACK);
    }
}
