//! Short, random request ids that a block page can show.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crockford's base32 alphabet: no I, L, O or U, so an id read aloud or typed from
/// a screenshot is hard to get wrong.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Length of a request id in characters: 80 random bits in base32.
pub const REQUEST_ID_LEN: usize = 16;

/// A 16-character id made of 80 random bits, such as `7QK2M9ZC4D1XHV0B`.
///
/// Ids are random, not sequential, so they reveal nothing about traffic volume.
/// With 80 bits, a collision among 10^9 events has a probability of about 4e-7.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; REQUEST_ID_LEN]);

/// A string that is not a valid request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request id {0:?}: expected 16 characters of Crockford base32")]
pub struct InvalidRequestId(String);

impl RequestId {
    /// Generates a new id from the thread's random number generator.
    pub fn generate() -> Self {
        let bytes: [u8; 10] = rand::random();
        let mut bits = bytes
            .iter()
            .fold(0u128, |acc, byte| (acc << 8) | u128::from(*byte));
        let mut id = [0u8; REQUEST_ID_LEN];
        for slot in id.iter_mut().rev() {
            *slot = ALPHABET[(bits & 31) as usize];
            bits >>= 5;
        }
        RequestId(id)
    }

    /// Returns the id as text.
    pub fn as_str(&self) -> &str {
        // Every byte comes from ALPHABET or passed the check in `from_str`.
        std::str::from_utf8(&self.0).expect("request id bytes are ASCII from the base32 alphabet")
    }
}

impl FromStr for RequestId {
    type Err = InvalidRequestId;

    /// Parses an id, accepting lowercase letters as their uppercase form.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.as_bytes();
        if bytes.len() != REQUEST_ID_LEN {
            return Err(InvalidRequestId(text.to_owned()));
        }
        let mut id = [0u8; REQUEST_ID_LEN];
        for (slot, byte) in id.iter_mut().zip(bytes) {
            let upper = byte.to_ascii_uppercase();
            if !ALPHABET.contains(&upper) {
                return Err(InvalidRequestId(text.to_owned()));
            }
            *slot = upper;
        }
        Ok(RequestId(id))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_ids_are_sixteen_base32_chars() {
        let id = RequestId::generate();
        assert_eq!(id.as_str().len(), REQUEST_ID_LEN);
        assert!(id.as_str().bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn generated_ids_do_not_repeat() {
        let ids: HashSet<RequestId> = (0..100_000).map(|_| RequestId::generate()).collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn parse_accepts_lowercase_and_rejects_bad_text() {
        let id = RequestId::generate();
        let lower = id.as_str().to_ascii_lowercase();
        assert_eq!(lower.parse::<RequestId>(), Ok(id));
        assert!("0123456789ABCDEI".parse::<RequestId>().is_err());
        assert!("SHORT".parse::<RequestId>().is_err());
    }
}
