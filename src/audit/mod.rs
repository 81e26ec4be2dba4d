//! Audit trail of security-relevant actions and the request log: writing entries, and the
//! routes that read them (tenant admins see their tenant; the platform admin sees all).

pub mod report;
pub mod request_log;
pub mod routes;

use serde_json::Value;
use worker::D1PreparedStatement;

use crate::args;
use crate::http::context::Ctx;
use crate::platform::db::Db;
use crate::platform::error::Result;
use crate::platform::ids;

/// One audit entry under construction. Actor, IP, user agent and request id come from the context.
pub struct Audit {
    action: &'static str,
    tenant_id: Option<String>,
    actor_id: Option<String>,
    actor_email: Option<String>,
    target_type: Option<&'static str>,
    target_id: Option<String>,
    metadata: Value,
    ip: String,
    user_agent: String,
    request_id: String,
    created_at: String,
}

pub fn entry(cx: &Ctx, action: &'static str) -> Audit {
    let p = cx.principal.as_ref();
    Audit {
        action,
        tenant_id: p.map(|p| p.tenant_id.clone()),
        actor_id: p.and_then(|p| {
            p.user_id
                .clone()
                .or_else(|| p.api_key.as_ref().map(|k| k.id.clone()))
        }),
        actor_email: p.and_then(|p| p.email.clone()),
        target_type: None,
        target_id: None,
        metadata: Value::Object(Default::default()),
        ip: cx.client.ip.clone(),
        user_agent: cx.client.user_agent.clone(),
        request_id: cx.request_id.clone(),
        created_at: cx.now(),
    }
}

impl Audit {
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Sets the actor when the context has none yet (log-in, registration).
    pub fn actor(mut self, id: Option<String>, email: Option<String>) -> Self {
        self.actor_id = id;
        self.actor_email = email;
        self
    }

    pub fn target(mut self, kind: &'static str, id: impl Into<String>) -> Self {
        self.target_type = Some(kind);
        self.target_id = Some(id.into());
        self
    }

    pub fn meta(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn stmt(&self, db: &Db) -> Result<D1PreparedStatement> {
        db.stmt(
            "INSERT INTO audit_logs (id, tenant_id, actor_id, actor_email, action, target_type, \
             target_id, ip, user_agent, request_id, metadata, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            &args![
                ids::new_id("aud"),
                self.tenant_id.clone(),
                self.actor_id.clone(),
                self.actor_email.clone(),
                self.action,
                self.target_type,
                self.target_id.clone(),
                self.ip.as_str(),
                self.user_agent.as_str(),
                self.request_id.as_str(),
                self.metadata.to_string(),
                self.created_at.as_str()
            ],
        )
    }

    pub async fn write(&self, db: &Db) -> Result<()> {
        db.batch(vec![self.stmt(db)?]).await.map(|_| ())
    }
}
