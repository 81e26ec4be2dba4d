//! The tenant's WhatsApp channel: the Cloud API number and its credentials. Credentials are
//! sealed with AES-256-GCM (bound to tenant and field) and only ever shown as "set" + last 4.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::crypto;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/channels/whatsapp",
            Access::TenantAdmin,
            handler!(get),
        )
        .doc(
            "channels",
            "The tenant's WhatsApp channel (credentials only as set/last 4)",
        )
        .ok("Channel"),
        Route::put(
            "/api/v1/channels/whatsapp",
            Access::TenantAdmin,
            handler!(put),
        )
        .doc(
            "channels",
            "Connect or update the WhatsApp channel; omitted credentials keep their value",
        )
        .body("PutChannel")
        .ok("Channel"),
    ]
}

/// A credential as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretState {
    pub set: bool,
    pub last4: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Channel {
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone: String,
    pub access_token: SecretState,
    pub app_secret: SecretState,
    pub verify_token: SecretState,
    /// Where Meta should post this tenant's webhooks (path on this deployment).
    pub webhook_path: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutChannel {
    pub phone_number_id: String,
    pub waba_id: Option<String>,
    pub display_phone: Option<String>,
    /// The Graph API token sends use (write-only).
    pub access_token: Option<String>,
    /// The Meta app secret webhooks are signed with (write-only).
    pub app_secret: Option<String>,
    /// The token Meta echoes in the subscription handshake (write-only).
    pub verify_token: Option<String>,
}

#[derive(Deserialize)]
pub struct Row {
    pub phone_number_id: String,
    waba_id: String,
    display_phone: String,
    access_token: Option<String>,
    access_token_last4: Option<String>,
    app_secret: Option<String>,
    app_secret_last4: Option<String>,
    verify_token: Option<String>,
    verify_token_last4: Option<String>,
    created_at: String,
    updated_at: String,
}

/// The three sealed credentials.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Credential {
    AccessToken,
    AppSecret,
    VerifyToken,
}

impl Credential {
    fn name(self) -> &'static str {
        match self {
            Credential::AccessToken => "access_token",
            Credential::AppSecret => "app_secret",
            Credential::VerifyToken => "verify_token",
        }
    }
}

fn aad(tenant_id: &str, c: Credential) -> String {
    format!("channel:{tenant_id}:{}", c.name())
}

impl Row {
    fn sealed(&self, c: Credential) -> Option<&str> {
        match c {
            Credential::AccessToken => self.access_token.as_deref(),
            Credential::AppSecret => self.app_secret.as_deref(),
            Credential::VerifyToken => self.verify_token.as_deref(),
        }
    }

    pub fn has(&self, c: Credential) -> bool {
        self.sealed(c).is_some()
    }

    /// The decrypted credential, if set.
    pub fn open(&self, key: &[u8; 32], tenant_id: &str, c: Credential) -> Result<Option<String>> {
        self.sealed(c)
            .map(|sealed| {
                crypto::open(key, &aad(tenant_id, c), sealed)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| AppError::internal(format!("channel {}: {e}", c.name())))
            })
            .transpose()
    }

    fn view(self, tenant_id: &str) -> Channel {
        let state = |v: &Option<String>, last4: Option<String>| SecretState {
            set: v.is_some(),
            last4,
        };
        Channel {
            access_token: state(&self.access_token, self.access_token_last4),
            app_secret: state(&self.app_secret, self.app_secret_last4),
            verify_token: state(&self.verify_token, self.verify_token_last4),
            phone_number_id: self.phone_number_id,
            waba_id: self.waba_id,
            display_phone: self.display_phone,
            webhook_path: format!("/api/v1/webhooks/whatsapp/{tenant_id}"),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub async fn find(db: &Db, tenant_id: &str) -> Result<Option<Row>> {
    db.one(
        "SELECT phone_number_id, waba_id, display_phone, access_token, access_token_last4, \
         app_secret, app_secret_last4, verify_token, verify_token_last4, created_at, updated_at \
         FROM channels WHERE tenant_id = ?1",
        &args![tenant_id],
    )
    .await
}

/// For Meta's calls, which name the tenant in the URL: `None` when there is no such (live)
/// tenant, else its channel if it has one. One round trip for both answers.
pub async fn of_live_tenant(db: &Db, tenant_id: &str) -> Result<Option<Option<Row>>> {
    #[derive(Deserialize)]
    struct Found {
        #[serde(rename = "tenant_id")]
        _tenant_id: String,
        /// All channel columns are NULL without a channel, so `Row` does not deserialize.
        #[serde(flatten)]
        channel: Option<Row>,
    }
    let found: Option<Found> = db
        .one(
            "SELECT t.id AS tenant_id, c.phone_number_id, c.waba_id, c.display_phone, \
             c.access_token, c.access_token_last4, c.app_secret, c.app_secret_last4, \
             c.verify_token, c.verify_token_last4, c.created_at, c.updated_at \
             FROM tenants t LEFT JOIN channels c ON c.tenant_id = t.id \
             WHERE t.id = ?1 AND t.deleted_at IS NULL",
            &args![tenant_id],
        )
        .await?;
    Ok(found.map(|f| f.channel))
}

async fn get(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.tenant_id()?;
    let row = find(&cx.db()?, tenant_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&row.view(tenant_id))
}

fn digits_id(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(v.to_string())
    } else {
        Err("must be 1–64 letters or digits".into())
    }
}

fn last4(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

async fn put(cx: Ctx) -> Result<Reply> {
    let body: PutChannel = cx.json()?;
    let mut checks = Checks::new();
    let phone = checks.take("phone_number_id", digits_id(&body.phone_number_id));
    // Omitted fields keep their stored value (like the credentials).
    let waba = body
        .waba_id
        .as_deref()
        .and_then(|w| checks.take("waba_id", digits_id(w)));
    let display = body
        .display_phone
        .as_deref()
        .and_then(|d| checks.take("display_phone", j::text(d, 0, 32)));
    let secrets = [
        (Credential::AccessToken, &body.access_token),
        (Credential::AppSecret, &body.app_secret),
        (Credential::VerifyToken, &body.verify_token),
    ];
    for (c, v) in &secrets {
        if let Some(v) = v {
            if v.trim().is_empty() || v.len() > 1024 {
                checks.add(c.name(), "must be 1–1024 characters");
            }
        }
    }
    checks.finish()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let now = cx.now();
    let key = &cx.config.encryption_key;
    let seal = |c: Credential, v: &Option<String>| {
        v.as_ref().map(|v| {
            (
                crypto::seal(key, &aad(&tenant_id, c), v.trim().as_bytes()),
                last4(v.trim()),
            )
        })
    };
    let [token, secret, verify] = secrets.map(|(c, v)| seal(c, v));
    let (token, token4) = token.unzip();
    let (secret, secret4) = secret.unzip();
    let (verify, verify4) = verify.unzip();
    db.batch(vec![
        db.stmt(
            "INSERT INTO channels (tenant_id, phone_number_id, waba_id, display_phone, access_token, \
             access_token_last4, app_secret, app_secret_last4, verify_token, verify_token_last4, \
             created_at, updated_at) VALUES (?1, ?2, COALESCE(?3, ''), COALESCE(?4, ''), ?5, ?6, ?7, ?8, \
             ?9, ?10, ?11, ?11) \
             ON CONFLICT (tenant_id) DO UPDATE SET phone_number_id = excluded.phone_number_id, \
             waba_id = COALESCE(?3, channels.waba_id), \
             display_phone = COALESCE(?4, channels.display_phone), \
             access_token = COALESCE(excluded.access_token, channels.access_token), \
             access_token_last4 = COALESCE(excluded.access_token_last4, channels.access_token_last4), \
             app_secret = COALESCE(excluded.app_secret, channels.app_secret), \
             app_secret_last4 = COALESCE(excluded.app_secret_last4, channels.app_secret_last4), \
             verify_token = COALESCE(excluded.verify_token, channels.verify_token), \
             verify_token_last4 = COALESCE(excluded.verify_token_last4, channels.verify_token_last4), \
             updated_at = excluded.updated_at",
            &args![
                tenant_id.as_str(),
                phone,
                waba,
                display,
                token,
                token4,
                secret,
                secret4,
                verify,
                verify4,
                now
            ],
        )?,
        audit::entry(&cx, "channel.updated")
            .target("channel", "whatsapp")
            .meta(json!({"phone_number_id": body.phone_number_id.trim(),
                         "access_token": body.access_token.is_some(),
                         "app_secret": body.app_secret.is_some(),
                         "verify_token": body.verify_token.is_some()}))
            .stmt(&db)?,
    ])
    .await?;
    let row = find(&db, &tenant_id).await?.ok_or(AppError::NotFound)?;
    Reply::ok(&row.view(&tenant_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last4_and_ids_are_checked() {
        assert_eq!(last4("EAAG123456"), "3456");
        assert_eq!(last4("ab"), "ab");
        assert!(digits_id("1234567890").is_ok());
        assert!(digits_id("12 34").is_err());
        assert!(digits_id("").is_err());
    }
}
