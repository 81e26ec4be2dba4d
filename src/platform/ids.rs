//! Opaque identifiers: a short type prefix and 96 random bits, e.g. `usr_3f9c0a…`.

use super::crypto::random_bytes;

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<12>()))
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
}
