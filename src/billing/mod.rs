//! Module P/S's commercial core: the plan catalogue, the exact monthly usage meter, and Stripe
//! billing (checkout, subscriptions, invoices, refunds, the signed webhook).

pub mod meter;
pub mod plans;
pub mod usage;
pub mod events;
pub mod stripe;

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    routes.extend(usage::routes());
    routes.extend(events::routes());
    routes
}
