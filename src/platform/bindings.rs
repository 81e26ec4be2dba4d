//! Binding names as declared in `wrangler.toml`, in one place.

pub const DB: &str = "DB";
pub const MEDIA: &str = "MEDIA";
pub const JOBS: &str = "JOBS";
pub const DLQ: &str = "DLQ";
/// The dead-letter queue's name, as the consumer sees it in `MessageBatch::queue()`.
pub const DLQ_QUEUE: &str = "tenantry-dlq";
pub const RATE_LIMITER: &str = "RATE_LIMITER";
pub const TENANT_GATE: &str = "TENANT_GATE";
pub const CONVERSATION_HUB: &str = "CONVERSATION_HUB";
pub const NOTIFICATION_HUB: &str = "NOTIFICATION_HUB";
pub const USAGE_METER: &str = "USAGE_METER";
pub const ASSETS: &str = "ASSETS";
