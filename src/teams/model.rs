//! The pure parts of teams and invitations: a member's team role and who may change it, an
//! invitation's status and its one transition function, token hashing and e-mail masking.

use crate::platform::crypto::{random_token, sha256_hex};

/// A member's role inside a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamRole {
    Lead,
    Member,
}

pub const TEAM_ROLES: [&str; 2] = ["lead", "member"];

impl TeamRole {
    pub fn parse(s: &str) -> Option<TeamRole> {
        Some(match s {
            "lead" => TeamRole::Lead,
            "member" => TeamRole::Member,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Lead => "lead",
            TeamRole::Member => "member",
        }
    }
}

/// Who is changing a team's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager<'a> {
    /// A tenant administrator (owner, admin, the platform admin in its tenant, an admin key).
    Admin,
    /// A lead of this very team.
    Lead { user_id: &'a str },
    /// Anyone else (a plain member, a lead of another team, a non-admin key).
    Other,
}

/// Whether `who` may move `target` from team role `from` (`None`: not on the team) to `to`
/// (`None`: off the team). Admins change anything; a team's leads add, change and remove
/// plain members, but make nobody a lead and touch no other lead (they may step down or leave
/// themselves); everyone else changes nothing.
pub fn may_change(
    who: Manager<'_>,
    target: &str,
    from: Option<TeamRole>,
    to: Option<TeamRole>,
) -> bool {
    match who {
        Manager::Admin => true,
        Manager::Other => false,
        Manager::Lead { user_id } => {
            let touches_lead = from == Some(TeamRole::Lead) && target != user_id;
            !touches_lead && to != Some(TeamRole::Lead)
        }
    }
}

/// What an invitation is, as the API shows it: `expired` is a stored `pending` past its
/// `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

pub const INVITATION_STATUSES: [&str; 4] = ["pending", "accepted", "revoked", "expired"];

/// What may happen to an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationAction {
    /// Its token is redeemed (needs pending and unexpired).
    Accept,
    /// An administrator withdraws it (pending, expired or not).
    Revoke,
    /// A new token and expiry, mailed again (pending, expired or not).
    Resend,
}

impl InvitationStatus {
    /// The status of a stored row (`status`, `expires_at`) at `now` (both RFC 3339 of one
    /// fixed width, so text order is time order). `None` for a value the schema forbids.
    pub fn of(stored: &str, expires_at: &str, now: &str) -> Option<InvitationStatus> {
        Some(match stored {
            "pending" if expires_at > now => InvitationStatus::Pending,
            "pending" => InvitationStatus::Expired,
            "accepted" => InvitationStatus::Accepted,
            "revoked" => InvitationStatus::Revoked,
            _ => return None,
        })
    }

    pub fn parse(s: &str) -> Option<InvitationStatus> {
        Some(match s {
            "pending" => InvitationStatus::Pending,
            "accepted" => InvitationStatus::Accepted,
            "revoked" => InvitationStatus::Revoked,
            "expired" => InvitationStatus::Expired,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Expired => "expired",
        }
    }

    /// The one transition function: the status after `action`, or `None` when it does not
    /// apply. The SQL guards of the handlers say the same (`status = 'pending'`, plus
    /// `expires_at > now` for an acceptance).
    pub fn after(self, action: InvitationAction) -> Option<InvitationStatus> {
        use InvitationAction as A;
        use InvitationStatus as S;
        match (self, action) {
            (S::Pending, A::Accept) => Some(S::Accepted),
            (S::Pending | S::Expired, A::Revoke) => Some(S::Revoked),
            (S::Pending | S::Expired, A::Resend) => Some(S::Pending),
            (S::Expired | S::Accepted | S::Revoked, A::Accept)
            | (S::Accepted | S::Revoked, A::Revoke | A::Resend) => None,
        }
    }
}

/// The prefix of invitation tokens.
pub const TOKEN_PREFIX: &str = "inv_";

/// A new token (32 random bytes, base64url, prefixed) and the hash that is stored.
pub fn new_token() -> (String, String) {
    let token = random_token(TOKEN_PREFIX);
    let hash = token_hash(&token);
    (token, hash)
}

/// What is stored for a token: hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.trim().as_bytes())
}

/// The link a mail carries (and the create/resend answer shows once).
pub fn accept_url(app_base: &str, token: &str) -> String {
    format!(
        "{}/invitations/accept?token={token}",
        app_base.trim_end_matches('/')
    )
}

/// An address shown to whoever holds the token: the first character of the local part, then
/// `***`, and the domain (`jane.doe@example.com` → `j***@example.com`).
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-02T10:00:00.000Z";

    #[test]
    fn status_from_row_and_now() {
        use InvitationStatus as S;
        let later = "2026-12-09T10:00:00.000Z";
        let earlier = "2026-12-01T10:00:00.000Z";
        assert_eq!(S::of("pending", later, NOW), Some(S::Pending));
        assert_eq!(S::of("pending", earlier, NOW), Some(S::Expired));
        assert_eq!(
            S::of("pending", NOW, NOW),
            Some(S::Expired),
            "at the instant"
        );
        assert_eq!(S::of("accepted", later, NOW), Some(S::Accepted));
        assert_eq!(S::of("accepted", earlier, NOW), Some(S::Accepted));
        assert_eq!(S::of("revoked", later, NOW), Some(S::Revoked));
        assert_eq!(S::of("expired", later, NOW), None, "never stored");
        for s in INVITATION_STATUSES {
            assert_eq!(S::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(S::parse("used"), None);
    }

    #[test]
    fn one_transition_function() {
        use InvitationAction as A;
        use InvitationStatus as S;
        assert_eq!(S::Pending.after(A::Accept), Some(S::Accepted));
        assert_eq!(S::Expired.after(A::Accept), None);
        assert_eq!(S::Accepted.after(A::Accept), None, "works once");
        assert_eq!(S::Revoked.after(A::Accept), None);
        assert_eq!(S::Pending.after(A::Revoke), Some(S::Revoked));
        assert_eq!(S::Expired.after(A::Revoke), Some(S::Revoked));
        assert_eq!(S::Accepted.after(A::Revoke), None);
        assert_eq!(S::Revoked.after(A::Revoke), None);
        assert_eq!(S::Expired.after(A::Resend), Some(S::Pending));
        assert_eq!(S::Pending.after(A::Resend), Some(S::Pending));
        assert_eq!(S::Accepted.after(A::Resend), None);
        assert_eq!(S::Revoked.after(A::Resend), None);
    }

    #[test]
    fn tokens_hash_to_hex_sha256_and_links_carry_them() {
        let (token, hash) = new_token();
        assert!(token.starts_with("inv_") && token.len() == 4 + 43);
        assert_eq!(hash, token_hash(&token));
        assert_eq!(hash.len(), 64);
        assert_ne!(new_token().0, token);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            accept_url("https://app.example.com/", "inv_x"),
            "https://app.example.com/invitations/accept?token=inv_x"
        );
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask_email("j@example.com"), "j***@example.com");
        assert_eq!(mask_email("élise@exämple.de"), "é***@exämple.de");
        assert_eq!(mask_email("nonsense"), "***");
    }

    #[test]
    fn leads_manage_plain_members_only() {
        use TeamRole::*;
        let lead = Manager::Lead { user_id: "usr_l" };
        assert!(may_change(Manager::Admin, "usr_x", Some(Lead), None));
        assert!(may_change(Manager::Admin, "usr_x", None, Some(Lead)));
        assert!(may_change(lead, "usr_m", None, Some(Member)), "add");
        assert!(may_change(lead, "usr_m", Some(Member), None), "remove");
        assert!(
            !may_change(lead, "usr_m", Some(Member), Some(Lead)),
            "promote"
        );
        assert!(!may_change(lead, "usr_m", None, Some(Lead)), "add a lead");
        assert!(!may_change(lead, "usr_o", Some(Lead), None), "other lead");
        assert!(!may_change(lead, "usr_o", Some(Lead), Some(Member)));
        assert!(
            may_change(lead, "usr_l", Some(Lead), Some(Member)),
            "step down"
        );
        assert!(may_change(lead, "usr_l", Some(Lead), None), "leave");
        assert!(!may_change(Manager::Other, "usr_m", None, Some(Member)));
        for r in TEAM_ROLES {
            assert_eq!(TeamRole::parse(r).unwrap().as_str(), r);
        }
        assert_eq!(TeamRole::parse("owner"), None);
    }
}
