//! Module P/S's commercial core: the plan catalogue, the exact monthly usage meter, and Stripe
//! billing (checkout, subscriptions, invoices, refunds, the signed webhook).

pub mod payments;
pub mod stripe_api;
pub mod subscription;

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    routes.extend(subscription::routes());
    routes.extend(payments::routes());
    routes
}
