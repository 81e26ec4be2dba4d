//! In-app notifications, their preferences and live feed (module S).

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    Vec::new()
}
