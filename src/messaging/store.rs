//! Inbox persistence shared by webhook processing, outbound sends and the API: contacts,
//! the contact's active conversation (with optional round-robin assignment), reads by id.

use serde::Deserialize;

use super::model::{
    Contact, ContactRow, Conversation, ConversationRow, Message, MessageRow, CONTACT_COLUMNS,
    CONVERSATION_SELECT, MESSAGE_COLUMNS,
};
use crate::args;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

#[derive(Deserialize)]
struct Id {
    id: String,
}

/// The contact for `wa_id`, created on first sight; a non-empty profile name refreshes its name.
pub async fn upsert_contact(
    db: &Db,
    tenant_id: &str,
    wa_id: &str,
    name: &str,
    now: &str,
) -> Result<String> {
    db.run(
        "INSERT INTO contacts (id, tenant_id, wa_id, name, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (tenant_id, wa_id) DO UPDATE SET \
         name = CASE WHEN excluded.name != '' THEN excluded.name ELSE contacts.name END, \
         updated_at = CASE WHEN excluded.name != '' AND excluded.name != contacts.name \
         THEN excluded.updated_at ELSE contacts.updated_at END",
        &args![ids::new_id("ctc"), tenant_id, wa_id, name, now],
    )
    .await?;
    db.one::<Id>(
        "SELECT id FROM contacts WHERE tenant_id = ?1 AND wa_id = ?2",
        &args![tenant_id, wa_id],
    )
    .await?
    .map(|r| r.id)
    .ok_or_else(|| AppError::internal("contact vanished after upsert"))
}

/// The contact's open or pending conversation, opening a new one (assigned round-robin when
/// the tenant wants that) if there is none. Returns the id and whether it is new.
pub async fn active_conversation(
    db: &Db,
    tenant_id: &str,
    contact_id: &str,
    now: &str,
) -> Result<(String, bool)> {
    let find = || async {
        db.one::<Id>(
            "SELECT id FROM conversations WHERE tenant_id = ?1 AND contact_id = ?2 \
             AND status IN ('open', 'pending')",
            &args![tenant_id, contact_id],
        )
        .await
    };
    if let Some(c) = find().await? {
        return Ok((c.id, false));
    }
    // The unique index on active conversations makes a concurrent creator's insert a no-op.
    let id = ids::new_id("cnv");
    let created = db
        .run(
            "INSERT OR IGNORE INTO conversations (id, tenant_id, contact_id, status, assigned_to, \
             created_at, updated_at) VALUES (?1, ?2, ?3, 'open', \
             (SELECT u.id FROM users u WHERE u.tenant_id = ?2 AND u.role = 'agent' \
                AND u.status = 'active' \
                AND EXISTS (SELECT 1 FROM tenant_settings s WHERE s.tenant_id = ?2 \
                            AND s.auto_assign_conversations = 1) \
              ORDER BY (SELECT MAX(c.created_at) FROM conversations c WHERE c.assigned_to = u.id) \
              IS NOT NULL, (SELECT MAX(c.created_at) FROM conversations c WHERE c.assigned_to = u.id), \
              u.created_at LIMIT 1), ?4, ?4)",
            &args![id.as_str(), tenant_id, contact_id, now],
        )
        .await?;
    if created == 1 {
        return Ok((id, true));
    }
    find()
        .await?
        .map(|c| (c.id, false))
        .ok_or_else(|| AppError::internal("no active conversation after insert"))
}

pub async fn conversation(db: &Db, tenant_id: &str, id: &str) -> Result<Conversation> {
    let row: ConversationRow = db
        .one(
            &format!("{CONVERSATION_SELECT} WHERE conversations.id = ?1 AND conversations.tenant_id = ?2"),
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

pub async fn message(db: &Db, tenant_id: &str, id: &str) -> Result<Message> {
    let row: MessageRow = db
        .one(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE messages.id = ?1 AND messages.tenant_id = ?2"),
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

pub async fn contact(db: &Db, tenant_id: &str, id: &str) -> Result<Contact> {
    let row: ContactRow = db
        .one(
            &format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE contacts.id = ?1 AND contacts.tenant_id = ?2"),
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}
