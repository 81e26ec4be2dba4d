//! Product candidates in extracted text: lines with a name and a price (`€ 12,50`,
//! `12.50 EUR`, `$9.99`, `1.234,00`, `1,234.00`), the currency (explicit, or the document's),
//! quantity and SKU when present, and a confidence per candidate. Deterministic and pure.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    /// 1-based line number in the extracted text.
    pub line: usize,
    pub name: String,
    /// In minor units (cents).
    pub price: i64,
    /// ISO 4217.
    pub currency: String,
    pub quantity: Option<i64>,
    pub sku: Option<String>,
    /// 0–1: how sure the detector is that the line is a product with this price.
    pub confidence: f64,
    /// The line as extracted.
    pub text: String,
}

const CODES: [&str; 10] = [
    "EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY",
];
const SKIP: [&str; 12] = [
    "total", "subtotal", "sum", "vat", "tax", "mwst", "ust", "shipping", "discount", "balance",
    "gesamt", "summe",
];

fn symbol_code(c: char) -> Option<&'static str> {
    match c {
        '€' => Some("EUR"),
        '$' => Some("USD"),
        '£' => Some("GBP"),
        '¥' => Some("JPY"),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Price {
    start: usize,
    minor: i64,
    currency: Option<&'static str>,
}

/// Parses `1.234,00` / `1,234.00` / `12,50` / `9.99` / `1234` into minor units; a final
/// separator followed by exactly two digits is the decimal one.
pub fn parse_amount(s: &str) -> Option<i64> {
    let s = s.trim_matches(|c: char| c == '.' || c == ',');
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let last_sep = s.rfind(['.', ',']);
    let (int_part, frac) = match last_sep {
        Some(i) if s.len() - i - 1 == 2 => (&s[..i], &s[i + 1..]),
        _ => (s, "00"),
    };
    let digits: String = int_part.chars().filter(char::is_ascii_digit).collect();
    // Thousands groups must be three digits: `1.23.4` is not an amount.
    if int_part.contains(['.', ',', '\'']) {
        let groups: Vec<&str> = int_part.split(['.', ',', '\'']).collect();
        if groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3) {
            return None;
        }
    }
    if digits.is_empty() || digits.len() > 12 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

/// Number-like tokens with their byte positions.
fn numbers(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'))
        {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || ((b[i] == b'.' || b[i] == b',' || b[i] == b'\'')
                        && i + 1 < b.len()
                        && b[i + 1].is_ascii_digit()))
            {
                i += 1;
            }
            // A number glued to letters (`A12`, `12cm`) is part of a name or SKU.
            if i < b.len() && b[i].is_ascii_alphabetic() && !line[i..].starts_with(['x', 'X']) {
                continue;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

fn prices(line: &str) -> Vec<Price> {
    let mut out = Vec::new();
    for (start, end) in numbers(line) {
        let text = &line[start..end];
        let before = line[..start].trim_end();
        let after = line[end..].trim_start();
        let currency = before
            .chars()
            .last()
            .and_then(symbol_code)
            .or_else(|| after.chars().next().and_then(symbol_code))
            .or_else(|| CODES.iter().find(|c| after.starts_with(*c)).copied())
            .or_else(|| CODES.iter().find(|c| before.ends_with(*c)).copied());
        let has_decimals = text
            .rfind(['.', ','])
            .is_some_and(|i| text.len() - i - 1 == 2);
        if currency.is_none() && !has_decimals {
            continue;
        }
        if let Some(minor) = parse_amount(text) {
            out.push(Price {
                start: line[..start]
                    .trim_end()
                    .strip_suffix(|c: char| symbol_code(c).is_some())
                    .map(|s| s.len())
                    .or_else(|| {
                        CODES
                            .iter()
                            .find_map(|c| before.strip_suffix(c).map(|s| s.trim_end().len()))
                    })
                    .unwrap_or(start),
                minor,
                currency,
            });
        }
    }
    out
}

fn quantity(line: &str) -> Option<i64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let lw = w.to_ascii_lowercase();
        let num = |s: &str| s.parse::<i64>().ok().filter(|n| (1..=100_000).contains(n));
        if let Some(n) = lw.strip_suffix('x').and_then(num) {
            return Some(n);
        }
        if let Some(n) = lw.strip_prefix('x').and_then(num) {
            return Some(n);
        }
        if matches!(lw.as_str(), "x" | "×") && i > 0 {
            if let Some(n) = num(words[i - 1]) {
                return Some(n);
            }
        }
        if matches!(lw.as_str(), "qty" | "qty:" | "menge" | "menge:") {
            if let Some(n) = words.get(i + 1).and_then(|n| num(n)) {
                return Some(n);
            }
        }
        if matches!(
            lw.as_str(),
            "pcs" | "pc" | "stk" | "stk." | "units" | "pieces"
        ) && i > 0
        {
            if let Some(n) = num(words[i - 1]) {
                return Some(n);
            }
        }
    }
    None
}

fn sku(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let lw = w.to_ascii_lowercase();
        if matches!(
            lw.as_str(),
            "sku" | "sku:" | "art.-nr." | "art.nr." | "item" | "item:" | "#"
        ) {
            if let Some(next) = words.get(i + 1) {
                return Some(
                    next.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                        .to_string(),
                );
            }
        }
        let t = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
        let has_digit = t.chars().any(|c| c.is_ascii_digit());
        let has_upper = t.chars().any(|c| c.is_ascii_uppercase());
        let shaped = t.len() >= 4
            && t.contains(['-', '_'])
            && t.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if shaped && has_digit && has_upper {
            return Some(t.to_string());
        }
    }
    None
}

fn clean_name(raw: &str, sku: Option<&str>) -> String {
    let mut name = raw.to_string();
    if let Some(s) = sku {
        name = name.replace(s, " ");
    }
    let words: Vec<&str> = name
        .split_whitespace()
        .filter(|w| {
            let lw = w.to_ascii_lowercase();
            let marker = matches!(
                lw.as_str(),
                "sku" | "sku:" | "art.-nr." | "item:" | "x" | "×" | "qty" | "qty:" | "pcs" | "stk"
            );
            let count = lw.ends_with('x') && lw[..lw.len() - 1].parse::<i64>().is_ok();
            !(marker || count) && lw.parse::<i64>().is_err()
        })
        .collect();
    words
        .join(" ")
        .trim_matches(|c: char| c.is_whitespace() || ".:-–|;,*\t".contains(c))
        .to_string()
}

/// The candidates in `text`; `default_currency` applies to prices without one when the
/// document names none either.
pub fn detect(text: &str, default_currency: &str) -> Vec<Candidate> {
    let lines: Vec<&str> = text.lines().collect();
    let all: Vec<Vec<Price>> = lines.iter().map(|l| prices(l)).collect();
    // The document's currency: the one named most often.
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for p in all.iter().flatten() {
        if let Some(c) = p.currency {
            match counts.iter_mut().find(|(k, _)| *k == c) {
                Some(e) => e.1 += 1,
                None => counts.push((c, 1)),
            }
        }
    }
    let doc_currency = counts
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| default_currency.to_string());

    let mut out = Vec::new();
    for (i, (line, found)) in lines.iter().zip(all).enumerate() {
        let lower = line.to_lowercase();
        if found.is_empty()
            || SKIP
                .iter()
                .any(|k| lower.split(|c: char| !c.is_alphanumeric()).any(|w| w == *k))
        {
            continue;
        }
        let qty = quantity(line);
        // With a quantity and several amounts, the first is the unit price; else the last.
        let price = if qty.is_some() && found.len() > 1 {
            &found[0]
        } else {
            &found[found.len() - 1]
        };
        let sku = sku(line);
        let first_start = found.iter().map(|p| p.start).min().unwrap_or(0);
        let name = clean_name(&line[..first_start], sku.as_deref());
        if name.chars().filter(|c| c.is_alphabetic()).count() < 2 || price.minor <= 0 {
            continue;
        }
        let mut confidence: f64 = 0.5;
        if price.currency.is_some() {
            confidence += 0.2;
        }
        if sku.is_some() {
            confidence += 0.1;
        }
        if name.split_whitespace().count() >= 2 {
            confidence += 0.1;
        }
        if name.chars().count() < 4 {
            confidence -= 0.2;
        }
        out.push(Candidate {
            line: i + 1,
            name,
            price: price.minor,
            currency: price
                .currency
                .map(str::to_string)
                .unwrap_or_else(|| doc_currency.clone()),
            quantity: qty,
            sku,
            confidence: (confidence.clamp(0.0, 1.0) * 100.0).round() / 100.0,
            text: line.trim().to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_both_conventions() {
        assert_eq!(parse_amount("12,50"), Some(1250));
        assert_eq!(parse_amount("12.50"), Some(1250));
        assert_eq!(parse_amount("1.234,00"), Some(123_400));
        assert_eq!(parse_amount("1,234.00"), Some(123_400));
        assert_eq!(parse_amount("1,234"), Some(123_400));
        assert_eq!(parse_amount("9.99"), Some(999));
        assert_eq!(parse_amount("1234"), Some(123_400));
        assert_eq!(parse_amount("1.23.4"), None);
        assert_eq!(parse_amount("abc"), None);
    }

    #[test]
    fn a_german_price_list() {
        let text = "Preisliste Frühjahr 2026\n\
                    Artikel                     Preis\n\
                    Keramikbecher blau          € 12,50\n\
                    Teekanne Steingut 1,2 l     34,90 €\n\
                    Untersetzer Kork (4er Set)  8,00 EUR\n\
                    Gesamt                      55,40 €\n";
        let c = detect(text, "EUR");
        let got: Vec<(&str, i64, &str)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.price, c.currency.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Keramikbecher blau", 1250, "EUR"),
                ("Teekanne Steingut 1,2 l", 3490, "EUR"),
                ("Untersetzer Kork (4er Set)", 800, "EUR"),
            ]
        );
        assert_eq!(c[0].line, 3);
        assert!(c.iter().all(|c| c.confidence >= 0.7));
    }

    #[test]
    fn an_english_invoice_with_skus_and_quantities() {
        let text = "INVOICE 2026-0042\n\
                    SKU MUG-001  Stoneware mug   2 x $9.99   $19.98\n\
                    TP-220 Teapot large  1,234.00 USD\n\
                    Gift card £25\n\
                    Subtotal $1,263.98\n\
                    Shipping $5.00\n";
        let c = detect(text, "EUR");
        assert_eq!(c.len(), 3, "{c:#?}");
        assert_eq!(c[0].name, "Stoneware mug");
        assert_eq!(c[0].sku.as_deref(), Some("MUG-001"));
        assert_eq!((c[0].price, c[0].quantity), (999, Some(2)));
        assert_eq!(c[0].currency, "USD");
        assert_eq!(
            (c[1].name.as_str(), c[1].price, c[1].sku.as_deref()),
            ("Teapot large", 123_400, Some("TP-220"))
        );
        assert_eq!(
            (c[2].name.as_str(), c[2].price, c[2].currency.as_str()),
            ("Gift card", 2500, "GBP")
        );
    }

    #[test]
    fn bare_decimals_take_the_documents_currency_and_noise_is_ignored() {
        let text = "Lavender soap 4.50\nCall us at 0800 123 456\nOrder 12345\n 7.00\nRose oil 12.00 CHF\nCedar soap 5.25";
        let c = detect(text, "EUR");
        let got: Vec<(&str, i64, &str)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.price, c.currency.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Lavender soap", 450, "CHF"),
                ("Rose oil", 1200, "CHF"),
                ("Cedar soap", 525, "CHF")
            ]
        );
        assert!(c[0].confidence < c[1].confidence);
        assert!(detect("", "EUR").is_empty());
        assert!(detect("just words here", "EUR").is_empty());
    }
}
