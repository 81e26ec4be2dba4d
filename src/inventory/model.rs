//! The pure parts of inventory: movement kinds and the stock change a request asks for, the
//! bounds of quantities and reorder levels, when a product is low on stock, category names,
//! and the cursor of the category list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most units a product holds (and the most one movement moves).
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// What moved the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Goods came in (a delivery): adds `quantity`.
    Receipt,
    /// Goods went out to a customer: takes `quantity` away, never below zero.
    Sale,
    /// A correction (a count, breakage): a signed change.
    Adjustment,
    /// A customer brought goods back: adds `quantity`.
    Return,
}

impl MovementKind {
    pub const ALL: [MovementKind; 4] = [
        MovementKind::Receipt,
        MovementKind::Sale,
        MovementKind::Adjustment,
        MovementKind::Return,
    ];
    pub const NAMES: [&'static str; 4] = ["receipt", "sale", "adjustment", "return"];

    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Receipt => "receipt",
            MovementKind::Sale => "sale",
            MovementKind::Adjustment => "adjustment",
            MovementKind::Return => "return",
        }
    }

    pub fn parse(s: &str) -> Option<MovementKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The signed change of the stock for a request's `quantity`: positive for receipts,
    /// sales and returns (a sale subtracts it), any non-zero value for an adjustment.
    pub fn delta(self, quantity: i64) -> Result<i64, String> {
        match self {
            MovementKind::Adjustment => {
                if quantity == 0 {
                    Err("must not be 0 for an adjustment".into())
                } else if quantity.unsigned_abs() > MAX_QUANTITY as u64 {
                    Err(format!(
                        "must be between -{MAX_QUANTITY} and {MAX_QUANTITY}"
                    ))
                } else {
                    Ok(quantity)
                }
            }
            _ if !(1..=MAX_QUANTITY).contains(&quantity) => Err(format!(
                "must be a whole number from 1 to {MAX_QUANTITY} for a {}",
                self.as_str()
            )),
            MovementKind::Sale => Ok(-quantity),
            MovementKind::Receipt | MovementKind::Return => Ok(quantity),
        }
    }
}

impl std::fmt::Display for MovementKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a movement changes the stock: by a signed amount (the movement routes) or to a
/// given level (`PATCH /products/:id {quantity}`, recorded as an adjustment of the difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    By(i64),
    To(i64),
}

/// Whether a stock is at or below its reorder level (no level: never).
pub fn is_low(quantity: i64, reorder_level: Option<i64>) -> bool {
    reorder_level.is_some_and(|level| quantity <= level)
}

pub fn reorder_level(level: i64) -> Result<i64, String> {
    if (0..=MAX_QUANTITY).contains(&level) {
        Ok(level)
    } else {
        Err(format!("must be between 0 and {MAX_QUANTITY}, or null"))
    }
}

/// An optional free-text note of a movement: trimmed, empty is none, bounded, no control
/// characters.
pub fn note(value: Option<&str>, max: usize) -> Result<Option<String>, String> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(Some(v.to_string()))
}

/// A category name: 1–100 characters, trimmed, no control characters.
pub fn category(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 100 {
        return Err("must be 1–100 characters".into());
    }
    if v.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(v.to_string())
}

/// The category list is ordered by name; its cursor is the last name given.
pub fn encode_category_cursor(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(name)
}

pub fn decode_category_cursor(cursor: &str) -> Option<String> {
    if cursor.len() > 600 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let name = String::from_utf8(raw).ok()?;
    category(&name).ok().filter(|c| *c == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print_the_same_names() {
        for (k, name) in MovementKind::ALL.into_iter().zip(MovementKind::NAMES) {
            assert_eq!(k.as_str(), name);
            assert_eq!(MovementKind::parse(name), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<MovementKind>(name.into()).unwrap(),
                k
            );
        }
        for bad in ["", "Sale", "refund", "sale "] {
            assert_eq!(MovementKind::parse(bad), None, "{bad:?}");
            assert!(serde_json::from_value::<MovementKind>(bad.into()).is_err());
        }
    }

    #[test]
    fn receipts_sales_and_returns_take_a_positive_quantity() {
        use MovementKind::*;
        assert_eq!(Receipt.delta(5), Ok(5));
        assert_eq!(Return.delta(1), Ok(1));
        assert_eq!(Sale.delta(5), Ok(-5));
        assert_eq!(Sale.delta(MAX_QUANTITY), Ok(-MAX_QUANTITY));
        for k in [Receipt, Sale, Return] {
            for bad in [0, -1, MAX_QUANTITY + 1, i64::MIN, i64::MAX] {
                assert!(k.delta(bad).is_err(), "{k} {bad}");
            }
        }
    }

    #[test]
    fn adjustments_take_a_signed_non_zero_change() {
        use MovementKind::Adjustment;
        assert_eq!(Adjustment.delta(-3), Ok(-3));
        assert_eq!(Adjustment.delta(7), Ok(7));
        assert_eq!(Adjustment.delta(-MAX_QUANTITY), Ok(-MAX_QUANTITY));
        for bad in [0, MAX_QUANTITY + 1, -MAX_QUANTITY - 1, i64::MIN, i64::MAX] {
            assert!(Adjustment.delta(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn low_stock_is_at_or_below_the_level() {
        assert!(is_low(2, Some(2)));
        assert!(is_low(0, Some(0)));
        assert!(!is_low(3, Some(2)));
        assert!(!is_low(0, None));
        assert_eq!(reorder_level(0), Ok(0));
        assert!(reorder_level(-1).is_err() && reorder_level(MAX_QUANTITY + 1).is_err());
    }

    #[test]
    fn notes_and_categories_are_trimmed_and_bounded() {
        assert_eq!(note(None, 10), Ok(None));
        assert_eq!(note(Some("   "), 10), Ok(None));
        assert_eq!(note(Some(" PO-1 "), 10), Ok(Some("PO-1".into())));
        assert!(note(Some(&"x".repeat(11)), 10).is_err());
        assert!(note(Some("a\nb"), 10).is_err());
        assert_eq!(category(" Mugs "), Ok("Mugs".into()));
        assert!(category("").is_err() && category("  ").is_err());
        assert!(category(&"é".repeat(101)).is_err());
        assert!(category(&"é".repeat(100)).is_ok());
        assert!(category("a\tb").is_err());
    }

    #[test]
    fn category_cursors_round_trip_and_reject_garbage() {
        for name in ["Mugs", "Tea & coffee", "Küche/Bad", "a|b"] {
            assert_eq!(
                decode_category_cursor(&encode_category_cursor(name)),
                Some(name.to_string())
            );
        }
        for bad in [
            "!!!",
            "",
            &encode_category_cursor(" padded "),
            &"A".repeat(700),
        ] {
            assert_eq!(decode_category_cursor(bad), None, "{bad}");
        }
        assert_eq!(
            decode_category_cursor(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            None
        );
    }
}
