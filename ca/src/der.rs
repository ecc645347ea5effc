//! A minimal DER writer for the few structures swg builds by hand: leaf
//! certificates and the PKCS#8 wrapper around PKCS#1 and SEC1 keys.

/// DER tag of INTEGER.
pub(crate) const INTEGER: u8 = 0x02;
/// DER tag of BIT STRING.
pub(crate) const BIT_STRING: u8 = 0x03;
/// DER tag of OCTET STRING.
pub(crate) const OCTET_STRING: u8 = 0x04;
/// DER tag of OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// DER tag of UTF8String.
pub(crate) const UTF8_STRING: u8 = 0x0c;
/// DER tag of UTCTime.
pub(crate) const UTC_TIME: u8 = 0x17;
/// DER tag of GeneralizedTime.
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
/// DER tag of SEQUENCE (constructed).
pub(crate) const SEQUENCE: u8 = 0x30;
/// DER tag of SET (constructed).
pub(crate) const SET: u8 = 0x31;

/// An append-only DER encoder.
///
/// Constructed values are written with [`Der::nested`], which writes the
/// content first and then inserts the definite length in front of it, so no
/// intermediate buffers are needed.
#[derive(Debug, Default)]
pub(crate) struct Der {
    out: Vec<u8>,
}

impl Der {
    /// Creates an encoder with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
        }
    }

    /// Returns the encoded bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }

    /// Appends bytes that are already DER (a whole TLV or several).
    pub(crate) fn raw(&mut self, der: &[u8]) {
        self.out.extend_from_slice(der);
    }

    /// Appends one primitive value with `tag` and `content`.
    pub(crate) fn primitive(&mut self, tag: u8, content: &[u8]) {
        self.out.push(tag);
        push_length(&mut self.out, content.len());
        self.out.extend_from_slice(content);
    }

    /// Appends a constructed value with `tag` whose content `content` writes.
    pub(crate) fn nested(&mut self, tag: u8, content: impl FnOnce(&mut Self)) {
        self.out.push(tag);
        let start = self.out.len();
        content(self);

        let length = self.out.len() - start;
        let mut header = [0u8; 9];
        let header_len = encode_length(length, &mut header);
        self.out
            .splice(start..start, header[..header_len].iter().copied());
    }

    /// Appends a non-negative INTEGER from big-endian unsigned bytes,
    /// minimally encoded as DER requires.
    pub(crate) fn unsigned_integer(&mut self, big_endian: &[u8]) {
        let first_nonzero = big_endian
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(big_endian.len().saturating_sub(1));
        let digits = &big_endian[first_nonzero..];
        self.out.push(INTEGER);
        if digits.first().is_some_and(|&b| b & 0x80 != 0) {
            push_length(&mut self.out, digits.len() + 1);
            self.out.push(0);
        } else {
            push_length(&mut self.out, digits.len().max(1));
            if digits.is_empty() {
                self.out.push(0);
            }
        }
        self.out.extend_from_slice(digits);
    }
}

fn push_length(out: &mut Vec<u8>, length: usize) {
    let mut header = [0u8; 9];
    let header_len = encode_length(length, &mut header);
    out.extend_from_slice(&header[..header_len]);
}

/// Writes the definite-length encoding of `length` into `buffer` and returns
/// how many bytes it used.
fn encode_length(length: usize, buffer: &mut [u8; 9]) -> usize {
    if length < 0x80 {
        buffer[0] = length as u8;
        return 1;
    }
    let bytes = length.to_be_bytes();
    let skip = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let significant = &bytes[skip..];
    buffer[0] = 0x80 | significant.len() as u8;
    buffer[1..=significant.len()].copy_from_slice(significant);
    1 + significant.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_encode_minimally() {
        let mut der = Der::default();
        der.primitive(OCTET_STRING, &[7; 3]);
        assert_eq!(der.finish(), [0x04, 0x03, 7, 7, 7]);

        let mut der = Der::default();
        der.nested(SEQUENCE, |d| d.raw(&[0; 200]));
        let bytes = der.finish();
        assert_eq!(&bytes[..3], &[0x30, 0x81, 200]);
        assert_eq!(bytes.len(), 203);

        let mut der = Der::default();
        der.primitive(OCTET_STRING, &[0; 300]);
        assert_eq!(&der.finish()[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn unsigned_integers_are_minimal_and_positive() {
        let cases: [(&[u8], &[u8]); 5] = [
            (&[0x00, 0x00, 0x05], &[0x02, 0x01, 0x05]),
            (&[0x80], &[0x02, 0x02, 0x00, 0x80]),
            (&[0x00, 0x7f, 0xff], &[0x02, 0x02, 0x7f, 0xff]),
            (&[0x00], &[0x02, 0x01, 0x00]),
            (&[0x00, 0x00], &[0x02, 0x01, 0x00]),
        ];
        for (input, expected) in cases {
            let mut der = Der::default();
            der.unsigned_integer(input);
            assert_eq!(der.finish(), expected, "input {input:02x?}");
        }
    }
}
