//! Trino query ids, `YYYYMMDD_HHMMSS_NNNNN_ccccc`: what is a valid one, and the coordinator id
//! at its end (random per coordinator process), which names the backend that runs the query.
//! A leaf: nothing here knows about backends or snapshots.

/// The last five characters of a query id, as bytes.
pub type CoordinatorId = [u8; 5];

/// The alphabet Trino draws coordinator ids from (base 32 without `l`, `o`, `0`, `1`).
pub const COORDINATOR_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Whether `b` is in [`COORDINATOR_ALPHABET`] (a comparison, not a search: every follow-up asks).
fn is_coordinator_char(b: u8) -> bool {
    matches!(b, b'a'..=b'k' | b'm' | b'n' | b'p'..=b'z' | b'2'..=b'9')
}

/// A query id as Trino accepts it: `[a-z0-9_]`, bounded length.
pub fn is_valid_query_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `YYYYMMDD_HHMMSS_NNNNN_ccccc` taken apart: the sequence digits and the five characters at
/// the end, if `id` has that form (whatever those five are).
fn parts(id: &str) -> Option<(&str, &[u8])> {
    let b = id.as_bytes();
    // 8 + 1 + 6 + 1 + (≥5 digits) + 1 + 5
    if b.len() < 27 || b[8] != b'_' || b[15] != b'_' || b[b.len() - 6] != b'_' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !digits(0..8) || !digits(9..15) || !digits(16..b.len() - 6) {
        return None;
    }
    Some((id.get(16..b.len() - 6)?, &b[b.len() - 5..]))
}

/// The coordinator id of a standard query id `YYYYMMDD_HHMMSS_NNNNN_ccccc`, if it has that form.
pub fn coordinator_id(query_id: &str) -> Option<CoordinatorId> {
    let (_, tail) = parts(query_id)?;
    if !tail.iter().all(|&c| is_coordinator_char(c)) {
        return None;
    }
    <CoordinatorId>::try_from(tail).ok()
}

/// The id of a query a gateway holds in its queue, `YYYYMMDD_HHMMSS_NNNNN_0tttt`: `0` (outside
/// the coordinator alphabet, so never a cluster's id) and the holding instance's tag `tttt` (from
/// the alphabet). Its sequence number and tag, if `id` has that form.
pub fn held_id(id: &str) -> Option<(u64, [u8; 4])> {
    // Every follow-up asks: a cluster's id is turned away by one byte, before the digits.
    let b = id.as_bytes();
    if b.len() < 27 || b[b.len() - 5] != b'0' {
        return None;
    }
    let (seq, tail) = parts(id)?;
    let (&zero, tag) = tail.split_first()?;
    if zero != b'0' || !tag.iter().all(|&c| is_coordinator_char(c)) {
        return None;
    }
    Some((seq.parse().ok()?, <[u8; 4]>::try_from(tag).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_and_its_test_agree() {
        for b in 0..=255u8 {
            assert_eq!(
                is_coordinator_char(b),
                COORDINATOR_ALPHABET.contains(&b),
                "{b}"
            );
        }
    }

    #[test]
    fn held_ids_are_never_coordinator_ids() {
        assert_eq!(held_id("20261130_101010_00042_0k3fa"), Some((42, *b"k3fa")));
        assert_eq!(coordinator_id("20261130_101010_00042_0k3fa"), None);
        assert_eq!(held_id("20261130_101010_00042_k3f9a"), None);
        assert_eq!(held_id("20261130_101010_00042_0k3f1"), None);
        assert_eq!(held_id("2026113x_101010_00042_0k3fa"), None);
        assert_eq!(held_id("short"), None);
    }

    #[test]
    fn extracts_coordinator_ids() {
        assert_eq!(
            coordinator_id("20260430_121314_00042_k3f9a"),
            Some(*b"k3f9a")
        );
        assert_eq!(
            coordinator_id("20200513_074020_00002_mgdh8"),
            Some(*b"mgdh8")
        );
        assert_eq!(
            coordinator_id("20200514_063907_02437_mgdh8"),
            Some(*b"mgdh8")
        );
        // 'l', '0', '1' and 'o' are not in the alphabet; malformed shapes are rejected.
        assert_eq!(coordinator_id("20260430_121314_00042_k3f9l"), None);
        assert_eq!(coordinator_id("20260430_121314_00042_k3f9"), None);
        assert_eq!(coordinator_id("2026043x_121314_00042_k3f9a"), None);
        assert_eq!(coordinator_id("short"), None);
        assert_eq!(
            coordinator_id("20260430_121314_000420000_k3f9a"),
            Some(*b"k3f9a")
        );
    }
}
