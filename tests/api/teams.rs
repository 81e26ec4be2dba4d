//! Teams (admins manage, leads manage their plain members, everyone reads) and invitations
//! (mailed through the e-mail mock, previewed and accepted once with the token; reuse,
//! expiry, revocation, resend, concurrent accepts, role and tenant rules), with other
//! tenants' objects 404.

use futures::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::harness::server;
use crate::workflows::mock_calls;

async fn new_team(s: &Session, name: &str) -> String {
    post("/api/v1/teams")
        .token(&s.access)
        .json(json!({"name": name}))
        .send()
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn add_member(s: &Session, team: &str, user_id: &str, role: &str) -> Resp {
    post(&format!("/api/v1/teams/{team}/members"))
        .token(&s.access)
        .json(json!({"user_id": user_id, "role": role}))
        .send()
        .await
}

async fn invite(s: &Session, email: &str, role: &str, team_ids: &[&str]) -> Resp {
    post("/api/v1/invitations")
        .token(&s.access)
        .json(json!({"email": email, "role": role, "team_ids": team_ids}))
        .send()
        .await
}

fn token_of(url: &str) -> String {
    url.split_once("token=").unwrap().1.to_string()
}

/// Invites `email` and returns (invitation id, token).
async fn invited(s: &Session, email: &str, role: &str, team_ids: &[&str]) -> (String, String) {
    let r = invite(s, email, role, team_ids).await.expect(201);
    (
        r.data()["id"].as_str().unwrap().to_string(),
        token_of(r.data()["accept_url"].as_str().unwrap()),
    )
}

async fn preview(token: &str, ip: &str) -> Resp {
    post("/api/v1/invitations/preview")
        .header("CF-Connecting-IP", ip)
        .json(json!({"token": token}))
        .send()
        .await
}

async fn accept(token: &str, ip: &str) -> Resp {
    post("/api/v1/invitations/accept")
        .header("CF-Connecting-IP", ip)
        .json(json!({"token": token, "password": "invited password 1", "full_name": "Ina Vited"}))
        .send()
        .await
}

fn invitee() -> String {
    format!("invitee-{}@example.com", unique())
}

/// The mails the mock received for `to` (SendGrid bodies), waiting up to 20 s for `n`.
async fn mails_to(to: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mails: Vec<Value> = mock_calls("email")
            .await
            .into_iter()
            .map(|c| c["json"].clone())
            .filter(|j| j["personalizations"][0]["to"][0]["email"] == to)
            .collect();
        if mails.len() >= n || Instant::now() > deadline {
            assert!(mails.len() >= n, "{} of {n} mails to {to}", mails.len());
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn mail_text(mail: &Value) -> String {
    mail["content"][0]["value"].as_str().unwrap().to_string()
}

async fn audited(s: &Session, action: &str, target: &str) -> bool {
    let r = get(&format!(
        "/api/v1/audit-logs?action={action}&target_id={target}"
    ))
    .token(&s.access)
    .send()
    .await
    .expect(200);
    !r.data().as_array().unwrap().is_empty()
}

#[tokio::test]
async fn teams_crud_with_unique_names() {
    let owner = register().await;
    let u = unique();
    let r = post("/api/v1/teams")
        .token(&owner.access)
        .json(json!({"name": format!("Support {u}"), "description": "First line"}))
        .send()
        .await
        .expect(201);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(r.data()["member_count"], 0);
    assert_eq!(r.data()["description"], "First line");
    assert!(audited(&owner, "team.created", &id).await);
    // Unique per tenant, case-insensitively, on create and rename.
    post("/api/v1/teams")
        .token(&owner.access)
        .json(json!({"name": format!("SUPPORT {u}")}))
        .send()
        .await
        .problem(409, "conflict");
    let other = new_team(&owner, &format!("Sales {u}")).await;
    patch(&format!("/api/v1/teams/{other}"))
        .token(&owner.access)
        .json(json!({"name": format!("support {u}")}))
        .send()
        .await
        .problem(409, "conflict");
    // Another tenant may use the same name.
    let b = register().await;
    new_team(&b, &format!("Support {u}")).await;
    for body in [
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "ok", "tenant_id": b.tenant_id}),
        json!({"description": "no name"}),
    ] {
        post("/api/v1/teams")
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    let r = patch(&format!("/api/v1/teams/{id}"))
        .token(&owner.access)
        .json(json!({"name": format!("Care {u}"), "description": null}))
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["name"], format!("Care {u}"));
    assert!(r.data()["description"].is_null());
    assert!(audited(&owner, "team.updated", &id).await);
    let list = get("/api/v1/teams?limit=1")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data().as_array().unwrap().len(), 1);
    assert!(list.body["next_cursor"].is_string());
    let found = get(&format!("/api/v1/teams?q=Care%20{u}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(found.data()[0]["id"], id.as_str());
    delete(&format!("/api/v1/teams/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    assert!(audited(&owner, "team.deleted", &id).await);
    get(&format!("/api/v1/teams/{id}"))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn leads_manage_their_own_teams_plain_members() {
    let owner = register().await;
    let lead = add_user(&owner, "member").await;
    let plain = add_user(&owner, "member").await;
    let newcomer = add_user(&owner, "agent").await;
    let a = new_team(&owner, &format!("A {}", unique())).await;
    let b = new_team(&owner, &format!("B {}", unique())).await;
    add_member(&owner, &a, &lead.user_id, "lead")
        .await
        .expect(201);
    add_member(&owner, &a, &plain.user_id, "member")
        .await
        .expect(201);
    assert!(audited(&owner, "team.member_added", &a).await);

    // A plain member reads but cannot manage.
    let t = get(&format!("/api/v1/teams/{a}"))
        .token(&plain.access)
        .send()
        .await
        .expect(200);
    assert_eq!(t.data()["member_count"], 2);
    add_member(&plain, &a, &newcomer.user_id, "member")
        .await
        .problem(403, "forbidden");
    // The lead adds a member to their team, not to another one, and makes nobody a lead.
    let m = add_member(&lead, &a, &newcomer.user_id, "member")
        .await
        .expect(201);
    assert_eq!(m.data()["role"], "member");
    assert_eq!(m.data()["user_role"], "agent");
    add_member(&lead, &a, &newcomer.user_id, "member")
        .await
        .problem(409, "conflict");
    add_member(&lead, &b, &newcomer.user_id, "member")
        .await
        .problem(403, "forbidden");
    let path = format!("/api/v1/teams/{a}/members/{}", newcomer.user_id);
    patch(&path)
        .token(&lead.access)
        .json(json!({"role": "lead"}))
        .send()
        .await
        .problem(403, "forbidden");
    patch(&path)
        .token(&lead.access)
        .json(json!({"role": "boss"}))
        .send()
        .await
        .problem(422, "validation_failed");
    // Admins make leads; then the first lead cannot touch the second.
    patch(&path)
        .token(&owner.access)
        .json(json!({"role": "lead"}))
        .send()
        .await
        .expect(200);
    assert!(audited(&owner, "team.member_updated", &a).await);
    delete(&path)
        .token(&lead.access)
        .send()
        .await
        .problem(403, "forbidden");
    // The lead removes a plain member.
    delete(&format!("/api/v1/teams/{a}/members/{}", plain.user_id))
        .token(&lead.access)
        .send()
        .await
        .expect(204);
    assert!(audited(&owner, "team.member_removed", &a).await);
    let members = get(&format!("/api/v1/teams/{a}/members"))
        .token(&plain.access)
        .send()
        .await
        .expect(200);
    let mut ids: Vec<&str> = members
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![lead.user_id.as_str(), newcomer.user_id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    delete(&format!("/api/v1/teams/{a}/members/{}", plain.user_id))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn other_tenants_teams_users_and_invitations_are_not_found() {
    let a = register().await;
    let b = register().await;
    let b_user = add_user(&b, "member").await;
    let team_a = new_team(&a, &format!("A {}", unique())).await;
    let team_b = new_team(&b, &format!("B {}", unique())).await;
    add_member(&b, &team_b, &b_user.user_id, "member")
        .await
        .expect(201);
    // Another tenant's user cannot be added to my team.
    add_member(&a, &team_a, &b_user.user_id, "member")
        .await
        .problem(404, "not_found");
    let (inv_b, _) = invited(&b, &invitee(), "member", &[]).await;
    let team = format!("/api/v1/teams/{team_b}");
    let member = format!("{team}/members/{}", b_user.user_id);
    let inv = format!("/api/v1/invitations/{inv_b}");
    for r in [
        get(&team),
        patch(&team).json(json!({"name": "Hijack"})),
        delete(&team),
        get(&format!("{team}/members")),
        post(&format!("{team}/members")).json(json!({"user_id": a.user_id})),
        patch(&member).json(json!({"role": "lead"})),
        delete(&member),
        get(&inv),
        post(&format!("{inv}/resend")),
        delete(&inv),
    ] {
        r.token(&a.access).send().await.problem(404, "not_found");
    }
    // Inviting into another tenant's team is refused as a field error.
    invite(&a, &invitee(), "member", &[&team_b])
        .await
        .problem(422, "validation_failed");
    let list = get("/api/v1/teams")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    assert!(list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != team_b.as_str()));
    // B's team is untouched.
    let t = get(&team).token(&b.access).send().await.expect(200);
    assert_eq!(t.data()["member_count"], 1);
}

#[tokio::test]
async fn an_invitation_is_mailed_previewed_and_accepted_once() {
    let owner = register().await;
    let team = new_team(&owner, &format!("Care {}", unique())).await;
    let email = invitee();
    let r = invite(&owner, &email, "agent", &[&team]).await.expect(201);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let url = r.data()["accept_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://app.example.com/invitations/accept?token=inv_"));
    let token = token_of(&url);
    assert_eq!(r.data()["status"], "pending");
    assert_eq!(r.data()["team_ids"], json!([team]));
    assert!(audited(&owner, "invitation.created", &id).await);

    // The mail reaches the mock with the link.
    let mail = &mails_to(&email, 1).await[0];
    assert!(mail_text(mail).contains(&url), "{mail}");
    assert!(mail["subject"].as_str().unwrap().contains("Org "));

    // Shown once: never in the list or the invitation.
    let list = get("/api/v1/invitations?status=pending")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(!list.text.contains(&token) && list.text.contains(&id));
    let one = get(&format!("/api/v1/invitations/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(one.data().get("accept_url").is_none() && !one.text.contains(&token));

    let ip = random_ip();
    let p = preview(&token, &ip).await.expect(200);
    assert_eq!(p.data()["role"], "agent");
    assert!(p.data()["organization"]
        .as_str()
        .unwrap()
        .starts_with("Org "));
    assert_eq!(p.data()["teams"][0]["id"], team.as_str());
    let masked = p.data()["email_masked"].as_str().unwrap();
    assert!(masked.starts_with("i***@") && !masked.contains("invitee-"));

    let r = accept(&token, &ip).await.expect(201);
    assert_eq!(r.data()["user"]["email"], email.as_str());
    assert_eq!(r.data()["user"]["role"], "agent");
    assert_eq!(r.data()["user"]["tenant_id"], owner.tenant_id.as_str());
    assert!(r.data()["access_token"].is_string() && r.data()["refresh_token"].is_string());
    let new_user = r.data()["user"]["id"].as_str().unwrap().to_string();
    // The new token works, the user is on the team, and logs in.
    let members = get(&format!("/api/v1/teams/{team}/members"))
        .token(r.data()["access_token"].as_str().unwrap())
        .send()
        .await
        .expect(200);
    assert_eq!(members.data()[0]["user_id"], new_user.as_str());
    login(&email, "invited password 1").await.expect(200);
    let one = get(&format!("/api/v1/invitations/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(one.data()["status"], "accepted");
    assert_eq!(one.data()["accepted_by"], new_user.as_str());
    assert!(audited(&owner, "invitation.accepted", &id).await);

    // It works once.
    accept(&token, &ip).await.problem(410, "invitation_invalid");
    preview(&token, &ip)
        .await
        .problem(410, "invitation_invalid");
    post(&format!("/api/v1/invitations/{id}/resend"))
        .token(&owner.access)
        .send()
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn expired_revoked_and_resent_tokens_are_gone() {
    let owner = register().await;
    let ip = random_ip();
    // Expired.
    let (expired, token) = invited(&owner, &invitee(), "member", &[]).await;
    let sql = format!(
        "UPDATE invitations SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = '{expired}'"
    );
    d1_alone(move || server().d1(&sql)).await;
    preview(&token, &ip)
        .await
        .problem(410, "invitation_invalid");
    accept(&token, &ip).await.problem(410, "invitation_invalid");
    let list = get("/api/v1/invitations?status=expired")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data()[0]["id"], expired.as_str());
    assert_eq!(list.data()[0]["status"], "expired");

    // Revoked.
    let (revoked, token) = invited(&owner, &invitee(), "member", &[]).await;
    delete(&format!("/api/v1/invitations/{revoked}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    assert!(audited(&owner, "invitation.revoked", &revoked).await);
    accept(&token, &ip).await.problem(410, "invitation_invalid");
    delete(&format!("/api/v1/invitations/{revoked}"))
        .token(&owner.access)
        .send()
        .await
        .problem(409, "conflict");

    // Resent: a new mail with a new token, the old one dead.
    let ip = random_ip();
    let email = invitee();
    let (id, old) = invited(&owner, &email, "member", &[]).await;
    let r = post(&format!("/api/v1/invitations/{id}/resend"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let url = r.data()["accept_url"].as_str().unwrap().to_string();
    let new = token_of(&url);
    assert_ne!(new, old);
    let mails = mails_to(&email, 2).await;
    assert!(mails.iter().any(|m| mail_text(m).contains(&url)));
    preview(&old, &ip).await.problem(410, "invitation_invalid");
    preview(&new, &ip).await.expect(200);
    accept(&new, &ip).await.expect(201);
}

#[tokio::test]
async fn of_two_concurrent_accepts_one_wins() {
    let owner = register().await;
    let team = new_team(&owner, &format!("T {}", unique())).await;
    let email = invitee();
    let (_, token) = invited(&owner, &email, "member", &[&team]).await;
    let ip = random_ip();
    let mut statuses: Vec<u16> = exclusive(join_all([accept(&token, &ip), accept(&token, &ip)]))
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    statuses.sort();
    assert_eq!(statuses, [201, 410]);
    let rows = d1_alone(move || {
        server().d1(&format!(
            "SELECT COUNT(*) AS n FROM users WHERE email = '{email}'"
        ))
    })
    .await;
    assert_eq!(rows[0]["n"], 1);
    let t = get(&format!("/api/v1/teams/{team}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(t.data()["member_count"], 1);
}

#[tokio::test]
async fn who_may_invite_whom() {
    let owner = register().await;
    let admin_user = add_user(&owner, "admin").await;
    let member = add_user(&owner, "member").await;
    invite(&admin_user, &invitee(), "owner", &[])
        .await
        .problem(403, "forbidden");
    invite(&member, &invitee(), "member", &[])
        .await
        .problem(403, "forbidden");
    get("/api/v1/invitations")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    invite(&admin_user, &invitee(), "admin", &[])
        .await
        .expect(201);
    let (_, token) = invited(&owner, &invitee(), "owner", &[]).await;
    let r = accept(&token, &random_ip()).await.expect(201);
    assert_eq!(r.data()["user"]["role"], "owner");
    // Another tenant's user: refused at invite time.
    let other = register().await;
    invite(&owner, &other.email, "member", &[])
        .await
        .problem(409, "email_in_use");
    // One pending invitation per e-mail.
    let email = invitee();
    invite(&owner, &email, "member", &[]).await.expect(201);
    invite(&admin_user, &email.to_uppercase(), "agent", &[])
        .await
        .problem(409, "conflict");
    for body in [
        json!({"email": "not-an-email", "role": "member"}),
        json!({"email": invitee(), "role": "platform_admin"}),
        json!({"email": invitee(), "role": "member", "team_ids": [""]}),
        json!({"email": invitee(), "role": "member", "token": "x"}),
    ] {
        post("/api/v1/invitations")
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    get("/api/v1/invitations?status=used")
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn an_existing_users_acceptance_needs_their_session_and_adds_teams() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let other = add_user(&owner, "member").await;
    let team = new_team(&owner, &format!("T {}", unique())).await;
    let (id, token) = invited(&owner, &member.email, "admin", &[&team]).await;
    let ip = random_ip();
    let body = json!({"token": token});
    post("/api/v1/invitations/accept")
        .header("CF-Connecting-IP", &ip)
        .json(body.clone())
        .send()
        .await
        .problem(401, "unauthorized");
    post("/api/v1/invitations/accept")
        .header("CF-Connecting-IP", &ip)
        .token(&other.access)
        .json(body.clone())
        .send()
        .await
        .problem(403, "forbidden");
    let r = post("/api/v1/invitations/accept")
        .header("CF-Connecting-IP", &ip)
        .token(&member.access)
        .json(body)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["id"], id.as_str());
    assert_eq!(r.data()["status"], "accepted");
    let m = get(&format!("/api/v1/teams/{team}/members"))
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert_eq!(m.data()[0]["user_id"], member.user_id.as_str());
    // Only the teams: the role stays.
    assert_eq!(m.data()[0]["user_role"], "member");
    // An e-mail that became another organisation's account since the invitation: 409.
    let shared = invitee();
    let (_, token) = invited(&owner, &shared, "member", &[]).await;
    let u = unique();
    post("/api/v1/auth/register")
        .header("CF-Connecting-IP", &random_ip())
        .json(json!({"email": shared, "password": "correct horse battery",
                     "full_name": "Else Where", "organization_name": format!("Org {u}"),
                     "organization_slug": format!("org-{u}")}))
        .send()
        .await
        .expect(201);
    accept(&token, &random_ip())
        .await
        .problem(409, "email_in_use");
}

#[tokio::test]
async fn bad_tokens_are_alike_and_counted_per_address() {
    let ip = random_ip();
    post("/api/v1/invitations/accept")
        .header("CF-Connecting-IP", &ip)
        .json(json!({"token": ""}))
        .send()
        .await
        .problem(422, "validation_failed");
    post("/api/v1/invitations/preview")
        .header("CF-Connecting-IP", &ip)
        .json(json!({"token": "inv_x", "extra": 1}))
        .send()
        .await
        .problem(422, "validation_failed");
    // AUTH_RATE_LIMIT (5) failures, then 429 — for a good token too.
    for i in 0..5 {
        let r = if i % 2 == 0 {
            accept(&format!("inv_unknown{i}"), &ip).await
        } else {
            preview(&format!("inv_unknown{i}"), &ip).await
        };
        r.problem(410, "invitation_invalid");
    }
    let owner = register().await;
    let (_, token) = invited(&owner, &invitee(), "member", &[]).await;
    let r = preview(&token, &ip).await.problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    // Another address is unaffected.
    preview(&token, &random_ip()).await.expect(200);
}
