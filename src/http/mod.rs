//! The HTTP building blocks every route uses: the route table type, the request context,
//! replies, JSON input checks, paging parameters, headers and idempotency. They sit on the core
//! (`platform`) and know no feature; the dispatcher that applies them to a request is
//! `crate::dispatch`, on top.

pub mod context;
pub mod headers;
pub mod idempotency;
pub mod json;
pub mod pagination;
pub mod reply;
pub mod router;
