//! Opaque identifiers: a short type prefix and 96 random bits, e.g. `usr_3f9c0a…`.

use super::crypto::random_bytes;

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<12>()))
}

thread_local! {
    static SEQUENCE: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

/// An id that sorts by creation time within an isolate (48-bit ms time, a 16-bit sequence,
/// then 64 random bits), for rows listed in the order they arrived, like a thread's messages.
pub fn ordered_id(prefix: &str, now_ms: i64) -> String {
    let seq = SEQUENCE.with(|s| {
        let n = s.get().wrapping_add(1);
        s.set(n);
        n
    });
    format!(
        "{prefix}_{:012x}{seq:04x}{}",
        now_ms.clamp(0, 0xffff_ffff_ffff),
        hex::encode(random_bytes::<8>())
    )
}

/// Whether a path parameter could be an id at all (cheap guard before a query).
pub fn plausible(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = new_id("usr");
        let b = new_id("usr");
        assert!(a.starts_with("usr_") && a.len() == 28);
        assert_ne!(a, b);
        assert!(plausible(&a));
        assert!(!plausible("x'; DROP"));
    }

    #[test]
    fn ordered_ids_sort_by_time_then_sequence() {
        let ids: Vec<String> = (0..5)
            .map(|_| ordered_id("msg", 1_700_000_000_000))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ordered_id("msg", 1) < ordered_id("msg", 2));
        assert!(plausible(&ids[0]) && ids[0].len() == 36);
    }
}
