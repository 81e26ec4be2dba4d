//! The caller's profile and preferences, the organisation, and the tenant dashboard (module S).

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    Vec::new()
}
