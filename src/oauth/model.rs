//! Request and response bodies of the sign-in routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The one-time code the callback appended to the `redirect_uri`.
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The `link_token` of the exchange's `409 link_required` answer.
    pub link_token: String,
}

/// A provider account linked to the caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub id: String,
    /// `google` or `github`.
    pub provider: String,
    /// The provider's account id.
    pub subject: String,
    /// The verified e-mail the provider gave when it was linked.
    pub email: String,
    pub created_at: String,
}
