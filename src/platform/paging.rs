//! Cursor pagination: a page is a limit (1–100, default 20) and an opaque cursor that encodes
//! the last row's `(created_at, id)`, so pages stay stable while rows are inserted. The query
//! parameters that carry them are documented in `http::pagination`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::error::{AppError, Result};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// A page request: how many rows and where to continue (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub limit: u32,
    /// Continue strictly after this `(created_at, id)`.
    pub after: Option<(String, String)>,
}

impl Page {
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Page> {
        let limit = match limit {
            None | Some("") => DEFAULT_LIMIT,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(AppError::field("limit", "must be an integer from 1 to 100")),
            },
        };
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                AppError::field("cursor", "is not a cursor returned by this API")
            })?),
        };
        Ok(Page { limit, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page exists.
    pub fn fetch(&self) -> u32 {
        self.limit + 1
    }

    /// Trims the extra row and returns the cursor for the next page.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> (String, String),
    ) -> (Vec<T>, Option<String>) {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(|r| {
                let (created, id) = key(r);
                encode_cursor(&created, &id)
            });
            (rows, next)
        } else {
            (rows, None)
        }
    }
}

pub fn encode_cursor(created_at: &str, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}|{id}"))
}

pub fn decode_cursor(cursor: &str) -> Option<(String, String)> {
    if cursor.len() > 200 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (created, id) = text.split_once('|')?;
    let plausible = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.TZ+".contains(&b))
    };
    (plausible(created) && plausible(id)).then(|| (created.to_string(), id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_bounds() {
        assert_eq!(Page::parse(None, None).unwrap().limit, 20);
        assert_eq!(Page::parse(Some("100"), None).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "abc", "1.5"] {
            assert!(Page::parse(Some(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("2026-11-23T10:00:00.000Z", "usr_abc");
        let p = Page::parse(None, Some(&c)).unwrap();
        assert_eq!(
            p.after,
            Some(("2026-11-23T10:00:00.000Z".into(), "usr_abc".into()))
        );
        for bad in ["!!!", "bm9waXBl", &URL_SAFE_NO_PAD.encode("a|b' OR 1=1")] {
            assert!(Page::parse(None, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn finish_trims_the_probe_row_and_points_at_the_last_kept() {
        let p = Page::parse(Some("2"), None).unwrap();
        let rows = vec![("t3", "c"), ("t2", "b"), ("t1", "a")];
        let (kept, next) = p.finish(rows, |r| (r.0.to_string(), r.1.to_string()));
        assert_eq!(kept.len(), 2);
        assert_eq!(
            decode_cursor(&next.unwrap()),
            Some(("t2".into(), "b".into()))
        );
        let (kept, next) = p.finish(vec![("t1", "a")], |r| (r.0.to_string(), r.1.to_string()));
        assert_eq!(kept.len(), 1);
        assert!(next.is_none());
    }
}
