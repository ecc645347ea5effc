//! HTTP/2 frames written by hand, for clients and origins that misbehave on
//! purpose, and the process's resident memory for tests that measure it.

/// Returns an HTTP/2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = length[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Returns the HPACK block of `GET https://authority/path`: indexed `:method GET`
/// and `:scheme https`, then `:authority` and `:path` as literals without
/// indexing (RFC 7541 section 6.2.2). Both values are shorter than 127 bytes.
pub fn get_headers(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87];
    for (index, value) in [(1u8, authority), (4u8, path)] {
        block.push(index);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Returns the resident set size of this process, from /proc/self/status.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
