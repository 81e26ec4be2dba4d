//! Contacts, conversations and messages as the API shows them, with their SQL row mapping.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::delivery::{Direction, MessageStatus};

pub const CONVERSATION_STATUSES: [&str; 4] = ["open", "pending", "resolved", "archived"];

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub id: String,
    /// The WhatsApp id (international phone number, digits only).
    pub wa_id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub notes: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Deserialize)]
pub struct ContactRow {
    id: String,
    wa_id: String,
    name: String,
    tags: String,
    notes: String,
    created_at: String,
    updated_at: String,
}

impl From<ContactRow> for Contact {
    fn from(r: ContactRow) -> Self {
        Contact {
            id: r.id,
            wa_id: r.wa_id,
            name: r.name,
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            notes: r.notes,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub const CONTACT_COLUMNS: &str = "contacts.id, contacts.wa_id, contacts.name, contacts.tags, \
     contacts.notes, contacts.created_at, contacts.updated_at";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactSummary {
    pub id: String,
    pub wa_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    pub tenant_id: String,
    pub contact: ContactSummary,
    /// `open`, `pending`, `resolved` or `archived`.
    pub status: String,
    /// The agent's user id.
    pub assigned_to: Option<String>,
    pub tags: Vec<String>,
    pub unread_count: i64,
    pub last_message_at: Option<String>,
    pub last_message_preview: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Deserialize)]
pub struct ConversationRow {
    id: String,
    tenant_id: String,
    contact_id: String,
    wa_id: String,
    contact_name: String,
    status: String,
    assigned_to: Option<String>,
    tags: String,
    unread_count: i64,
    last_message_at: Option<String>,
    last_message_preview: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<ConversationRow> for Conversation {
    fn from(r: ConversationRow) -> Self {
        Conversation {
            id: r.id,
            tenant_id: r.tenant_id,
            contact: ContactSummary {
                id: r.contact_id,
                wa_id: r.wa_id,
                name: r.contact_name,
            },
            status: r.status,
            assigned_to: r.assigned_to,
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            unread_count: r.unread_count,
            last_message_at: r.last_message_at,
            last_message_preview: r.last_message_preview,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub const CONVERSATION_SELECT: &str = "SELECT conversations.id, conversations.tenant_id, \
     conversations.contact_id, contacts.wa_id, contacts.name AS contact_name, conversations.status, \
     conversations.assigned_to, conversations.tags, conversations.unread_count, \
     conversations.last_message_at, conversations.last_message_preview, conversations.created_at, \
     conversations.updated_at FROM conversations JOIN contacts ON contacts.id = conversations.contact_id";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub direction: Direction,
    /// WhatsApp's message id, once known.
    pub wamid: Option<String>,
    /// `text`, `image`, `template`, `audio`, `location`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// A readable line (text body, caption, title, …).
    pub text: Option<String>,
    /// The type-specific content as Meta shows it.
    pub content: Value,
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error_title: Option<String>,
    pub attempts: i64,
    pub sent_by: Option<String>,
    pub campaign_id: Option<String>,
    /// When WhatsApp says the message was sent (inbound).
    pub timestamp: Option<String>,
    /// An inbound image, document, audio or video: the tenant media file it was stored as.
    pub media: Option<MessageMedia>,
    pub created_at: String,
    pub updated_at: String,
}

/// An inbound message's attachment, fetched from the Graph API into the tenant's media.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageMedia {
    /// The media file (`GET /media/:id`, `/media/:id/download`), once stored.
    pub id: Option<String>,
    /// `pending` (being fetched), `stored` or `failed`.
    pub status: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct MessageRow {
    id: String,
    conversation_id: String,
    direction: Direction,
    wamid: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    content: String,
    status: MessageStatus,
    error_code: Option<String>,
    error_title: Option<String>,
    attempts: i64,
    sent_by: Option<String>,
    campaign_id: Option<String>,
    wa_timestamp: Option<String>,
    media_id: Option<String>,
    media_status: Option<String>,
    media_error: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Self {
        Message {
            id: r.id,
            conversation_id: r.conversation_id,
            direction: r.direction,
            wamid: r.wamid,
            kind: r.kind,
            text: r.text,
            content: serde_json::from_str(&r.content).unwrap_or(Value::Null),
            status: r.status,
            error_code: r.error_code,
            error_title: r.error_title,
            attempts: r.attempts,
            sent_by: r.sent_by,
            campaign_id: r.campaign_id,
            timestamp: r.wa_timestamp,
            media: r.media_status.map(|status| MessageMedia {
                id: r.media_id,
                status,
                error: r.media_error,
            }),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub const MESSAGE_COLUMNS: &str = "messages.id, messages.conversation_id, messages.direction, \
     messages.wamid, messages.type, messages.text, messages.content, messages.status, \
     messages.error_code, messages.error_title, messages.attempts, messages.sent_by, \
     messages.campaign_id, messages.wa_timestamp, messages.media_id, messages.media_status, \
     messages.media_error, messages.created_at, messages.updated_at";

/// Tags: up to 20, each 1–40 characters, deduplicated.
pub fn tags(list: &[String]) -> std::result::Result<Vec<String>, String> {
    if list.len() > 20 {
        return Err("at most 20 tags".into());
    }
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let t = t.trim();
        if t.is_empty() || t.chars().count() > 40 {
            return Err("each tag is 1–40 characters".into());
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

/// A WhatsApp id: 6–15 digits (a leading `+` is dropped).
pub fn wa_id(v: &str) -> std::result::Result<String, String> {
    let d = v.trim().trim_start_matches('+');
    if (6..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) {
        Ok(d.to_string())
    } else {
        Err("must be a phone number in international format (6–15 digits)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_wa_ids_are_normalised() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tags(&t(&[" vip ", "vip", "eu"])).unwrap(),
            t(&["vip", "eu"])
        );
        assert!(tags(&t(&[""])).is_err());
        assert_eq!(
            wa_id("+49 1512345678".replace(' ', "").as_str()).unwrap(),
            "491512345678"
        );
        assert!(wa_id("12ab").is_err());
        assert!(wa_id("123").is_err());
    }
}
