//! The tenant's audit report (`GET /audit-logs/report?from&to[&format=csv]`, tenant admins):
//! counts by action, actor and day over a window, failed log-ins, key changes and role changes,
//! plus the latest key and role changes themselves. D1 groups the entries once by (action,
//! actor, day); the totals are folded from those groups by pure code, tested natively.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::routes::{AuditLog, AuditRow};
use crate::args;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::csv::csv_line;
use crate::platform::db;
use crate::platform::error::{AppError, Result};

/// Failed log-ins: a wrong password for one of the tenant's e-mails, or the right one for a
/// suspended account (`auth::login`).
pub const FAILED_LOGIN_ACTIONS: [&str; 2] = ["auth.login_failed", "auth.login_refused"];

/// Changes of credentials: API keys, LLM provider keys, the tenant's secrets and its callback
/// signing secret.
pub const KEY_CHANGE_ACTIONS: [&str; 7] = [
    "api_key.created",
    "api_key.revoked",
    "provider.set",
    "provider.deleted",
    "secret.set",
    "secret.deleted",
    "settings.callback_secret_rotated",
];

/// Role changes besides `user.updated` with a `role` (a tenant role): a team member's role.
pub const ROLE_CHANGE_ACTIONS: [&str; 1] = ["team.member_updated"];

/// The default window: the 30 days before `to`.
const DEFAULT_DAYS: i64 = 30;
/// The longest window.
const MAX_DAYS: i64 = 366;
/// Key and role changes listed in full.
const CHANGES_LISTED: u32 = 100;

const REPORT_QUERY: [QueryDoc; 3] = [
    q(
        "from",
        "string",
        "Entries at or after this RFC 3339 time or YYYY-MM-DD; default 30 days before `to`.",
    ),
    q(
        "to",
        "string",
        "Entries before this RFC 3339 time or YYYY-MM-DD; default now. At most 366 days after `from`.",
    ),
    q_enum(
        "format",
        &["json", "csv"],
        "`csv` downloads the counts as `section,key,detail,count` records.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![Route::get(
        "/api/v1/audit-logs/report",
        Access::TenantAdmin,
        handler!(report),
    )
    .doc(
        "audit",
        "Audit report: counts by action, actor and day, failed log-ins, key and role changes",
    )
    .ok("AuditReport")
    .csv()
    .query(&REPORT_QUERY)]
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActionCount {
    pub action: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActorCount {
    /// The user or API key; `null` for attempts by no one known (failed log-ins).
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub count: i64,
}

/// The counts folded from the grouped entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Totals {
    pub total: i64,
    /// Most frequent first.
    pub by_action: Vec<ActionCount>,
    /// Most active first.
    pub by_actor: Vec<ActorCount>,
    /// Oldest first; days without entries are left out.
    pub by_day: Vec<DayCount>,
    pub failed_logins: i64,
    pub key_changes: i64,
    pub role_changes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditReport {
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub totals: Totals,
    /// The latest key and role changes (up to 100), newest first.
    pub changes: Vec<AuditLog>,
}

/// One group of entries: same action, actor and day.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Group {
    pub action: String,
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub day: String,
    pub n: i64,
    /// Of these, `user.updated` entries that set a role.
    #[serde(default)]
    pub role_changes: i64,
}

/// Folds the groups into the report's counts.
pub fn aggregate(groups: &[Group]) -> Totals {
    let mut actions: BTreeMap<&str, i64> = BTreeMap::new();
    let mut actors: BTreeMap<(Option<&str>, Option<&str>), i64> = BTreeMap::new();
    let mut days: BTreeMap<&str, i64> = BTreeMap::new();
    let mut t = Totals::default();
    for g in groups {
        t.total += g.n;
        *actions.entry(&g.action).or_default() += g.n;
        *actors
            .entry((g.actor_id.as_deref(), g.actor_email.as_deref()))
            .or_default() += g.n;
        *days.entry(&g.day).or_default() += g.n;
        let action = g.action.as_str();
        if FAILED_LOGIN_ACTIONS.contains(&action) {
            t.failed_logins += g.n;
        }
        if KEY_CHANGE_ACTIONS.contains(&action) {
            t.key_changes += g.n;
        }
        if ROLE_CHANGE_ACTIONS.contains(&action) {
            t.role_changes += g.n;
        } else if action == "user.updated" {
            t.role_changes += g.role_changes.clamp(0, g.n);
        }
    }
    t.by_action = actions
        .into_iter()
        .map(|(action, count)| ActionCount {
            action: action.to_string(),
            count,
        })
        .collect();
    // Stable sorts over name-ordered maps: ties stay in name order.
    t.by_action.sort_by_key(|a| std::cmp::Reverse(a.count));
    t.by_actor = actors
        .into_iter()
        .map(|((id, email), count)| ActorCount {
            actor_id: id.map(str::to_string),
            actor_email: email.map(str::to_string),
            count,
        })
        .collect();
    t.by_actor.sort_by_key(|a| std::cmp::Reverse(a.count));
    t.by_day = days
        .into_iter()
        .map(|(day, count)| DayCount {
            day: day.to_string(),
            count,
        })
        .collect();
    t
}

/// The counts as CSV: `section,key,detail,count`.
pub fn to_csv(t: &Totals) -> String {
    let mut out = csv_line(&["section", "key", "detail", "count"]);
    for (key, n) in [
        ("total", t.total),
        ("failed_logins", t.failed_logins),
        ("key_changes", t.key_changes),
        ("role_changes", t.role_changes),
    ] {
        out.push_str(&csv_line(&["summary", key, "", n.to_string().as_str()]));
    }
    for a in &t.by_action {
        out.push_str(&csv_line(&[
            "action",
            a.action.as_str(),
            "",
            a.count.to_string().as_str(),
        ]));
    }
    for a in &t.by_actor {
        out.push_str(&csv_line(&[
            "actor",
            a.actor_id.as_deref().unwrap_or(""),
            a.actor_email.as_deref().unwrap_or(""),
            a.count.to_string().as_str(),
        ]));
    }
    for d in &t.by_day {
        out.push_str(&csv_line(&[
            "day",
            d.day.as_str(),
            "",
            d.count.to_string().as_str(),
        ]));
    }
    out
}

/// The report's window: `to` defaults to now, `from` to 30 days before `to`; `from` after
/// `to` or more than 366 days apart is 422.
pub fn window(from: Option<&str>, to: Option<&str>, now_ms: i64) -> Result<(String, String)> {
    let parse = |name: &str, v: Option<&str>| -> Result<Option<i64>> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => clock::parse_time(v).map(Some).ok_or_else(|| {
                AppError::field(name, "must be an RFC 3339 date-time or YYYY-MM-DD")
            }),
        }
    };
    let day_ms = 24 * 3600 * 1000;
    let to = parse("to", to)?.unwrap_or(now_ms);
    let from = parse("from", from)?.unwrap_or(to - DEFAULT_DAYS * day_ms);
    if from > to {
        return Err(AppError::field("from", "must not be after `to`"));
    }
    if to - from > MAX_DAYS * day_ms {
        return Err(AppError::field(
            "from",
            format!("the window is at most {MAX_DAYS} days"),
        ));
    }
    Ok((clock::rfc3339(from), clock::rfc3339(to)))
}

/// `user.updated` entries whose metadata names a role (JSON `null` when unchanged); the CASE
/// keeps `json_extract` away from metadata that is not JSON.
const SETS_ROLE: &str =
    "(audit_logs.action = 'user.updated' AND CASE WHEN json_valid(audit_logs.metadata) \
     THEN json_extract(audit_logs.metadata, '$.role') IS NOT NULL ELSE 0 END)";

async fn report(cx: Ctx) -> Result<Reply> {
    let csv = cx.query_enum("format", &["json", "csv"])?.as_deref() == Some("csv");
    let (from, to) = window(cx.query("from"), cx.query("to"), cx.now_ms)?;
    let tenant_id = cx.tenant_id()?;
    let d1 = cx.db()?;
    let changes: Vec<&str> = KEY_CHANGE_ACTIONS
        .iter()
        .chain(ROLE_CHANGE_ACTIONS.iter())
        .copied()
        .collect();
    let results = d1
        .read_batch(vec![
            d1.stmt(
                &format!(
                    "SELECT audit_logs.action AS action, audit_logs.actor_id AS actor_id, \
                     audit_logs.actor_email AS actor_email, substr(audit_logs.created_at, 1, 10) AS day, \
                     COUNT(*) AS n, SUM(CASE WHEN {SETS_ROLE} THEN 1 ELSE 0 END) AS role_changes \
                     FROM audit_logs WHERE audit_logs.tenant_id = ?1 \
                     AND audit_logs.created_at >= ?2 AND audit_logs.created_at < ?3 \
                     GROUP BY audit_logs.action, audit_logs.actor_id, audit_logs.actor_email, day"
                ),
                &args![tenant_id, from.as_str(), to.as_str()],
            )?,
            d1.stmt(
                &format!(
                    "SELECT * FROM audit_logs WHERE audit_logs.tenant_id = ?1 \
                     AND audit_logs.created_at >= ?2 AND audit_logs.created_at < ?3 \
                     AND (audit_logs.action IN (SELECT value FROM json_each(?4)) OR {SETS_ROLE}) \
                     ORDER BY audit_logs.created_at DESC, audit_logs.id DESC LIMIT {CHANGES_LISTED}"
                ),
                &args![
                    tenant_id,
                    from.as_str(),
                    to.as_str(),
                    serde_json::to_string(&changes)?
                ],
            )?,
        ])
        .await?;
    let [groups, listed] = &results[..] else {
        return Err(AppError::Internal("d1: a read batch answered short".into()));
    };
    let totals = aggregate(&db::rows::<Group>(groups)?);
    if csv {
        let name = format!(
            "audit-report-{}-{}.csv",
            from.get(..10).unwrap_or("from"),
            to.get(..10).unwrap_or("to")
        );
        return Ok(
            Reply::text(200, to_csv(&totals), "text/csv; charset=utf-8").with_header(
                "Content-Disposition",
                crate::media::bytes::content_disposition("attachment", &name),
            ),
        );
    }
    let changes: Vec<AuditLog> = db::rows::<AuditRow>(listed)?
        .into_iter()
        .map(Into::into)
        .collect();
    Reply::ok(&AuditReport {
        from,
        to,
        totals,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(action: &str, actor: Option<&str>, day: &str, n: i64, role_changes: i64) -> Group {
        Group {
            action: action.into(),
            actor_id: actor.map(str::to_string),
            actor_email: actor.map(|a| format!("{a}@example.com")),
            day: day.into(),
            n,
            role_changes,
        }
    }

    #[test]
    fn groups_fold_into_counts_by_action_actor_and_day() {
        let t = aggregate(&[
            g("auth.login", Some("usr_a"), "2026-12-01", 3, 0),
            g("auth.login", Some("usr_b"), "2026-12-02", 1, 0),
            g("auth.login_failed", None, "2026-12-01", 2, 0),
            g("api_key.created", Some("usr_a"), "2026-12-02", 1, 0),
            g("user.updated", Some("usr_a"), "2026-12-02", 4, 1),
            g("team.member_updated", Some("usr_b"), "2026-12-02", 2, 0),
        ]);
        assert_eq!(t.total, 13);
        assert_eq!(t.failed_logins, 2);
        assert_eq!(t.key_changes, 1);
        assert_eq!(t.role_changes, 3);
        assert_eq!(
            t.by_action[0],
            ActionCount {
                action: "auth.login".into(),
                count: 4
            }
        );
        assert_eq!(t.by_action[1].action, "user.updated");
        // Ties keep name order.
        assert_eq!(t.by_action[2].action, "auth.login_failed");
        assert_eq!(t.by_action[3].action, "team.member_updated");
        assert_eq!(t.by_actor[0].actor_id.as_deref(), Some("usr_a"));
        assert_eq!(t.by_actor[0].count, 8);
        let anonymous = t.by_actor.iter().find(|a| a.actor_id.is_none()).unwrap();
        assert_eq!(anonymous.count, 2);
        assert_eq!(
            t.by_day,
            vec![
                DayCount {
                    day: "2026-12-01".into(),
                    count: 5
                },
                DayCount {
                    day: "2026-12-02".into(),
                    count: 8
                }
            ]
        );
        assert_eq!(aggregate(&[]), Totals::default());
    }

    #[test]
    fn role_changes_never_exceed_the_entries_counted() {
        let t = aggregate(&[g("user.updated", Some("usr_a"), "2026-12-01", 1, 5)]);
        assert_eq!(t.role_changes, 1);
        // Only user.updated carries the per-entry role flag.
        let t = aggregate(&[g("user.deleted", Some("usr_a"), "2026-12-01", 1, 1)]);
        assert_eq!(t.role_changes, 0);
    }

    #[test]
    fn the_report_counts_actions_the_code_writes() {
        let mut written = String::new();
        for src in [
            include_str!("../auth/mod.rs"),
            include_str!("../apikeys/mod.rs"),
            include_str!("../optimize/providers.rs"),
            include_str!("../settings/secrets.rs"),
            include_str!("../settings/mod.rs"),
            include_str!("../teams/mod.rs"),
            include_str!("../users/mod.rs"),
        ] {
            written.push_str(src);
        }
        for action in FAILED_LOGIN_ACTIONS
            .iter()
            .chain(&KEY_CHANGE_ACTIONS)
            .chain(&ROLE_CHANGE_ACTIONS)
            .chain(&["user.updated"])
        {
            assert!(
                written.contains(&format!("\"{action}\"")),
                "{action} is never written"
            );
        }
    }

    #[test]
    fn csv_lists_the_summary_then_each_count() {
        let t = aggregate(&[
            g("auth.login", Some("usr_a"), "2026-12-01", 3, 0),
            g("=cmd", None, "2026-12-01", 1, 0),
        ]);
        let csv = to_csv(&t);
        let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
        assert_eq!(lines[0], "section,key,detail,count");
        assert_eq!(lines[1], "summary,total,,4");
        assert!(lines.contains(&"action,auth.login,,3"));
        assert!(lines.contains(&"action,'=cmd,,1"));
        assert!(lines.contains(&"actor,usr_a,usr_a@example.com,3"));
        assert!(lines.contains(&"day,2026-12-01,,4"));
    }

    #[test]
    fn windows_default_to_thirty_days_and_stay_within_a_year() {
        let now = clock::parse_time("2026-12-02T12:00:00Z").unwrap();
        assert_eq!(
            window(None, None, now).unwrap(),
            (
                "2026-11-02T12:00:00.000Z".into(),
                "2026-12-02T12:00:00.000Z".into()
            )
        );
        assert_eq!(
            window(Some("2026-12-01"), Some("2026-12-02"), now).unwrap(),
            (
                "2026-12-01T00:00:00.000Z".into(),
                "2026-12-02T00:00:00.000Z".into()
            )
        );
        for (from, to) in [
            (Some("2026-12-03"), Some("2026-12-02")),
            (Some("2024-01-01"), Some("2026-01-01")),
            (Some("soon"), None),
            (None, Some("2026-13-01")),
        ] {
            assert_eq!(window(from, to, now).unwrap_err().status(), 422);
        }
    }
}
