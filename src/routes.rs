//! The whole route table: each feature contributes its routes.

use crate::http::router::{Route, RouteTable};

/// The table, built and indexed once per isolate: a request looks routes up without
/// rebuilding them.
pub fn table() -> &'static RouteTable {
    thread_local! {
        static TABLE: &'static RouteTable = Box::leak(Box::new(RouteTable::new(all())));
    }
    TABLE.with(|t| *t)
}

pub fn all() -> Vec<Route> {
    let mut routes = Vec::with_capacity(64);
    routes.extend(crate::health::routes());
    routes.extend(crate::docs::routes());
    routes.extend(crate::auth::routes());
    routes.extend(crate::oauth::routes());
    routes.extend(crate::users::routes());
    routes.extend(crate::apikeys::routes());
    routes.extend(crate::tenants::routes());
    routes.extend(crate::audit::routes::routes());
    routes.extend(crate::audit::report::routes());
    routes.extend(crate::settings::routes());
    routes.extend(crate::workflows::routes());
    routes.extend(crate::workflows::admin::routes());
    routes.extend(crate::requests::routes());
    routes.extend(crate::tickets::routes());
    routes.extend(crate::messaging::routes());
    routes.extend(crate::media::routes());
    routes.extend(crate::products::routes());
    routes.extend(crate::inventory::routes());
    routes.extend(crate::billing::routes());
    routes.extend(crate::optimize::routes());
    routes.extend(crate::profile::routes());
    routes.extend(crate::teams::routes());
    routes.extend(crate::notifications::routes());
    routes.extend(crate::push::routes());
    routes.extend(crate::analytics::routes());
    routes.extend(crate::search::routes());
    routes.extend(crate::export::routes());
    routes
}
