//! Campaigns: one template sent to many numbers through the same paced send queue, with
//! progress counted from the messages' statuses.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::channel::{self, Credential};
use super::model::wa_id;
use super::outbound::{queue_message, Outgoing, Queued};
use super::store;
use super::templates::{render, TemplateRef};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

/// Recipients per campaign request (each becomes a queued message).
pub const MAX_RECIPIENTS: usize = 100;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post(
            "/api/v1/campaigns",
            Access::TenantAdmin,
            handler!(start_campaign),
        )
        .doc(
            "templates",
            "Send a template to up to 100 numbers through the paced send queue",
        )
        .body("CreateCampaign")
        .accepted("Campaign")
        .idempotent(),
        Route::get(
            "/api/v1/campaigns/:id",
            Access::Agent,
            handler!(get_campaign),
        )
        .doc("templates", "A campaign with its delivery progress")
        .ok("Campaign"),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    /// The template's name.
    pub template: String,
    pub language: String,
    /// Phone numbers in international format (1–100).
    pub recipients: Vec<String>,
    /// Body parameters, the same for every recipient.
    #[serde(default)]
    pub parameters: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CampaignProgress {
    pub total: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Campaign {
    pub id: String,
    pub template: String,
    pub language: String,
    pub parameters: Vec<String>,
    pub progress: CampaignProgress,
    pub created_at: String,
}

async fn campaign(db: &Db, tenant_id: &str, id: &str) -> Result<Campaign> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        template_name: String,
        language: String,
        parameters: String,
        total: i64,
        created_at: String,
    }
    let r: Row = db
        .one(
            "SELECT id, template_name, language, parameters, total, created_at FROM campaigns \
             WHERE id = ?1 AND tenant_id = ?2",
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    let mut progress: CampaignProgress = db
        .one(
            "SELECT COUNT(*) AS total, COALESCE(SUM(status = 'queued'), 0) AS queued, \
             COALESCE(SUM(status = 'sent'), 0) AS sent, COALESCE(SUM(status = 'delivered'), 0) AS delivered, \
             COALESCE(SUM(status = 'read'), 0) AS read, COALESCE(SUM(status = 'failed'), 0) AS failed \
             FROM messages WHERE campaign_id = ?1 AND tenant_id = ?2",
            &args![id, tenant_id],
        )
        .await?
        .unwrap_or_default();
    progress.total = r.total;
    Ok(Campaign {
        id: r.id,
        template: r.template_name,
        language: r.language,
        parameters: serde_json::from_str(&r.parameters).unwrap_or_default(),
        progress,
        created_at: r.created_at,
    })
}

async fn get_campaign(cx: Ctx) -> Result<Reply> {
    Reply::ok(&campaign(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

async fn start_campaign(cx: Ctx) -> Result<Reply> {
    let body: CreateCampaign = cx.json()?;
    let mut checks = Checks::new();
    let mut recipients: Vec<String> = Vec::new();
    if body.recipients.is_empty() || body.recipients.len() > MAX_RECIPIENTS {
        checks.add(
            "recipients",
            format!("must list 1–{MAX_RECIPIENTS} numbers"),
        );
    }
    for (i, r) in body.recipients.iter().enumerate() {
        match wa_id(r) {
            Ok(n) if !recipients.contains(&n) => recipients.push(n),
            Ok(_) => {}
            Err(m) => checks.add(&format!("recipients[{i}]"), m),
        }
    }
    checks.finish()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let reference = TemplateRef {
        name: body.template.clone(),
        language: body.language.clone(),
        parameters: body.parameters.clone(),
    };
    let preview = render(&db, &tenant_id, &reference).await?;
    if !channel::find(&db, &tenant_id)
        .await?
        .is_some_and(|c| c.has(Credential::AccessToken))
    {
        return Err(AppError::Conflict(
            "Connect WhatsApp first: PUT /api/v1/channels/whatsapp with an access token.".into(),
        ));
    }
    let id = ids::new_id("cmp");
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "INSERT INTO campaigns (id, tenant_id, template_name, language, parameters, total, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &args![
                id.as_str(),
                tenant_id.as_str(),
                body.template.as_str(),
                body.language.as_str(),
                serde_json::to_string(&body.parameters)?,
                recipients.len() as i64,
                cx.principal()?.user_id.clone(),
                now.as_str()
            ],
        )?,
        audit::entry(&cx, "campaign.started")
            .target("campaign", id.as_str())
            .meta(json!({"template": body.template, "recipients": recipients.len()}))
            .stmt(&db)?,
    ])
    .await?;
    let out = Outgoing {
        kind: "template",
        text: preview,
        content: json!({"name": reference.name, "language": reference.language, "parameters": reference.parameters}),
    };
    let user = cx.principal()?.user_id.clone();
    for to in &recipients {
        let contact = store::upsert_contact(&db, &tenant_id, to, "", &now).await?;
        let (conversation_id, _) =
            store::active_conversation(&db, &tenant_id, &contact, &now).await?;
        queue_message(
            &cx.env,
            &db,
            &Queued {
                tenant_id: &tenant_id,
                conversation_id: &conversation_id,
                out: &out,
                sent_by: user.as_deref(),
                campaign_id: Some(&id),
                now: &now,
            },
        )
        .await?;
    }
    let c = campaign(&db, &tenant_id, &id).await?;
    Reply::accepted(&c, format!("/api/v1/campaigns/{id}"))
}
