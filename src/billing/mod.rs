//! Module P/S's commercial core: the plan catalogue, the exact monthly usage meter, and Stripe
//! billing (checkout, subscriptions, invoices, refunds, the signed webhook).

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    Vec::new()
}
