//! Analytics events from frontends and their aggregates (module S).

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    Vec::new()
}
