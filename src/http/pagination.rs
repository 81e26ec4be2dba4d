//! The paging query parameters, `?limit=` and `?cursor=`, as routes document them; the page
//! itself (limits, cursors) is `platform::paging`.

use super::router::QueryDoc;

pub const PAGING: [QueryDoc; 2] = [
    super::router::q("limit", "integer", "Page size, 1–100 (default 20)."),
    super::router::q(
        "cursor",
        "string",
        "Opaque cursor from the previous page's `next_cursor`.",
    ),
];
