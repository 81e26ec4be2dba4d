//! Inventory: movements change the stock in the same batch (exact under 20 parallel sales,
//! never below zero), `PATCH {quantity}` is an adjustment movement, reorder levels alert the
//! admins once per crossing, the summary, categories and their rename, with other tenants'
//! products 404 and the roles and scopes that may not write refused.

use futures::future::join_all;
use serde_json::{json, Value};

use crate::client::*;

async fn product(s: &Session, body: Value) -> Value {
    let mut body = body;
    let fields = body.as_object_mut().unwrap();
    fields
        .entry("name")
        .or_insert_with(|| json!(format!("Mug {}", unique())));
    fields
        .entry("sku")
        .or_insert_with(|| json!(format!("SKU-{}", unique())));
    fields.entry("price").or_insert(json!(1000));
    fields.entry("currency").or_insert(json!("EUR"));
    post("/api/v1/products")
        .token(&s.access)
        .json(body)
        .send()
        .await
        .expect(201)
        .data()
        .clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn movement(s: &Session, product_id: &str, body: Value) -> Resp {
    post(&format!("/api/v1/products/{product_id}/movements"))
        .token(&s.access)
        .json(body)
        .send()
        .await
}

async fn stock(s: &Session, product_id: &str) -> i64 {
    get(&format!("/api/v1/products/{product_id}"))
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()["quantity"]
        .as_i64()
        .unwrap()
}

async fn movements(s: &Session, product_id: &str, query: &str) -> Resp {
    get(&format!("/api/v1/products/{product_id}/movements{query}"))
        .token(&s.access)
        .send()
        .await
}

async fn low_stock_alerts(s: &Session) -> Vec<Value> {
    get("/api/v1/notifications?type=inventory.low_stock&limit=100")
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_receipt_and_a_sale_change_the_stock_and_are_listed() {
    let owner = register().await;
    let p = product(&owner, json!({"quantity": 2})).await;
    let pid = id(&p);
    assert_eq!(p["reorder_level"], Value::Null);

    let r = movement(
        &owner,
        &pid,
        json!({"kind": "receipt", "quantity": 10, "reason": "delivery", "reference": "PO-7"}),
    )
    .await
    .expect(201);
    let m = r.data();
    assert_eq!(m["kind"], "receipt");
    assert_eq!(m["quantity"], 10);
    assert_eq!(m["quantity_after"], 12);
    assert_eq!(m["product_id"], pid.as_str());
    assert_eq!(m["reference"], "PO-7");
    assert_eq!(m["user_id"], owner.user_id.as_str());
    assert_eq!(m["product"]["quantity"], 12);

    let r = movement(&owner, &pid, json!({"kind": "sale", "quantity": 3}))
        .await
        .expect(201);
    assert_eq!(r.data()["quantity"], -3);
    assert_eq!(r.data()["quantity_after"], 9);
    movement(&owner, &pid, json!({"kind": "return", "quantity": 1}))
        .await
        .expect(201);
    movement(&owner, &pid, json!({"kind": "adjustment", "quantity": -2}))
        .await
        .expect(201);
    assert_eq!(stock(&owner, &pid).await, 8);

    let all = movements(&owner, &pid, "").await.expect(200);
    let kinds: Vec<&str> = all
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["adjustment", "return", "sale", "receipt"],
        "newest first"
    );
    assert_eq!(all.body["next_cursor"], Value::Null);

    let first = movements(&owner, &pid, "?limit=3").await.expect(200);
    assert_eq!(first.data().as_array().unwrap().len(), 3);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let rest = movements(&owner, &pid, &format!("?limit=3&cursor={cursor}"))
        .await
        .expect(200);
    assert_eq!(rest.data().as_array().unwrap().len(), 1);
    assert_eq!(rest.data()[0]["kind"], "receipt");
    assert_eq!(rest.body["next_cursor"], Value::Null);

    let sales = movements(&owner, &pid, "?kind=sale").await.expect(200);
    assert_eq!(sales.data().as_array().unwrap().len(), 1);
    movements(&owner, &pid, "?kind=theft")
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn twenty_parallel_sales_of_a_stock_of_five_sell_exactly_five() {
    let owner = register().await;
    let pid = id(&product(&owner, json!({"quantity": 5})).await);
    let path = format!("/api/v1/products/{pid}/movements");
    let sales = (0..20).map(|_| {
        post(&path)
            .token(&owner.access)
            .json(json!({"kind": "sale", "quantity": 1}))
            .send()
    });
    let answers = exclusive(join_all(sales)).await;
    let sold = answers.iter().filter(|r| r.status == 201).count();
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 409).collect();
    assert_eq!(
        sold,
        5,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 15);
    for r in refused {
        assert_eq!(r.body["code"], "insufficient_stock", "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let mut after: Vec<i64> = answers
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.data()["quantity_after"].as_i64().unwrap())
        .collect();
    after.sort();
    assert_eq!(
        after,
        [0, 1, 2, 3, 4],
        "each sale saw the stock the one before it left"
    );
    assert_eq!(stock(&owner, &pid).await, 0);
    let listed = movements(&owner, &pid, "?limit=100").await.expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_sale_or_adjustment_beyond_the_stock_is_409_and_changes_nothing() {
    let owner = register().await;
    let pid = id(&product(&owner, json!({"quantity": 3})).await);
    let r = movement(&owner, &pid, json!({"kind": "sale", "quantity": 4}))
        .await
        .problem(409, "insufficient_stock");
    assert_eq!(r.body["available"], 3);
    movement(&owner, &pid, json!({"kind": "adjustment", "quantity": -4}))
        .await
        .problem(409, "insufficient_stock");
    movement(
        &owner,
        &pid,
        json!({"kind": "receipt", "quantity": 1_000_000_000}),
    )
    .await
    .problem(409, "stock_limit_exceeded");
    assert_eq!(stock(&owner, &pid).await, 3);
    let listed = movements(&owner, &pid, "").await.expect(200);
    assert!(listed.data().as_array().unwrap().is_empty());
    // The whole stock may go.
    movement(&owner, &pid, json!({"kind": "adjustment", "quantity": -3}))
        .await
        .expect(201);
    assert_eq!(stock(&owner, &pid).await, 0);
}

#[tokio::test]
async fn bad_kinds_quantities_and_fields_are_422() {
    let owner = register().await;
    let pid = id(&product(&owner, json!({"quantity": 5})).await);
    let field = |r: Resp, name: &str| {
        let r = r.problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], name, "{}", r.text);
    };
    field(
        movement(&owner, &pid, json!({"kind": "theft", "quantity": 1})).await,
        "kind",
    );
    field(movement(&owner, &pid, json!({"quantity": 1})).await, "kind");
    field(
        movement(&owner, &pid, json!({"kind": "sale"})).await,
        "quantity",
    );
    for (kind, q) in [
        ("sale", json!(0)),
        ("sale", json!(-1)),
        ("receipt", json!(-5)),
        ("return", json!(0)),
        ("receipt", json!(1.5)),
        ("receipt", json!("3")),
        ("adjustment", json!(0)),
        ("adjustment", json!(-1_000_000_001i64)),
        ("receipt", json!(1_000_000_001i64)),
    ] {
        field(
            movement(&owner, &pid, json!({"kind": kind, "quantity": q})).await,
            "quantity",
        );
    }
    field(
        movement(
            &owner,
            &pid,
            json!({"kind": "sale", "quantity": 1, "price": 5}),
        )
        .await,
        "price",
    );
    field(
        movement(
            &owner,
            &pid,
            json!({"kind": "sale", "quantity": 1, "reason": "x".repeat(501)}),
        )
        .await,
        "reason",
    );
    post(&format!("/api/v1/products/{pid}/movements"))
        .token(&owner.access)
        .raw(b"{\"kind\":", "application/json")
        .send()
        .await
        .problem(400, "bad_request");
    assert_eq!(stock(&owner, &pid).await, 5);

    let patch_field = |body: Value, name: &'static str| {
        let owner = owner.clone();
        let pid = pid.clone();
        async move {
            let r = patch(&format!("/api/v1/products/{pid}"))
                .token(&owner.access)
                .json(body)
                .send()
                .await
                .problem(422, "validation_failed");
            assert_eq!(r.body["errors"][0]["field"], name, "{}", r.text);
        }
    };
    patch_field(json!({"quantity": -1}), "quantity").await;
    patch_field(json!({"reorder_level": -1}), "reorder_level").await;
    patch_field(json!({"reorder_level": "3"}), "reorder_level").await;
    let r = post("/api/v1/products")
        .token(&owner.access)
        .json(json!({"name": "X", "sku": format!("S-{}", unique()), "price": 1, "currency": "EUR", "reorder_level": -2}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "reorder_level");
}

#[tokio::test]
async fn patching_the_quantity_records_an_adjustment_of_the_difference() {
    let owner = register().await;
    let pid = id(&product(&owner, json!({"quantity": 10})).await);
    movement(&owner, &pid, json!({"kind": "sale", "quantity": 4}))
        .await
        .expect(201);
    let r = patch(&format!("/api/v1/products/{pid}"))
        .token(&owner.access)
        .json(json!({"quantity": 9, "name": "Counted mug"}))
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["quantity"], 9);
    assert_eq!(r.data()["name"], "Counted mug");
    let listed = movements(&owner, &pid, "").await.expect(200);
    let latest = &listed.data()[0];
    assert_eq!(latest["kind"], "adjustment");
    assert_eq!(latest["quantity"], 3, "6 → 9");
    assert_eq!(latest["quantity_after"], 9);
    assert_eq!(latest["user_id"], owner.user_id.as_str());

    // Down as well; the same quantity again records nothing.
    patch(&format!("/api/v1/products/{pid}"))
        .token(&owner.access)
        .json(json!({"quantity": 0}))
        .send()
        .await
        .expect(200);
    patch(&format!("/api/v1/products/{pid}"))
        .token(&owner.access)
        .json(json!({"quantity": 0, "price": 1200}))
        .send()
        .await
        .expect(200);
    let listed = movements(&owner, &pid, "").await.expect(200);
    let all = listed.data().as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["quantity"], -9);
    assert_eq!(stock(&owner, &pid).await, 0);
}

#[tokio::test]
async fn crossing_the_reorder_level_tells_the_admins_once_until_restocked() {
    let owner = register().await;
    let admin = add_user(&owner, "admin").await;
    let member = add_user(&owner, "member").await;
    let p = product(&owner, json!({"quantity": 10, "reorder_level": 4})).await;
    assert_eq!(p["reorder_level"], 4);
    let pid = id(&p);

    // Above the level: nothing. Reaching it: one alert to each admin, from a member's sale.
    movement(&member, &pid, json!({"kind": "sale", "quantity": 5}))
        .await
        .expect(201);
    assert!(low_stock_alerts(&owner).await.is_empty());
    movement(&member, &pid, json!({"kind": "sale", "quantity": 1}))
        .await
        .expect(201);
    let got = low_stock_alerts(&owner).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"]["product_id"], pid.as_str());
    assert_eq!(got[0]["data"]["quantity"], 4);
    assert_eq!(got[0]["data"]["reorder_level"], 4);
    assert_eq!(low_stock_alerts(&admin).await.len(), 1);
    assert!(low_stock_alerts(&member).await.is_empty(), "admins only");

    // Further down, in parallel: still one.
    let path = format!("/api/v1/products/{pid}/movements");
    let sales = (0..3).map(|_| {
        post(&path)
            .token(&owner.access)
            .json(json!({"kind": "sale", "quantity": 1}))
            .send()
    });
    for r in exclusive(join_all(sales)).await {
        assert_eq!(r.status, 201, "{}", r.text);
    }
    assert_eq!(low_stock_alerts(&owner).await.len(), 1);

    // Restocked above the level re-arms; the next crossing (a PATCHed count) alerts again.
    movement(&owner, &pid, json!({"kind": "receipt", "quantity": 20}))
        .await
        .expect(201);
    assert_eq!(low_stock_alerts(&owner).await.len(), 1);
    patch(&format!("/api/v1/products/{pid}"))
        .token(&owner.access)
        .json(json!({"quantity": 2}))
        .send()
        .await
        .expect(200);
    assert_eq!(low_stock_alerts(&owner).await.len(), 2);

    // Clearing the level re-arms too, without telling anyone.
    patch(&format!("/api/v1/products/{pid}"))
        .token(&owner.access)
        .json(json!({"reorder_level": null}))
        .send()
        .await
        .expect(200);
    movement(&owner, &pid, json!({"kind": "sale", "quantity": 1}))
        .await
        .expect(201);
    assert_eq!(low_stock_alerts(&owner).await.len(), 2);
}

#[tokio::test]
async fn the_summary_values_stock_by_category_and_lists_low_stock() {
    let owner = register().await;
    product(
        &owner,
        json!({"category": "Mugs", "price": 1000, "quantity": 3}),
    )
    .await;
    product(
        &owner,
        json!({"category": "Mugs", "price": 250, "quantity": 4, "reorder_level": 5}),
    )
    .await;
    product(
        &owner,
        json!({"category": "Mugs", "price": 700, "currency": "USD", "quantity": 1}),
    )
    .await;
    let tea = product(
        &owner,
        json!({"category": "Tea", "price": 500, "quantity": 2, "reorder_level": 2}),
    )
    .await;
    product(
        &owner,
        json!({"price": 100, "quantity": 7, "reorder_level": 1}),
    )
    .await;

    let r = get("/api/v1/inventory/summary")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let d = r.data();
    let cats = d["categories"].as_array().unwrap();
    let find = |cat: Value, cur: &str| {
        cats.iter()
            .find(|c| c["category"] == cat && c["currency"] == cur)
            .unwrap_or_else(|| panic!("{cat} {cur} in {cats:?}"))
            .clone()
    };
    let mugs = find(json!("Mugs"), "EUR");
    assert_eq!(
        (
            mugs["products"].as_i64(),
            mugs["quantity"].as_i64(),
            mugs["stock_value"].as_i64()
        ),
        (Some(2), Some(7), Some(4000))
    );
    assert_eq!(find(json!("Mugs"), "USD")["stock_value"], 700);
    assert_eq!(find(json!("Tea"), "EUR")["stock_value"], 1000);
    assert_eq!(find(Value::Null, "EUR")["stock_value"], 700);
    assert_eq!(cats.len(), 4);
    assert_eq!(
        cats.last().unwrap()["category"],
        Value::Null,
        "uncategorised last"
    );
    let eur = d["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["currency"] == "EUR")
        .unwrap();
    assert_eq!(eur["stock_value"], 5700);
    assert_eq!(d["low_stock_count"], 2);
    let low: Vec<&str> = d["low_stock"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["category"].as_str().unwrap())
        .collect();
    assert_eq!(low, ["Mugs", "Tea"], "furthest below first");
    assert_eq!(d["low_stock"][1]["id"], tea["id"]);

    // Another tenant's summary is its own.
    let other = register().await;
    let r = get("/api/v1/inventory/summary")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert!(r.data()["categories"].as_array().unwrap().is_empty());
    assert_eq!(r.data()["low_stock_count"], 0);
}

#[tokio::test]
async fn categories_are_counted_paged_and_renamed_by_admins() {
    let owner = register().await;
    for cat in ["Mugs", "Mugs", "Tea", "Cups & saucers"] {
        product(&owner, json!({"category": cat})).await;
    }
    product(&owner, json!({})).await;
    let r = get("/api/v1/categories")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data(),
        &json!([{"name": "Cups & saucers", "count": 1}, {"name": "Mugs", "count": 2}, {"name": "Tea", "count": 1}])
    );
    let first = get("/api/v1/categories?limit=2")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(first.data().as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let rest = get(&format!("/api/v1/categories?limit=2&cursor={cursor}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(rest.data(), &json!([{"name": "Tea", "count": 1}]));
    assert_eq!(rest.body["next_cursor"], Value::Null);
    get("/api/v1/categories?cursor=%21%21")
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");

    let rename = |s: &Session, body: Value| {
        post("/api/v1/categories/rename")
            .token(&s.access)
            .json(body)
            .send()
    };
    let member = add_user(&owner, "member").await;
    rename(&member, json!({"from": "Mugs", "to": "Drinkware"}))
        .await
        .problem(403, "forbidden");
    let r = rename(&owner, json!({"from": "Mugs", "to": "Tea"}))
        .await
        .expect(200);
    assert_eq!(
        r.data(),
        &json!({"from": "Mugs", "to": "Tea", "products": 2})
    );
    let r = get("/api/v1/categories")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data(),
        &json!([{"name": "Cups & saucers", "count": 1}, {"name": "Tea", "count": 3}])
    );
    let listed = get("/api/v1/products?category=Tea")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 3);

    rename(&owner, json!({"from": "Mugs", "to": "Cups"}))
        .await
        .problem(404, "not_found");
    for bad in [
        json!({"from": "Tea", "to": ""}),
        json!({"from": "Tea", "to": "Tea"}),
        json!({"from": "Tea", "to": "x".repeat(101)}),
        json!({"from": "Tea"}),
        json!({"from": "Tea", "to": "Tisane", "all": true}),
    ] {
        rename(&owner, bad).await.problem(422, "validation_failed");
    }

    // Another tenant's category of the same name is not found.
    let other = register().await;
    rename(&other, json!({"from": "Tea", "to": "Tisane"}))
        .await
        .problem(404, "not_found");
    assert!(get("/api/v1/categories")
        .token(&other.access)
        .send()
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn another_tenants_product_is_not_found_and_read_keys_cannot_move_stock() {
    let owner = register().await;
    let pid = id(&product(&owner, json!({"quantity": 5})).await);
    let other = register().await;
    movement(&other, &pid, json!({"kind": "sale", "quantity": 1}))
        .await
        .problem(404, "not_found");
    movement(&other, &pid, json!({"kind": "receipt", "quantity": 1}))
        .await
        .problem(404, "not_found");
    movements(&other, &pid, "").await.problem(404, "not_found");
    patch(&format!("/api/v1/products/{pid}"))
        .token(&other.access)
        .json(json!({"quantity": 1}))
        .send()
        .await
        .problem(404, "not_found");
    movement(
        &owner,
        "prd_missing",
        json!({"kind": "receipt", "quantity": 1}),
    )
    .await
    .problem(404, "not_found");
    assert_eq!(stock(&owner, &pid).await, 5);

    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "reader", "scopes": ["read"]}))
        .send()
        .await
        .expect(201)
        .data()["key"]
        .as_str()
        .unwrap()
        .to_string();
    post(&format!("/api/v1/products/{pid}/movements"))
        .header("X-API-Key", &key)
        .json(json!({"kind": "sale", "quantity": 1}))
        .send()
        .await
        .problem(403, "forbidden");
    let listed = get(&format!("/api/v1/products/{pid}/movements"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect(200);
    assert!(listed.data().as_array().unwrap().is_empty());
    assert_eq!(stock(&owner, &pid).await, 5);
}
