//! Helpers shared by the fuzz targets in `src/bin/`.
//!
//! Several targets take a leading "shape" byte and then the payload, so
//! that the seed corpus can be the real captures and fixtures with one
//! byte in front: the fuzzer mutates both the payload and how it is fed.

/// Splits `data` into reads whose sizes come from `seed`: 0 is one read of
/// everything, anything else a deterministic run of sizes from 1 up to
/// about `4 * seed`, so both byte-at-a-time and larger reads occur.
pub fn reads(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let max = usize::from(seed) * 4;
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift32: cheap and the same on every run.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        out.push(chunk);
        rest = tail;
    }
    out
}

/// The first byte as the shape, the rest as the payload.
pub fn shape_and_payload(data: &[u8]) -> Option<(u8, &[u8])> {
    let (&shape, payload) = data.split_first()?;
    Some((shape, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in 0..=255u8 {
            let parts = reads(&data, seed);
            assert_eq!(parts.concat(), data);
            assert!(parts.iter().all(|p| !p.is_empty()));
        }
        assert!(reads(b"", 7).is_empty());
    }
}
