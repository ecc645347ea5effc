//! Random secrets and identifiers from the operating system's generator.

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// Fills an array with random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator is available");
    bytes
}

/// Returns `N` random bytes encoded as unpadded base64url.
pub(crate) fn random_base64url<const N: usize>() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// Returns `N` random bytes encoded as lowercase hex.
pub(crate) fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}
