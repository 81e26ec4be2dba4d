//! The user as the API shows it, and the DTOs that change one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Columns selected for a `User` (keep in sync with the struct).
pub const USER_COLUMNS: &str =
    "users.id, users.tenant_id, users.email, users.full_name, users.role, users.status, users.created_at, users.last_login, \
     users.avatar_url, users.bio, users.locale, users.timezone";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub full_name: String,
    #[schema(value_type = String, example = "owner")]
    pub role: String,
    #[schema(example = "active")]
    pub status: String,
    pub created_at: String,
    pub last_login: Option<String>,
    /// Profile fields (`PATCH /auth/me`); `null` until set.
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub bio: Option<String>,
    /// A BCP 47 language tag such as `en` or `pt-BR`.
    #[serde(default)]
    pub locale: Option<String>,
    /// An IANA time-zone name such as `Europe/Berlin` or `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// `PATCH /users/:id`: any of these.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub full_name: Option<String>,
    /// `owner`, `admin`, `agent` or `member`.
    pub role: Option<String>,
    /// `active` or `suspended`.
    pub status: Option<String>,
}

pub const USER_STATUSES: [&str; 2] = ["active", "suspended"];
