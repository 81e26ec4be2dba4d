//! Search (D1 FTS5): prefix matches across types, hostile queries never 500, what members may
//! not see, other tenants never appear, the types filter, both sort orders with paging, the
//! per-tenant rebuild, and `GET /audit-logs?q=`.

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;
use crate::messaging::{change, connected_inbox, deliver, poll, post_of, text_message};

/// `s` percent-encoded for a query string (every byte but the unreserved ones).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn search(s: &Session, query: &str) -> Resp {
    get(&format!("/api/v1/search?{query}"))
        .token(&s.access)
        .send()
        .await
}

/// The hits of a successful search.
async fn hits(s: &Session, query: &str) -> Vec<Value> {
    search(s, query)
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

fn ids_of(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

async fn product(s: &Session, name: &str) -> String {
    post("/api/v1/products")
        .token(&s.access)
        .json(json!({"name": name, "sku": format!("SKU-{}", unique()), "price": 1200, "currency": "EUR"}))
        .send()
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn ticket(s: &Session, subject: &str) -> String {
    post("/api/v1/support-tickets")
        .token(&s.access)
        .json(json!({"subject": subject, "description": "It arrived with a chip in the glaze.", "priority": "low"}))
        .send()
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_prefix_finds_a_product_and_a_ticket() {
    let owner = register().await;
    let p = product(&owner, "Kyoto mug").await;
    let t = ticket(&owner, "Kyoto mug arrived broken").await;
    product(&owner, "Osaka teapot").await;

    let found = hits(&owner, "q=kyo").await;
    let p_hit = found
        .iter()
        .find(|h| h["id"] == p.as_str())
        .expect("the product");
    assert_eq!(p_hit["type"], "product");
    assert_eq!(p_hit["title"], "Kyoto mug");
    assert!(
        p_hit["snippet"]
            .as_str()
            .unwrap()
            .contains("<mark>Kyoto</mark>"),
        "{p_hit}"
    );
    assert!(p_hit["score"].as_f64().unwrap() > 0.0);
    assert!(p_hit["updated_at"].as_str().unwrap().ends_with('Z'));
    let t_hit = found
        .iter()
        .find(|h| h["id"] == t.as_str())
        .expect("the ticket");
    assert_eq!(t_hit["type"], "ticket");
    assert!(!found.iter().any(|h| h["title"] == "Osaka teapot"));

    // `query=` is an alias; diacritics and case fold; several words must all match.
    let alias = hits(&owner, "query=KYO").await;
    assert!(ids_of(&alias).contains(&p));
    let both = hits(
        &owner,
        &format!("q={}&types=ticket,product", enc("kyōto BRO")),
    )
    .await;
    assert_eq!(ids_of(&both), vec![t.clone()]);
    let r = search(&owner, "q=kyo").await.expect(200);
    assert!(r.body.get("next_cursor").is_some(), "{}", r.text);
}

#[tokio::test]
async fn the_seeded_shop_owner_finds_the_kyoto_mug_by_typing_kyo() {
    let r = login("owner@aldershop.demo", &server().demo_password)
        .await
        .expect(200);
    let owner = session_from(r.data(), "owner@aldershop.demo", &server().demo_password);
    let found = hits(&owner, "q=kyo&types=product").await;
    assert!(
        found
            .iter()
            .any(|h| h["id"] == "prd_demo_kyoto_mug" && h["title"] == "Kyoto mug"),
        "{found:?}"
    );
}

#[tokio::test]
async fn hostile_queries_answer_200_or_422_and_never_500() {
    let owner = register().await;
    product(&owner, "Kyoto mug").await;
    let long = "k".repeat(201);
    let nasty = [
        "\"",
        "\"\"",
        "*",
        "kyo*",
        "*kyo",
        "NEAR(",
        "NEAR(kyoto mug, 2)",
        ")",
        "(",
        "()",
        "AND",
        "OR",
        "NOT",
        "kyo AND",
        "AND kyo",
        "kyo OR 1",
        "\"kyo",
        "kyo\"",
        "^kyo",
        "title:kyo",
        "tenant_id:\"ten_other\" OR kyo",
        "{tenant_id title body}: kyo",
        "kyo -mug",
        "+",
        "-",
        "a:b:c",
        "'; DROP TABLE products; --",
        "%",
        "_",
        "\\",
        "\u{0}",
        "kyo\u{0}to",
        "\u{200b}",
        "\u{feff}kyo",
        "\u{e000}kyo\u{e001}",
        "🍵",
        "🍵 kyo",
        "京都",
        "קיוטו",
        "e\u{301}",
        "…—·",
        "   ",
        "",
        long.as_str(),
    ];
    for q in nasty {
        for key in ["q", "query"] {
            let r = search(&owner, &format!("{key}={}", enc(q))).await;
            assert!(
                r.status == 200 || r.status == 422,
                "{key}={q:?} → {}: {}",
                r.status,
                r.text
            );
            if r.status == 422 {
                assert_eq!(r.body["code"], "validation_failed", "{q:?}");
            }
        }
    }
    // The documented refusals.
    for q in ["", "   ", "\"", "***", "()", long.as_str()] {
        search(&owner, &format!("q={}", enc(q)))
            .await
            .problem(422, "validation_failed");
    }
    search(&owner, "types=product")
        .await
        .problem(422, "validation_failed");
    // A quoted operator is a plain word: it matches a title that has it.
    let p = product(&owner, "NEAR and far mug").await;
    assert_eq!(
        ids_of(&hits(&owner, &format!("q={}", enc("NEAR( far"))).await),
        vec![p]
    );
}

#[tokio::test]
async fn a_member_finds_no_messages_contacts_users_or_audit_logs() {
    let inbox = connected_inbox("1555").await;
    let word = format!("kumquat{}", unique());
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([text_message(
                &format!("wamid.{}", unique()),
                "16315551181",
                &format!("Do you ship {word} jam?")
            )]),
            json!([]),
        )]),
    )
    .await
    .expect(200);
    poll(&inbox.owner.access, "/api/v1/messages", 20, |d| {
        d.as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains(&word)))
    })
    .await;
    let owner = &inbox.owner;
    let agent = add_user(owner, "agent").await;
    let member = add_user(owner, "member").await;

    let seen = hits(owner, &format!("q={word}")).await;
    assert!(seen.iter().any(|h| h["type"] == "message"), "{seen:?}");
    let seen = hits(&agent, &format!("q={word}")).await;
    assert!(seen.iter().any(|h| h["type"] == "message"), "{seen:?}");
    // The contact (named by the webhook), users and the audit trail: admins only / agents.
    assert!(hits(owner, "q=Kerry&types=contact").await.len() == 1);
    assert!(!hits(owner, "q=Olga&types=user").await.is_empty());

    for q in [
        format!("q={word}"),
        format!("q={word}&types=message"),
        "q=Kerry".to_string(),
        "q=Olga".to_string(),
        "q=member&types=user".to_string(),
        "q=channel&types=audit_log".to_string(),
    ] {
        let found = hits(&member, &q).await;
        assert!(
            found
                .iter()
                .all(|h| !["message", "contact", "template", "user", "audit_log"]
                    .contains(&h["type"].as_str().unwrap())),
            "{q}: {found:?}"
        );
    }
    // What members may read they do find.
    let p = product(owner, &format!("{word} jar")).await;
    assert!(ids_of(&hits(&member, &format!("q={word}")).await).contains(&p));
}

#[tokio::test]
async fn another_tenants_documents_never_appear() {
    let a = register().await;
    let b = register().await;
    let word = format!("zanzibar{}", unique());
    let pa = product(&a, &format!("{word} spice box")).await;
    ticket(&a, &format!("{word} order")).await;

    assert_eq!(ids_of(&hits(&a, &format!("q={word}")).await).len(), 2);
    assert!(ids_of(&hits(&a, &format!("q={word}")).await).contains(&pa));
    for q in [
        format!("q={word}"),
        format!("q={}", &word[..4]),
        format!(
            "q={}",
            enc(&format!("tenant_id:\"{}\" {word}", a.tenant_id))
        ),
        format!("q={}", enc(&a.tenant_id)),
        format!("q={pa}"),
    ] {
        let found = hits(&b, &q).await;
        assert!(
            found.iter().all(|h| h["id"] != pa.as_str()),
            "{q}: {found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|h| h["title"].as_str().unwrap().contains(&word)),
            "{q}: {found:?}"
        );
    }
    // B's own tokens do not reach into A either: the tenant id is not a searchable word.
    assert!(hits(&a, &format!("q={}", enc(&b.tenant_id)))
        .await
        .is_empty());
}

#[tokio::test]
async fn the_types_filter_narrows_and_unknown_types_are_refused() {
    let owner = register().await;
    let word = format!("lantern{}", unique());
    let p = product(&owner, &format!("{word} paper")).await;
    let t = ticket(&owner, &format!("{word} flickers")).await;
    assert_eq!(
        ids_of(&hits(&owner, &format!("q={word}&types=product")).await),
        vec![p.clone()]
    );
    assert_eq!(
        ids_of(&hits(&owner, &format!("q={word}&types=tickets")).await),
        vec![t.clone()]
    );
    let both = ids_of(&hits(&owner, &format!("q={word}&types=product,ticket")).await);
    assert!(both.contains(&p) && both.contains(&t) && both.len() == 2);
    assert!(hits(&owner, &format!("q={word}&types=team"))
        .await
        .is_empty());
    let r = search(&owner, &format!("q={word}&types=product,widget"))
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "types", "{}", r.text);
    search(&owner, &format!("q={word}&sort=random"))
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn recent_sort_and_paging_walk_every_hit_once() {
    let owner = register().await;
    let word = format!("walnut{}", unique());
    let mut made = Vec::new();
    for n in 0..5 {
        made.push(product(&owner, &format!("{word} bowl {n}")).await);
    }
    // The oldest one changed last: it comes first by recency.
    patch(&format!("/api/v1/products/{}", made[0]))
        .token(&owner.access)
        .json(json!({"name": format!("{word} bowl renamed")}))
        .send()
        .await
        .expect(200);
    let recent = hits(&owner, &format!("q={word}&sort=recent")).await;
    let order = ids_of(&recent);
    assert_eq!(order[0], made[0], "{recent:?}");
    let times: Vec<&str> = recent
        .iter()
        .map(|h| h["updated_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    for sort in ["recent", "relevance"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..5 {
            let mut q = format!("q={word}&sort={sort}&limit=2");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let r = search(&owner, &q).await.expect(200);
            let page = ids_of(r.data().as_array().unwrap());
            assert!(page.len() <= 2);
            seen.extend(page);
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{sort}: {seen:?}");
        assert_eq!(seen.len(), 5, "{sort}: {seen:?}");
    }
    // A cursor belongs to its sort order; a made-up one is refused.
    let r = search(&owner, &format!("q={word}&sort=recent&limit=1"))
        .await
        .expect(200);
    let c = r.body["next_cursor"].as_str().unwrap().to_string();
    search(&owner, &format!("q={word}&sort=relevance&cursor={c}"))
        .await
        .problem(422, "validation_failed");
    search(&owner, &format!("q={word}&cursor=bm90LWEtY3Vyc29y"))
        .await
        .problem(422, "validation_failed");
    search(&owner, &format!("q={word}&limit=101"))
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn documents_follow_changes_and_deletes() {
    let owner = register().await;
    let word = format!("quince{}", unique());
    let p = product(&owner, &format!("{word} jelly")).await;
    patch(&format!("/api/v1/products/{p}"))
        .token(&owner.access)
        .json(json!({"name": "Plum jelly"}))
        .send()
        .await
        .expect(200);
    assert!(hits(&owner, &format!("q={word}&types=product"))
        .await
        .is_empty());
    assert!(ids_of(&hits(&owner, "q=plum&types=product").await).contains(&p));
    delete(&format!("/api/v1/products/{p}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    assert!(!ids_of(&hits(&owner, "q=plum&types=product").await).contains(&p));
}

#[tokio::test]
async fn a_rebuild_restores_the_tenants_documents_and_is_for_admins() {
    let owner = register().await;
    let other = register().await;
    let word = format!("juniper{}", unique());
    let p = product(&owner, &format!("{word} gin glass")).await;
    let o = product(&other, &format!("{word} other glass")).await;
    // The document goes missing (as after a partial restore).
    let sql = format!("DELETE FROM search_documents WHERE ref_id IN ('{p}', '{o}')");
    d1_alone(move || server().d1(&sql)).await;
    assert!(hits(&owner, &format!("q={word}")).await.is_empty());

    let member = add_user(&owner, "member").await;
    post("/api/v1/admin/search/rebuild")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    let r = post("/api/v1/admin/search/rebuild")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    // The product, two users, their audit entries, and more.
    assert!(r.data()["documents"].as_i64().unwrap() >= 3, "{}", r.text);
    assert_eq!(ids_of(&hits(&owner, &format!("q={word}")).await), vec![p]);
    // Only this tenant's documents were rebuilt.
    assert!(hits(&other, &format!("q={word}")).await.is_empty());
    // The rebuild is in the audit trail (and searchable there).
    let trail = get("/api/v1/audit-logs?q=search.rebuilt")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        trail.data()[0]["action"],
        "search.rebuilt",
        "{}",
        trail.text
    );
}

#[tokio::test]
async fn audit_logs_q_searches_the_trail() {
    let owner = register().await;
    let sku = format!("AUD-{}", unique());
    post("/api/v1/products")
        .token(&owner.access)
        .json(json!({"name": "Teal cup", "sku": sku, "price": 100, "currency": "EUR"}))
        .send()
        .await
        .expect(201);
    let r = get(&format!("/api/v1/audit-logs?q={}", enc(&sku)))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let entries = r.data().as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", r.text);
    assert_eq!(entries[0]["action"], "product.created");
    // Prefix on the last word, with the other filters.
    let r = get("/api/v1/audit-logs?q=product.creat&action=product.created")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data().as_array().unwrap().len(), 1, "{}", r.text);
    let r = get("/api/v1/audit-logs?q=nothingmatchesthis")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(r.data().as_array().unwrap().is_empty());
    get(&format!("/api/v1/audit-logs?q={}", enc("\" *")))
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");
    // Another tenant's trail stays out.
    let other = register().await;
    let r = get(&format!("/api/v1/audit-logs?q={}", enc(&sku)))
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert!(r.data().as_array().unwrap().is_empty());
    let member = add_user(&owner, "member").await;
    get("/api/v1/audit-logs?q=product")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
}
