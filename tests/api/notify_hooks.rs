//! The events other modules tell users about through the one `notify` helper: an invitation
//! accepted, a team joined, an execution failed, a batch completed, a payment failed, a usage
//! threshold crossed, a conversation assigned.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::billing::set_tenant;
use crate::client::*;
use crate::messaging::{change, connected_inbox, deliver, poll, post_of, text_message};
use crate::stripe_support::{applied, stripe_event};
use crate::workflows::{deployed, execute, mock_url};

/// Waits until `s` has a notification of `kind` and returns it.
async fn notified(s: &Session, kind: &str, secs: u64) -> Value {
    let path = format!("/api/v1/notifications?type={kind}");
    poll(&s.access, &path, secs, |d| {
        d.as_array().is_some_and(|a| !a.is_empty())
    })
    .await[0]
        .clone()
}

async fn count(s: &Session, kind: &str) -> usize {
    get(&format!("/api/v1/notifications?type={kind}"))
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn an_accepted_invitation_tells_the_inviter_and_a_team_join_tells_the_member() {
    let owner = register().await;
    let team = post("/api/v1/teams")
        .token(&owner.access)
        .json(json!({"name": format!("Crew {}", unique())}))
        .send()
        .await
        .expect(201);
    let team_id = team.data()["id"].as_str().unwrap().to_string();
    let email = format!("new-{}@example.com", unique());
    let inv = post("/api/v1/invitations")
        .token(&owner.access)
        .json(json!({"email": email, "role": "member", "team_ids": [team_id]}))
        .send()
        .await
        .expect(201);
    let url = inv.data()["accept_url"].as_str().unwrap();
    let token = url.split("token=").nth(1).unwrap();
    let accepted = post("/api/v1/invitations/accept")
        .header("CF-Connecting-IP", &random_ip())
        .json(json!({"token": token, "password": "a long new password", "full_name": "Nia New"}))
        .send()
        .await
        .expect(201);
    let n = notified(&owner, "invitation.accepted", 10).await;
    assert!(n["title"].as_str().unwrap().contains(&email), "{n}");
    let member = session_from(accepted.data(), &email, "a long new password");
    let joined = notified(&member, "team.added", 10).await;
    assert_eq!(joined["link"], "/teams");

    // Added by an admin later: told again, with the team's name.
    let colleague = add_user(&owner, "member").await;
    post(&format!("/api/v1/teams/{team_id}/members"))
        .token(&owner.access)
        .json(json!({"user_id": colleague.user_id}))
        .send()
        .await
        .expect(201);
    let n = notified(&colleague, "team.added", 10).await;
    assert_eq!(n["link"], format!("/teams/{team_id}").as_str());
    // The one who acted is not told about their own action.
    assert_eq!(count(&owner, "team.added").await, 0);
}

#[tokio::test]
async fn a_failed_execution_tells_the_user_who_started_it() {
    let owner = register().await;
    let key = unique();
    let wf = deployed(
        &owner,
        json!([{"name": "call", "kind": "http", "url": mock_url(&format!("/fail/{key}"))}]),
    )
    .await;
    let member = add_user(&owner, "member").await;
    let id = execute(&member, &wf, json!({})).await;
    let n = notified(&member, "execution.failed", 60).await;
    assert_eq!(n["link"], format!("/executions/{id}").as_str());
    assert_eq!(count(&owner, "execution.failed").await, 0);
}

#[tokio::test]
async fn a_completed_batch_tells_its_author() {
    let owner = register().await;
    let r = post("/api/v1/optimize/batch")
        .token(&owner.access)
        .json(json!({"items": [{"text": "Please write a very short reply."}]}))
        .send()
        .await
        .expect(202);
    let id = r.data()["id"].as_str().unwrap();
    let n = notified(&owner, "optimize.batch.completed", 60).await;
    assert_eq!(n["link"], format!("/optimize/batch/{id}").as_str());
    assert!(n["body"].as_str().unwrap().starts_with("1 of 1"), "{n}");
}

#[tokio::test]
async fn crossing_a_usage_threshold_tells_the_admins_once() {
    let owner = register().await;
    set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"optimizations": 5}}),
    )
    .await
    .expect(200);
    let member = add_user(&owner, "member").await;
    for _ in 0..4 {
        post("/api/v1/optimize")
            .token(&member.access)
            .json(json!({"text": "Please write a very short reply."}))
            .send()
            .await
            .expect(201);
    }
    let n = notified(&owner, "usage.threshold", 10).await;
    assert!(n["title"].as_str().unwrap().starts_with("80 %"), "{n}");
    assert_eq!(count(&member, "usage.threshold").await, 0);
    assert_eq!(count(&owner, "usage.threshold").await, 1);
}

#[tokio::test]
async fn a_failed_payment_tells_the_admins() {
    let admin = admin().await;
    let owner = register().await;
    let e = stripe_event("checkout.session.completed", &owner.tenant_id, &[]);
    applied(&admin, &e, "processed").await;
    let invoice = format!("in_test_{}", unique());
    let failed = stripe_event(
        "invoice.payment_failed",
        &owner.tenant_id,
        &["--invoice", &invoice],
    );
    applied(&admin, &failed, "processed").await;
    let n = notified(&owner, "payment.failed", 10).await;
    assert_eq!(n["title"], "A payment failed");
    assert_eq!(n["link"], "/billing");
}

#[tokio::test]
async fn an_assigned_conversation_tells_the_assignee() {
    let inbox = connected_inbox("pn").await;
    let agent = add_user(&inbox.owner, "agent").await;
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([text_message(
                &format!("wamid.H{}", unique()),
                "16315551182",
                "Hi"
            )]),
            json!([]),
        )]),
    )
    .await
    .expect(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let cid = loop {
        let r = get("/api/v1/conversations")
            .token(&inbox.owner.access)
            .send()
            .await
            .expect(200);
        if let Some(c) = r.data().as_array().and_then(|a| a.first()) {
            break c["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no conversation");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    patch(&format!("/api/v1/conversations/{cid}"))
        .token(&inbox.owner.access)
        .json(json!({"assigned_to": agent.user_id}))
        .send()
        .await
        .expect(200);
    let n = notified(&agent, "conversation.assigned", 10).await;
    assert_eq!(n["link"], format!("/conversations/{cid}").as_str());
    // Assigning yourself tells nobody.
    patch(&format!("/api/v1/conversations/{cid}"))
        .token(&inbox.owner.access)
        .json(json!({"assigned_to": inbox.owner.user_id}))
        .send()
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&inbox.owner, "conversation.assigned").await, 0);
}
