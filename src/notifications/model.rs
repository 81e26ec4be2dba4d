//! The pure parts of notifications: the known types, preference defaults and merging, the
//! channels a notice goes out on for one recipient (in-app, e-mail, web push), and the rules of
//! a broadcast's `to`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::roles::Role;

/// The most recipients one broadcast (or one `notify` call) reaches.
pub const MAX_RECIPIENTS: usize = 1000;

/// A notification's type.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Kind {
    #[serde(rename = "invitation.accepted")]
    InvitationAccepted,
    #[serde(rename = "team.added")]
    TeamAdded,
    #[serde(rename = "execution.failed")]
    ExecutionFailed,
    #[serde(rename = "optimize.batch.completed")]
    OptimizeBatchCompleted,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "usage.threshold")]
    UsageThreshold,
    #[serde(rename = "conversation.assigned")]
    ConversationAssigned,
    /// A product's stock reached its reorder level (once per crossing).
    #[serde(rename = "inventory.low_stock")]
    InventoryLowStock,
    /// Sent by a tenant admin with `POST /notifications`.
    #[serde(rename = "broadcast")]
    Broadcast,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::InvitationAccepted,
        Kind::TeamAdded,
        Kind::ExecutionFailed,
        Kind::OptimizeBatchCompleted,
        Kind::PaymentFailed,
        Kind::UsageThreshold,
        Kind::ConversationAssigned,
        Kind::InventoryLowStock,
        Kind::Broadcast,
    ];

    pub const NAMES: [&'static str; 9] = [
        "invitation.accepted",
        "team.added",
        "execution.failed",
        "optimize.batch.completed",
        "payment.failed",
        "usage.threshold",
        "conversation.assigned",
        "inventory.low_stock",
        "broadcast",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvitationAccepted => "invitation.accepted",
            Kind::TeamAdded => "team.added",
            Kind::ExecutionFailed => "execution.failed",
            Kind::OptimizeBatchCompleted => "optimize.batch.completed",
            Kind::PaymentFailed => "payment.failed",
            Kind::UsageThreshold => "usage.threshold",
            Kind::ConversationAssigned => "conversation.assigned",
            Kind::InventoryLowStock => "inventory.low_stock",
            Kind::Broadcast => "broadcast",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the type is mailed when the user has not chosen: only what costs money or
    /// service if missed while away from the app (a failed payment, an allowance running out).
    pub fn emails_by_default(self) -> bool {
        matches!(self, Kind::PaymentFailed | Kind::UsageThreshold)
    }

    pub fn default_preference(self) -> Preference {
        Preference {
            in_app: true,
            email: self.emails_by_default(),
            push: false,
        }
    }

    /// The `Urgency` a push of this type asks for (RFC 8030 §5.3): what costs money or service
    /// if missed is `high`, the rest `normal`.
    pub fn push_urgency(self) -> &'static str {
        if self.emails_by_default() {
            "high"
        } else {
            "normal"
        }
    }
}

/// Where a type's notifications reach one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preference {
    pub in_app: bool,
    pub email: bool,
    /// Web push to the user's subscribed browsers (off unless chosen; older stored
    /// preferences without it read as off).
    #[serde(default)]
    pub push: bool,
}

/// A change to one type's preference: omitted fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencePatch {
    pub in_app: Option<bool>,
    pub email: Option<bool>,
    pub push: Option<bool>,
}

impl Preference {
    pub fn merged(self, patch: PreferencePatch) -> Preference {
        Preference {
            in_app: patch.in_app.unwrap_or(self.in_app),
            email: patch.email.unwrap_or(self.email),
            push: patch.push.unwrap_or(self.push),
        }
    }
}

/// Every known type with its effective preference: the stored choice, else the default.
/// Stored rows of types this version does not know are left out.
pub fn effective(stored: &[(String, Preference)]) -> BTreeMap<&'static str, Preference> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            let p = stored
                .iter()
                .find(|(t, _)| t == k.as_str())
                .map_or(k.default_preference(), |(_, p)| *p);
            (k.as_str(), p)
        })
        .collect()
}

/// Parses a `PUT /notifications/preferences` map into typed patches; unknown type names are
/// returned as errors (each named).
pub fn parse_patches(
    raw: &BTreeMap<String, PreferencePatch>,
) -> Result<Vec<(Kind, PreferencePatch)>, Vec<String>> {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (name, patch) in raw {
        match Kind::parse(name) {
            Some(k) => out.push((k, *patch)),
            None => unknown.push(name.clone()),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(unknown)
    }
}

/// The channels a notice may use (the sender's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub in_app: bool,
    pub email: bool,
    pub push: bool,
}

impl Channels {
    pub const ALL: Channels = Channels {
        in_app: true,
        email: true,
        push: true,
    };

    /// From `["in_app", "email", "push"]` (at least one, no unknown names).
    pub fn parse(names: &[String]) -> Result<Channels, String> {
        let mut c = Channels {
            in_app: false,
            email: false,
            push: false,
        };
        for n in names {
            match n.as_str() {
                "in_app" => c.in_app = true,
                "email" => c.email = true,
                "push" => c.push = true,
                other => {
                    return Err(format!(
                        "`{other}` is not a channel: use in_app, email, push"
                    ))
                }
            }
        }
        if !c.in_app && !c.email && !c.push {
            return Err("name at least one of in_app, email, push".into());
        }
        Ok(c)
    }
}

/// How one recipient gets a notice: the sender's channels and the recipient's preference must
/// both allow a channel (`stored` is the recipient's saved choice for this type, if any).
pub fn delivery(kind: Kind, stored: Option<Preference>, channels: Channels) -> Preference {
    let p = stored.unwrap_or(kind.default_preference());
    Preference {
        in_app: p.in_app && channels.in_app,
        email: p.email && channels.email,
        push: p.push && channels.push,
    }
}

/// Whom a broadcast is for, once its `to` is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Users(Vec<String>),
    Team(String),
    Role(Role),
    All,
}

/// The raw `to` of a broadcast.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastTo {
    /// Users of your tenant (1–1,000).
    pub user_ids: Option<Vec<String>>,
    /// Every member of one of your teams.
    pub team_id: Option<String>,
    /// Every active user with exactly this role (`owner`, `admin`, `agent`, `member`).
    pub role: Option<String>,
    /// `true`: every active user of the tenant.
    pub all: Option<bool>,
}

/// Checks a `to`: exactly one form; ids deduplicated; errors as `(field, message)`.
pub fn audience(to: &BroadcastTo) -> Result<Audience, (String, String)> {
    let given = [
        to.user_ids.is_some(),
        to.team_id.is_some(),
        to.role.is_some(),
        to.all.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
    if given != 1 {
        return err("to", "give exactly one of user_ids, team_id, role, all");
    }
    if let Some(ids) = &to.user_ids {
        if ids.len() > 5 * MAX_RECIPIENTS {
            return err("to.user_ids", "at most 1000 users");
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut unique: Vec<String> = Vec::new();
        for id in ids {
            let id = id.trim();
            if id.is_empty() || id.len() > 64 {
                return err("to.user_ids", "each must be a user id");
            }
            if seen.insert(id) {
                unique.push(id.to_string());
            }
        }
        if unique.is_empty() {
            return err("to.user_ids", "name at least one user");
        }
        if unique.len() > MAX_RECIPIENTS {
            return err("to.user_ids", "at most 1000 users");
        }
        return Ok(Audience::Users(unique));
    }
    if let Some(team) = &to.team_id {
        let team = team.trim();
        if team.is_empty() || team.len() > 64 {
            return err("to.team_id", "must be a team id");
        }
        return Ok(Audience::Team(team.to_string()));
    }
    if let Some(role) = &to.role {
        return match Role::parse(role.trim()) {
            Some(r) if r != Role::PlatformAdmin => Ok(Audience::Role(r)),
            _ => err("to.role", "must be one of owner, admin, agent, member"),
        };
    }
    match to.all {
        Some(true) => Ok(Audience::All),
        _ => err("to.all", "must be true (or give another form)"),
    }
}

/// Whether a resolved recipient list may be sent to.
pub fn check_count(n: usize) -> Result<(), String> {
    if n > MAX_RECIPIENTS {
        Err(format!(
            "reaches more than {MAX_RECIPIENTS} users: narrow it down"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_print_the_same_names() {
        for (k, name) in Kind::ALL.into_iter().zip(Kind::NAMES) {
            assert_eq!(k.as_str(), name);
            assert_eq!(Kind::parse(name), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), name);
        }
        for bad in ["", "Broadcast", "team", "payment.failed ", "x.y"] {
            assert_eq!(Kind::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults_mail_only_money_and_allowance_types() {
        let e = effective(&[]);
        assert_eq!(e.len(), Kind::ALL.len());
        assert!(e.values().all(|p| p.in_app));
        let mailed: Vec<_> = e.iter().filter(|(_, p)| p.email).map(|(k, _)| *k).collect();
        assert_eq!(mailed, vec!["payment.failed", "usage.threshold"]);
    }

    #[test]
    fn stored_choices_override_defaults_and_unknown_rows_are_dropped() {
        let off = Preference {
            in_app: false,
            email: true,
            push: true,
        };
        let e = effective(&[("broadcast".into(), off), ("gone.type".into(), off)]);
        assert_eq!(e["broadcast"], off);
        assert_eq!(e["team.added"], Kind::TeamAdded.default_preference());
        assert!(!e.contains_key("gone.type"));
    }

    #[test]
    fn stored_preferences_without_push_read_as_push_off() {
        let p: Preference = serde_json::from_str(r#"{"in_app": true, "email": false}"#).unwrap();
        assert!(!p.push);
        assert_eq!(Kind::PaymentFailed.push_urgency(), "high");
        assert_eq!(Kind::Broadcast.push_urgency(), "normal");
    }

    #[test]
    fn patches_keep_omitted_fields() {
        let p = Kind::Broadcast.default_preference();
        let m = p.merged(PreferencePatch {
            in_app: None,
            email: Some(true),
            push: None,
        });
        assert_eq!(
            m,
            Preference {
                in_app: true,
                email: true,
                push: false,
            }
        );
        assert!(
            m.merged(PreferencePatch {
                push: Some(true),
                ..PreferencePatch::default()
            })
            .push
        );
        assert_eq!(p.merged(PreferencePatch::default()), p);
    }

    #[test]
    fn unknown_types_in_a_patch_are_named() {
        let mut raw = BTreeMap::new();
        raw.insert("broadcast".to_string(), PreferencePatch::default());
        raw.insert("nope".to_string(), PreferencePatch::default());
        assert_eq!(parse_patches(&raw), Err(vec!["nope".to_string()]));
        raw.remove("nope");
        assert_eq!(parse_patches(&raw).unwrap()[0].0, Kind::Broadcast);
    }

    #[test]
    fn a_channel_is_used_only_when_sender_and_recipient_allow_it() {
        let only_app = Channels {
            in_app: true,
            email: false,
            push: false,
        };
        let wants_mail = Some(Preference {
            in_app: false,
            email: true,
            push: false,
        });
        let wants_push = Some(Preference {
            in_app: true,
            email: false,
            push: true,
        });
        assert!(delivery(Kind::Broadcast, wants_push, Channels::ALL).push);
        assert!(!delivery(Kind::Broadcast, wants_push, only_app).push);
        assert!(
            !delivery(Kind::Broadcast, None, Channels::ALL).push,
            "push is off by default"
        );
        assert_eq!(
            delivery(Kind::Broadcast, wants_mail, Channels::ALL),
            Preference {
                in_app: false,
                email: true,
                push: false,
            }
        );
        assert_eq!(
            delivery(Kind::Broadcast, wants_mail, only_app),
            Preference {
                in_app: false,
                email: false,
                push: false,
            }
        );
        assert_eq!(
            delivery(Kind::PaymentFailed, None, Channels::ALL),
            Preference {
                in_app: true,
                email: true,
                push: false,
            }
        );
        assert_eq!(
            delivery(Kind::Broadcast, None, Channels::ALL),
            Preference {
                in_app: true,
                email: false,
                push: false,
            }
        );
    }

    #[test]
    fn channels_parse() {
        let c = |v: &[&str]| Channels::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            c(&["email"]).unwrap(),
            Channels {
                in_app: false,
                email: true,
                push: false,
            }
        );
        assert_eq!(
            c(&["in_app", "email", "push", "in_app"]).unwrap(),
            Channels::ALL
        );
        assert!(c(&["push"]).unwrap().push);
        assert!(c(&[]).is_err());
        assert!(c(&["sms"]).unwrap_err().contains("sms"));
    }

    fn to() -> BroadcastTo {
        BroadcastTo::default()
    }

    #[test]
    fn a_broadcast_names_exactly_one_audience() {
        assert!(audience(&to()).is_err());
        let both = BroadcastTo {
            role: Some("admin".into()),
            all: Some(true),
            ..to()
        };
        assert_eq!(audience(&both).unwrap_err().0, "to");
        assert_eq!(
            audience(&BroadcastTo {
                all: Some(true),
                ..to()
            }),
            Ok(Audience::All)
        );
        assert_eq!(
            audience(&BroadcastTo {
                all: Some(false),
                ..to()
            })
            .unwrap_err()
            .0,
            "to.all"
        );
        assert_eq!(
            audience(&BroadcastTo {
                role: Some("agent".into()),
                ..to()
            }),
            Ok(Audience::Role(Role::Agent))
        );
        for bad in ["platform_admin", "boss", ""] {
            assert_eq!(
                audience(&BroadcastTo {
                    role: Some(bad.into()),
                    ..to()
                })
                .unwrap_err()
                .0,
                "to.role"
            );
        }
        assert_eq!(
            audience(&BroadcastTo {
                team_id: Some(" tm_1 ".into()),
                ..to()
            }),
            Ok(Audience::Team("tm_1".into()))
        );
    }

    #[test]
    fn user_ids_are_deduplicated_and_bounded() {
        let ids = |v: Vec<String>| {
            audience(&BroadcastTo {
                user_ids: Some(v),
                ..to()
            })
        };
        assert_eq!(
            ids(vec!["usr_a".into(), "usr_b".into(), "usr_a".into()]),
            Ok(Audience::Users(vec!["usr_a".into(), "usr_b".into()]))
        );
        assert!(ids(vec![]).is_err());
        assert!(ids(vec!["".into()]).is_err());
        assert!(ids((0..1000).map(|i| format!("usr_{i}")).collect()).is_ok());
        assert_eq!(
            ids((0..1001).map(|i| format!("usr_{i}")).collect())
                .unwrap_err()
                .0,
            "to.user_ids"
        );
        // Duplicates do not count twice toward the bound.
        assert!(ids(vec!["usr_a".to_string(); 1500]).is_ok());
    }

    #[test]
    fn resolved_audiences_over_the_bound_are_refused() {
        assert!(check_count(0).is_ok());
        assert!(check_count(MAX_RECIPIENTS).is_ok());
        assert!(check_count(MAX_RECIPIENTS + 1).is_err());
    }
}
