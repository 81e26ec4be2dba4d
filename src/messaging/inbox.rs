//! The agents' inbox: conversations (filters, assignment, status, tags, read), their threads,
//! messages and contacts. Agents and above; everything is scoped to the caller's tenant.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::delivery::{self, Direction, Event, MessageStatus};
use super::live;
use super::model::{
    tags, ContactRow, ConversationRow, Message, MessageRow, CONTACT_COLUMNS, CONVERSATION_SELECT,
    CONVERSATION_STATUSES, MESSAGE_COLUMNS,
};
use super::store;
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::db::{like_pattern, Db, Filter};
use crate::platform::error::{AppError, Result};

const CONVERSATION_QUERY: [QueryDoc; 6] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "status",
        &CONVERSATION_STATUSES,
        "Only conversations with this status.",
    ),
    q(
        "assigned_to",
        "string",
        "An agent's user id, `me`, or `none` for unassigned.",
    ),
    q_enum(
        "unread",
        &["true", "false"],
        "Only conversations with (or without) unread messages.",
    ),
    q(
        "q",
        "string",
        "Search contact name, number and message text.",
    ),
];

const MESSAGE_QUERY: [QueryDoc; 6] = [
    PAGING[0],
    PAGING[1],
    q(
        "conversation_id",
        "string",
        "Only this conversation's messages.",
    ),
    q_enum("direction", &Direction::NAMES, "Inbound or outbound."),
    q_enum(
        "status",
        &MessageStatus::NAMES,
        "Only messages with this status.",
    ),
    q("q", "string", "Search message text."),
];

const CONTACT_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q("q", "string", "Search name and number."),
];

pub fn routes() -> Vec<Route> {
    let inbox = "conversations";
    vec![
        Route::get("/api/v1/conversations", Access::Agent, handler!(list))
            .doc(inbox, "The inbox, newest conversation first")
            .list("Conversation")
            .query(&CONVERSATION_QUERY),
        Route::get(
            "/api/v1/conversations/stats/summary",
            Access::Agent,
            handler!(summary),
        )
        .doc(inbox, "Counts by status, unread, and per agent")
        .ok("InboxSummary"),
        Route::get("/api/v1/conversations/:id", Access::Agent, handler!(get))
            .doc(inbox, "One conversation")
            .ok("Conversation"),
        Route::patch("/api/v1/conversations/:id", Access::Agent, handler!(update))
            .doc(
                inbox,
                "Assign (or `null` to unassign), change status, set tags",
            )
            .body("UpdateConversation")
            .ok("Conversation"),
        Route::delete(
            "/api/v1/conversations/:id",
            Access::Agent,
            handler!(archive),
        )
        .doc(inbox, "Archive a conversation")
        .no_content(),
        Route::post(
            "/api/v1/conversations/:id/read",
            Access::Agent,
            handler!(mark_read),
        )
        .doc(inbox, "Mark the conversation read (unread count to 0)")
        .ok("Conversation"),
        Route::get(
            "/api/v1/conversations/:id/messages",
            Access::Agent,
            handler!(thread),
        )
        .doc(inbox, "The conversation's messages, oldest first")
        .list("Message")
        .query(&PAGING),
        Route::get("/api/v1/messages", Access::Agent, handler!(messages))
            .doc("messages", "Messages across conversations, newest first")
            .list("Message")
            .query(&MESSAGE_QUERY),
        Route::get("/api/v1/messages/:id", Access::Agent, handler!(message))
            .doc("messages", "One message with its delivery status")
            .ok("Message"),
        Route::patch(
            "/api/v1/messages/:id",
            Access::Agent,
            handler!(update_message),
        )
        .doc(
            "messages",
            "Mark an inbound message read (`{\"status\": \"read\"}`)",
        )
        .body("UpdateMessage")
        .ok("Message"),
        Route::get("/api/v1/contacts", Access::Agent, handler!(contacts))
            .doc("contacts", "Contacts, newest first")
            .list("Contact")
            .query(&CONTACT_QUERY),
        Route::get("/api/v1/contacts/:id", Access::Agent, handler!(contact))
            .doc("contacts", "One contact")
            .ok("Contact"),
        Route::patch(
            "/api/v1/contacts/:id",
            Access::Agent,
            handler!(update_contact),
        )
        .doc("contacts", "Change a contact's name, tags or notes")
        .body("UpdateContact")
        .ok("Contact"),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// `open`, `pending`, `resolved` or `archived`.
    pub status: Option<String>,
    /// An active agent, admin or owner of the tenant; `null` unassigns.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>)]
    pub assigned_to: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMessage {
    /// Only `read`, for inbound messages.
    pub status: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContact {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub notes: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    pub open: i64,
    pub pending: i64,
    pub resolved: i64,
    pub archived: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentLoad {
    pub user_id: String,
    pub full_name: String,
    pub open: i64,
    pub pending: i64,
    pub resolved: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxSummary {
    pub by_status: StatusCounts,
    /// Conversations with unread messages, and the unread messages in them.
    pub unread_conversations: i64,
    pub unread_messages: i64,
    pub unassigned_open: i64,
    pub per_agent: Vec<AgentLoad>,
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let tenant_id = cx.tenant_id()?;
    let mut f = Filter::new(
        &format!("{CONVERSATION_SELECT} WHERE conversations.tenant_id = ?1"),
        args![tenant_id],
    );
    f.and_opt(
        "conversations.status = ?",
        cx.query_enum("status", &CONVERSATION_STATUSES)?
            .map(Into::into),
    );
    match cx.query_nonempty("assigned_to") {
        None => {}
        Some("none") => {
            f.and("conversations.assigned_to IS NULL", args![]);
        }
        Some("me") => {
            f.and(
                "conversations.assigned_to = ?",
                args![cx.principal()?.user_id.clone()],
            );
        }
        Some(user) => {
            f.and("conversations.assigned_to = ?", args![user]);
        }
    }
    match cx.query_enum("unread", &["true", "false"])?.as_deref() {
        Some("true") => {
            f.and("conversations.unread_count > 0", args![]);
        }
        Some(_) => {
            f.and("conversations.unread_count = 0", args![]);
        }
        None => {}
    }
    if let Some(term) = cx.query_nonempty("q") {
        let p = like_pattern(term);
        f.and(
            "(contacts.name LIKE ? ESCAPE '\\' OR contacts.wa_id LIKE ? ESCAPE '\\' OR EXISTS \
             (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id \
              AND m.text LIKE ? ESCAPE '\\'))",
            args![p.clone(), p.clone(), p],
        );
    }
    f.page(&page, "conversations");
    let rows: Vec<ConversationRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<super::model::Conversation> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |c| (c.created_at.clone(), c.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&store::conversation(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

/// An assignee must be an active agent, admin or owner of the same tenant.
async fn assignable(db: &Db, tenant_id: &str, user_id: &str) -> Result<bool> {
    Ok(db
        .one::<serde_json::Value>(
            "SELECT id FROM users WHERE id = ?1 AND tenant_id = ?2 AND status = 'active' \
             AND role IN ('agent', 'admin', 'owner')",
            &args![user_id, tenant_id],
        )
        .await?
        .is_some())
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateConversation = cx.json()?;
    let mut checks = Checks::new();
    if let Some(s) = &body.status {
        if !CONVERSATION_STATUSES.contains(&s.as_str()) {
            checks.add(
                "status",
                format!("must be one of {}", CONVERSATION_STATUSES.join(", ")),
            );
        }
    }
    let new_tags = body
        .tags
        .as_ref()
        .and_then(|t| checks.take("tags", tags(t)));
    checks.finish()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let current = store::conversation(&db, tenant_id, cx.param("id")).await?;
    let assignee = match &body.assigned_to {
        None => current.assigned_to.clone(),
        Some(None) => None,
        Some(Some(user)) => {
            if !assignable(&db, tenant_id, user).await? {
                return Err(AppError::field(
                    "assigned_to",
                    "must be an active agent, admin or owner of this organisation",
                ));
            }
            Some(user.clone())
        }
    };
    let status = body.status.clone().unwrap_or(current.status.clone());
    let new_tags = new_tags.unwrap_or(current.tags.clone());
    let result = db
        .batch(vec![
            db.stmt(
                "UPDATE conversations SET status = ?3, assigned_to = ?4, tags = ?5, updated_at = ?6 \
                 WHERE id = ?1 AND tenant_id = ?2",
                &args![
                    current.id.as_str(),
                    tenant_id,
                    status.as_str(),
                    assignee.clone(),
                    serde_json::to_string(&new_tags)?,
                    cx.now()
                ],
            )?,
            audit::entry(&cx, "conversation.updated")
                .target("conversation", current.id.as_str())
                .meta(json!({"status": status, "assigned_to": assignee}))
                .stmt(&db)?,
        ])
        .await;
    if let Err(AppError::Conflict(_)) = result {
        return Err(AppError::Conflict(
            "The contact already has an open or pending conversation.".into(),
        ));
    }
    result?;
    let updated = store::conversation(&db, tenant_id, &current.id).await?;
    live::publish(&cx.env, &updated.id, "conversation.updated", &updated).await;
    let caller = cx.principal()?.user_id.clone();
    if let Some(to) =
        assignee.filter(|a| current.assigned_to.as_ref() != Some(a) && caller.as_ref() != Some(a))
    {
        let notice = crate::notifications::Notice {
            kind: crate::notifications::model::Kind::ConversationAssigned,
            title: "A conversation was assigned to you".into(),
            body: format!("Conversation {} is yours now.", updated.id),
            link: Some(format!("/conversations/{}", updated.id)),
            data: Some(json!({"conversation_id": updated.id})),
        };
        crate::notifications::tell(&cx.env, &cx.config, &db, tenant_id, &[to], notice).await;
    }
    Reply::ok(&updated)
}

async fn archive(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let current = store::conversation(&db, tenant_id, cx.param("id")).await?;
    db.batch(vec![
        db.stmt(
            "UPDATE conversations SET status = 'archived', updated_at = ?3 WHERE id = ?1 AND tenant_id = ?2",
            &args![current.id.as_str(), tenant_id, cx.now()],
        )?,
        audit::entry(&cx, "conversation.archived")
            .target("conversation", current.id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

async fn mark_read(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let current = store::conversation(&db, tenant_id, cx.param("id")).await?;
    db.run(
        "UPDATE conversations SET unread_count = 0 WHERE id = ?1 AND tenant_id = ?2",
        &args![current.id.as_str(), tenant_id],
    )
    .await?;
    let updated = store::conversation(&db, tenant_id, &current.id).await?;
    live::publish(&cx.env, &updated.id, "conversation.updated", &updated).await;
    Reply::ok(&updated)
}

async fn summary(cx: Ctx) -> Result<Reply> {
    #[derive(Deserialize)]
    struct Unread {
        conversations: i64,
        messages: i64,
        unassigned_open: i64,
    }
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let by_status: StatusCounts = db
        .one(
            "SELECT COALESCE(SUM(status = 'open'), 0) AS open, COALESCE(SUM(status = 'pending'), 0) AS pending, \
             COALESCE(SUM(status = 'resolved'), 0) AS resolved, COALESCE(SUM(status = 'archived'), 0) AS archived \
             FROM conversations WHERE tenant_id = ?1",
            &args![tenant_id],
        )
        .await?
        .unwrap_or_default();
    let unread: Unread = db
        .one(
            "SELECT COALESCE(SUM(unread_count > 0), 0) AS conversations, \
             COALESCE(SUM(unread_count), 0) AS messages, \
             COALESCE(SUM(status = 'open' AND assigned_to IS NULL), 0) AS unassigned_open \
             FROM conversations WHERE tenant_id = ?1",
            &args![tenant_id],
        )
        .await?
        .ok_or_else(|| AppError::internal("summary query returned no row"))?;
    let per_agent: Vec<AgentLoad> = db
        .all(
            "SELECT u.id AS user_id, u.full_name, \
             COALESCE(SUM(c.status = 'open'), 0) AS open, COALESCE(SUM(c.status = 'pending'), 0) AS pending, \
             COALESCE(SUM(c.status = 'resolved'), 0) AS resolved \
             FROM users u LEFT JOIN conversations c ON c.assigned_to = u.id AND c.tenant_id = u.tenant_id \
             WHERE u.tenant_id = ?1 AND u.status = 'active' AND u.role IN ('agent', 'admin', 'owner') \
             GROUP BY u.id ORDER BY u.full_name",
            &args![tenant_id],
        )
        .await?;
    Reply::ok(&InboxSummary {
        by_status,
        unread_conversations: unread.conversations,
        unread_messages: unread.messages,
        unassigned_open: unread.unassigned_open,
        per_agent,
    })
}

async fn thread(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let conversation = store::conversation(&db, tenant_id, cx.param("id")).await?;
    let mut f = Filter::new(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE messages.tenant_id = ?1 AND messages.conversation_id = ?2"),
        args![tenant_id, conversation.id.as_str()],
    );
    f.page_oldest_first(&page, "messages");
    let rows: Vec<MessageRow> = db.all(&f.sql, &f.args).await?;
    let rows: Vec<Message> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |m| (m.created_at.clone(), m.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn messages(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE messages.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    f.and_opt(
        "messages.conversation_id = ?",
        cx.query_nonempty("conversation_id").map(Into::into),
    )
    .and_opt(
        "messages.direction = ?",
        cx.query_enum("direction", &Direction::NAMES)?
            .map(Into::into),
    )
    .and_opt(
        "messages.status = ?",
        cx.query_enum("status", &MessageStatus::NAMES)?
            .map(Into::into),
    );
    if let Some(term) = cx.query_nonempty("q") {
        f.and(
            "messages.text LIKE ? ESCAPE '\\'",
            args![like_pattern(term)],
        );
    }
    f.page(&page, "messages");
    let rows: Vec<MessageRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Message> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |m| (m.created_at.clone(), m.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn message(cx: Ctx) -> Result<Reply> {
    Reply::ok(&store::message(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

async fn update_message(cx: Ctx) -> Result<Reply> {
    let body: UpdateMessage = cx.json()?;
    if body.status != "read" {
        return Err(AppError::field("status", "only `read` can be set"));
    }
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let m = store::message(&db, tenant_id, cx.param("id")).await?;
    if m.direction != Direction::Inbound {
        return Err(AppError::Conflict(
            "Outbound messages get their status from WhatsApp.".into(),
        ));
    }
    if delivery::next(m.status, Event::MarkedRead).is_ok() {
        delivery::marked_read(&db, tenant_id, &m.id, &cx.now())?
            .run_with(
                &db,
                vec![db.stmt(
                    "UPDATE conversations SET unread_count = MAX(unread_count - 1, 0) WHERE id = ?1 AND tenant_id = ?2",
                    &args![m.conversation_id.as_str(), tenant_id],
                )?],
            )
            .await?;
    }
    Reply::ok(&store::message(&db, tenant_id, &m.id).await?)
}

async fn contacts(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE contacts.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    if let Some(term) = cx.query_nonempty("q") {
        let p = like_pattern(term);
        f.and(
            "(contacts.name LIKE ? ESCAPE '\\' OR contacts.wa_id LIKE ? ESCAPE '\\')",
            args![p.clone(), p],
        );
    }
    f.page(&page, "contacts");
    let rows: Vec<ContactRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<super::model::Contact> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |c| (c.created_at.clone(), c.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn contact(cx: Ctx) -> Result<Reply> {
    Reply::ok(&store::contact(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

async fn update_contact(cx: Ctx) -> Result<Reply> {
    let body: UpdateContact = cx.json()?;
    let mut checks = Checks::new();
    let name = body
        .name
        .as_ref()
        .and_then(|n| checks.take("name", j::text(n, 1, 120)));
    let new_tags = body
        .tags
        .as_ref()
        .and_then(|t| checks.take("tags", tags(t)));
    let notes = body
        .notes
        .as_ref()
        .and_then(|n| checks.take("notes", j::text(n, 0, 5000)));
    checks.finish()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let current = store::contact(&db, tenant_id, cx.param("id")).await?;
    db.run(
        "UPDATE contacts SET name = ?3, tags = ?4, notes = ?5, updated_at = ?6 WHERE id = ?1 AND tenant_id = ?2",
        &args![
            current.id.as_str(),
            tenant_id,
            name.unwrap_or(current.name.clone()),
            serde_json::to_string(&new_tags.unwrap_or(current.tags.clone()))?,
            notes.unwrap_or(current.notes.clone()),
            cx.now()
        ],
    )
    .await?;
    Reply::ok(&store::contact(&db, tenant_id, &current.id).await?)
}
