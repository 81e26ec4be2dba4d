//! Binding names as declared in `wrangler.toml`, in one place.

pub const DB: &str = "DB";
pub const MEDIA: &str = "MEDIA";
pub const JOBS: &str = "JOBS";
pub const RATE_LIMITER: &str = "RATE_LIMITER";
