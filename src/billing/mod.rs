//! Module P/S's commercial core: the plan catalogue, the exact monthly usage meter, and Stripe
//! billing (checkout, subscriptions, invoices, refunds, the signed webhook).

pub mod events;
pub mod meter;
pub mod payments;
pub mod plans;
pub mod stripe;
pub mod stripe_api;
pub mod subscription;
pub mod usage;

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    routes.extend(usage::routes());
    routes.extend(events::routes());
    routes.extend(subscription::routes());
    routes.extend(payments::routes());
    routes
}
