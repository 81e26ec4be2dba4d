//! Teams inside a tenant and invitations to join it (module S).

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    Vec::new()
}
