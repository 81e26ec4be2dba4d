//! Module M: the WhatsApp Business inbox — the channel, Meta's webhooks in, conversations and
//! contacts for agents, paced outbound sends, templates and campaigns, and live updates over
//! WebSockets held by a Durable Object per conversation.

pub mod attachments;
pub mod campaigns;
pub mod channel;
pub mod delivery;
pub mod inbox;
pub mod ingest;
pub mod live;
pub mod model;
pub mod outbound;
pub mod store;
pub mod templates;
pub mod webhook;

use crate::http::router::Route;

pub fn routes() -> Vec<Route> {
    let mut routes = channel::routes();
    routes.extend(ingest::routes());
    routes.extend(inbox::routes());
    routes.extend(live::routes());
    routes.extend(outbound::routes());
    routes.extend(templates::routes());
    routes.extend(campaigns::routes());
    routes
}
