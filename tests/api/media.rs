//! Media through the local R2 and queue: uploads checked by their bytes, Range downloads,
//! signed links, text extraction and OCR jobs with candidates, and products made from them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest;

use crate::client::*;
use crate::harness::server;
use crate::workflows::mock_calls;

const PDF: &[u8] = include_bytes!("../fixtures/price-list.pdf");
const CSV: &[u8] = include_bytes!("../fixtures/price-list.csv");
const PNG: &[u8] = include_bytes!("../fixtures/label.png");

fn multipart(
    filename: &str,
    content_type: &str,
    data: &[u8],
    attributes: Option<&str>,
) -> (Vec<u8>, String) {
    let boundary = format!("tenantry-{}", unique());
    let mut body = Vec::new();
    if let Some(a) = attributes {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n{a}\r\n").as_bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(data);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

pub async fn upload(s: &Session, filename: &str, content_type: &str, data: &[u8]) -> Resp {
    let (body, ct) = multipart(filename, content_type, data, None);
    post("/api/v1/media")
        .token(&s.access)
        .raw(&body, &ct)
        .send()
        .await
}

async fn uploaded(s: &Session, filename: &str, content_type: &str, data: &[u8]) -> String {
    upload(s, filename, content_type, data)
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn run_job(s: &Session, media_id: &str, kind: &str) -> Value {
    let r = post(&format!("/api/v1/media/{media_id}/process"))
        .token(&s.access)
        .json(json!({ "kind": kind }))
        .send()
        .await
        .expect(202);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/jobs/{id}").as_str())
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let j = get(&format!("/api/v1/jobs/{id}"))
            .token(&s.access)
            .send()
            .await
            .expect(200);
        if matches!(j.data()["status"].as_str(), Some("completed" | "failed")) {
            return j.data().clone();
        }
        assert!(Instant::now() < deadline, "job did not finish: {}", j.text);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_upload_round_trips_with_the_same_sha256_and_serves_ranges() {
    let owner = register().await;
    let (body, ct) = multipart(
        "price-list.pdf",
        "application/pdf",
        PDF,
        Some(r#"{"supplier":"Alder"}"#),
    );
    let r = post("/api/v1/media")
        .token(&owner.access)
        .raw(&body, &ct)
        .send()
        .await
        .expect(201);
    let sha = hex::encode(sha2::Sha256::digest(PDF));
    assert_eq!(r.data()["sha256"], sha.as_str());
    assert_eq!(r.data()["size"], PDF.len());
    assert_eq!(r.data()["content_type"], "application/pdf");
    assert_eq!(r.data()["attributes"], json!({"supplier": "Alder"}));
    let id = r.data()["id"].as_str().unwrap();

    let d = get(&format!("/api/v1/media/{id}/download"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(hex::encode(sha2::Sha256::digest(&d.bytes)), sha);
    assert_eq!(d.header("content-type"), Some("application/pdf"));
    assert_eq!(d.header("etag"), Some(format!("\"{sha}\"").as_str()));

    let part = get(&format!("/api/v1/media/{id}/download"))
        .token(&owner.access)
        .header("Range", "bytes=0-3")
        .send()
        .await
        .expect(206);
    assert_eq!(part.bytes, b"%PDF");
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-3/{}", PDF.len()).as_str())
    );
    get(&format!("/api/v1/media/{id}/download"))
        .token(&owner.access)
        .header("Range", "bytes=999999-")
        .send()
        .await
        .problem(416, "range_not_satisfiable");

    // A raw body works too.
    let raw = post("/api/v1/media?filename=list.csv")
        .token(&owner.access)
        .raw(CSV, "text/csv")
        .send()
        .await
        .expect(201);
    assert_eq!(raw.data()["filename"], "list.csv");
    assert_eq!(raw.data()["content_type"], "text/csv");
    let docs = get("/api/v1/media?type=document")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(docs.data().as_array().unwrap().len(), 1);
    let csvs = get("/api/v1/media?type=text/csv")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(csvs.data()[0]["filename"], "list.csv");
    assert_eq!(csvs.data().as_array().unwrap().len(), 1);
    get("/api/v1/media?type=video")
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");
    delete(&format!("/api/v1/media/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    get(&format!("/api/v1/media/{id}/download"))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn wrong_bytes_are_415_oversized_files_413_and_the_storage_quota_402() {
    let owner = register().await;
    upload(&owner, "cat.png", "image/png", PDF)
        .await
        .problem(415, "unsupported_media_type");
    upload(
        &owner,
        "tool.exe",
        "application/octet-stream",
        b"MZ\x90\x00\x03\x00\x00\x00",
    )
    .await
    .problem(415, "unsupported_media_type");
    // The harness allows 6 MiB per file and 12 MiB per tenant.
    let big = vec![b'a'; 6 * 1024 * 1024 + 1];
    post("/api/v1/media?filename=big.txt")
        .token(&owner.access)
        .raw(&big, "text/plain")
        .send()
        .await
        .problem(413, "payload_too_large");
    let chunk = vec![b'b'; 4 * 1024 * 1024 + 512 * 1024];
    for _ in 0..2 {
        post("/api/v1/media?filename=part.txt")
            .token(&owner.access)
            .raw(&chunk, "text/plain")
            .send()
            .await
            .expect(201);
    }
    post("/api/v1/media?filename=part.txt")
        .token(&owner.access)
        .raw(&chunk, "text/plain")
        .send()
        .await
        .problem(402, "quota_exceeded");
    // The refused body was read out: the connection still serves the next request.
    get("/api/v1/media")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn the_file_size_limit_follows_the_tenants_plan() {
    // The harness allows 6 MiB on every plan but starter, which gets 7 MiB.
    let owner = register().await;
    let file = vec![b'c'; 6 * 1024 * 1024 + 512 * 1024];
    let send = || async {
        post("/api/v1/media?filename=catalogue.txt")
            .token(&owner.access)
            .raw(&file, "text/plain")
            .send()
            .await
    };
    send().await.problem(413, "payload_too_large");
    patch(&format!("/api/v1/admin/tenants/{}", owner.tenant_id))
        .token(&admin().await.access)
        .json(json!({"plan": "starter"}))
        .send()
        .await
        .expect(200);
    let stored = send().await.expect(201);
    assert_eq!(stored.data()["size"], file.len());
    let back = get(&format!(
        "/api/v1/media/{}/download",
        stored.data()["id"].as_str().unwrap()
    ))
    .token(&owner.access)
    .send()
    .await
    .expect(200);
    assert_eq!(
        stored.data()["sha256"],
        hex::encode(sha2::Sha256::digest(&back.bytes)).as_str()
    );
    assert!(back.bytes == file);
}

#[tokio::test]
async fn raw_bodies_stream_past_the_in_memory_limit_that_bounds_multipart_forms() {
    // The harness holds at most 1 MiB of a request in memory; raw bodies are streamed to R2.
    let owner = register().await;
    let mut csv = "sku,name,price\n".to_string();
    let mut n = 0;
    while csv.len() < 3 * 1024 * 1024 {
        csv.push_str(&format!("SKU-{n:07},Crème brûlée dish,4.50\n"));
        n += 1;
    }
    let streamed = post("/api/v1/media?filename=catalogue.csv")
        .token(&owner.access)
        .raw(csv.as_bytes(), "text/csv; charset=utf-8")
        .send()
        .await
        .expect(201);
    assert_eq!(streamed.data()["content_type"], "text/csv");
    assert_eq!(streamed.data()["size"], csv.len());
    assert_eq!(
        streamed.data()["sha256"],
        hex::encode(sha2::Sha256::digest(csv.as_bytes())).as_str()
    );
    upload(&owner, "catalogue.csv", "text/csv", csv.as_bytes())
        .await
        .problem(413, "payload_too_large");
    // Text must stay text past the first bytes the type is decided on.
    let mut late_binary = csv.as_bytes()[..2 * 1024 * 1024].to_vec();
    late_binary[1024 * 1024] = 0;
    post("/api/v1/media?filename=tampered.csv")
        .token(&owner.access)
        .raw(&late_binary, "text/csv")
        .send()
        .await
        .problem(415, "unsupported_media_type");
    // A streamed body is still refused by its first bytes before anything is stored.
    let mut fake = b"MZ\x90\x00".to_vec();
    fake.resize(2 * 1024 * 1024, 0);
    post("/api/v1/media?filename=report.pdf")
        .token(&owner.access)
        .raw(&fake, "application/pdf")
        .send()
        .await
        .problem(415, "unsupported_media_type");
    let files = get("/api/v1/media")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(files.data().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_signed_link_works_without_login_until_it_expires_or_is_revoked() {
    let owner = register().await;
    let id = uploaded(&owner, "label.png", "image/png", PNG).await;
    let r = post(&format!("/api/v1/media/{id}/links"))
        .token(&owner.access)
        .json(json!({"expires_in": 600}))
        .send()
        .await
        .expect(201);
    let url = r.data()["url"].as_str().unwrap().to_string();
    let path = url
        .strip_prefix(&server().base)
        .expect("an absolute URL on this worker")
        .to_string();
    let shared = get(&path).send().await.expect(200);
    assert_eq!(shared.bytes, PNG);
    assert_eq!(shared.header("content-type"), Some("image/png"));

    let mut tampered = path.clone();
    tampered.pop();
    tampered.push(if path.ends_with('0') { '1' } else { '0' });
    get(&tampered).send().await.problem(403, "link_invalid");
    let longer = path.replacen(".", ".9", 1);
    get(&longer).send().await.problem(403, "link_invalid");

    let link_id = r.data()["id"].as_str().unwrap();
    delete(&format!("/api/v1/media/{id}/links/{link_id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    get(&path).send().await.problem(403, "link_invalid");

    let short = post(&format!("/api/v1/media/{id}/links"))
        .token(&owner.access)
        .json(json!({"expires_in": 1}))
        .send()
        .await
        .expect(201);
    let short_path = short.data()["url"]
        .as_str()
        .unwrap()
        .replace(&server().base, "");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    get(&short_path).send().await.problem(403, "link_invalid");
    post(&format!("/api/v1/media/{id}/links"))
        .token(&owner.access)
        .json(json!({"expires_in": 0}))
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn extract_text_on_a_price_list_pdf_yields_candidates_that_become_products() {
    let owner = register().await;
    let id = uploaded(&owner, "price-list.pdf", "application/pdf", PDF).await;
    let job = run_job(&owner, &id, "extract_text").await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["result"]["pages"], 1);
    assert!(job["result"]["text"]
        .as_str()
        .unwrap()
        .contains("Ceramic mug blue"));
    let candidates = job["result"]["product_candidates"].as_array().unwrap();
    let got: Vec<(&str, i64, &str)> = candidates
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["price"].as_i64().unwrap(),
                c["currency"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Ceramic mug blue", 1250, "EUR"),
            ("Stoneware teapot 1.2 l", 3490, "EUR"),
            ("Cork coasters (set of 4)", 800, "EUR")
        ]
    );

    let job_id = job["id"].as_str().unwrap();
    let made = post("/api/v1/products/from-candidates")
        .token(&owner.access)
        .json(json!({"job_id": job_id, "candidates": [0, 2]}))
        .send()
        .await
        .expect(201);
    let products = made.data().as_array().unwrap();
    assert_eq!(products.len(), 2);
    assert_eq!(products[0]["name"], "Ceramic mug blue");
    assert_eq!(products[0]["price"], 1250);
    assert_eq!(products[0]["status"], "draft");
    assert_eq!(products[0]["media_ids"], json!([id]));
    assert_eq!(products[1]["sku"], "CRK-004");
    // Making them again collides on the SKUs: all or nothing.
    post("/api/v1/products/from-candidates")
        .token(&owner.access)
        .json(json!({"job_id": job_id, "candidates": [1, 2]}))
        .send()
        .await
        .problem(409, "conflict");
    post("/api/v1/products/from-candidates")
        .token(&owner.access)
        .json(json!({"job_id": job_id, "candidates": [7]}))
        .send()
        .await
        .problem(422, "validation_failed");
    let listed = get("/api/v1/products?q=mug")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 1);

    let csv = post("/api/v1/media?filename=list.csv")
        .token(&owner.access)
        .raw(CSV, "text/csv")
        .send()
        .await
        .expect(201);
    let csv_job = run_job(&owner, csv.data()["id"].as_str().unwrap(), "extract_text").await;
    let names: Vec<(&str, i64)> = csv_job["result"]["product_candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["price"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, vec![("Linen napkin", 450), ("Oak board", 1990)]);
}

#[tokio::test]
async fn a_pdf_without_a_readable_text_layer_fails_its_job_with_the_reason() {
    let owner = register().await;
    let id = uploaded(
        &owner,
        "scan.pdf",
        "application/pdf",
        b"%PDF-1.4\n% a header and nothing a reader can use\n",
    )
    .await;
    let job = run_job(&owner, &id, "extract_text").await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["result"], Value::Null, "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("text layer"),
        "{job}"
    );
}

#[tokio::test]
async fn ocr_reads_images_through_the_ocr_service_and_a_failing_service_fails_the_job() {
    let owner = register().await;
    let id = uploaded(&owner, "label.png", "image/png", PNG).await;
    post(&format!("/api/v1/media/{id}/process"))
        .token(&owner.access)
        .json(json!({"kind": "extract_text"}))
        .send()
        .await
        .problem(409, "conflict");
    let before = mock_calls("ocr").await.len();
    let job = run_job(&owner, &id, "ocr").await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["result"]["confidence"], 0.91);
    assert!(job["result"]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("({} bytes)", PNG.len())));
    assert_eq!(
        job["result"]["product_candidates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(mock_calls("ocr").await.len() > before);

    let mut broken = PNG.to_vec();
    broken.extend(b"FAIL-OCR");
    let bad = uploaded(&owner, "broken.png", "image/png", &broken).await;
    let job = run_job(&owner, &bad, "ocr").await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["attempts"], 3);
    assert!(job["error"].as_str().unwrap().contains("500"), "{job}");
    post(&format!("/api/v1/media/{id}/process"))
        .token(&owner.access)
        .json(json!({"kind": "resize"}))
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn products_are_validated_and_skus_are_unique_per_tenant() {
    let owner = register().await;
    let new = |sku: &str| {
        json!({"name": "Oak board", "sku": sku, "price": 1990, "currency": "EUR", "quantity": 5,
                                 "category": "kitchen", "attributes": {"wood": "oak"}, "status": "active"})
    };
    let r = post("/api/v1/products")
        .token(&owner.access)
        .json(new("OAK-1"))
        .send()
        .await
        .expect(201);
    let id = r.data()["id"].as_str().unwrap().to_string();
    post("/api/v1/products")
        .token(&owner.access)
        .json(new("OAK-1"))
        .send()
        .await
        .problem(409, "conflict");
    let other = register().await;
    post("/api/v1/products")
        .token(&other.access)
        .json(new("OAK-1"))
        .send()
        .await
        .expect(201);
    post("/api/v1/products")
        .token(&owner.access)
        .json(json!({"name": "x", "sku": "X 1", "price": -5, "currency": "EURO"}))
        .send()
        .await
        .problem(422, "validation_failed");
    post("/api/v1/products")
        .token(&owner.access)
        .json(json!({"name": "x", "sku": "X1", "price": 1.5, "currency": "EUR"}))
        .send()
        .await
        .problem(422, "validation_failed");
    let theirs = uploaded(&other, "label.png", "image/png", PNG).await;
    patch(&format!("/api/v1/products/{id}"))
        .token(&owner.access)
        .json(json!({"media_ids": [theirs]}))
        .send()
        .await
        .problem(422, "validation_failed");
    let mine = uploaded(&owner, "label.png", "image/png", PNG).await;
    let updated = patch(&format!("/api/v1/products/{id}"))
        .token(&owner.access)
        .json(json!({"price": 2490, "category": null, "media_ids": [mine]}))
        .send()
        .await
        .expect(200);
    assert_eq!(updated.data()["price"], 2490);
    assert!(updated.data()["category"].is_null());
    assert_eq!(updated.data()["attributes"], json!({"wood": "oak"}));
    delete(&format!("/api/v1/media/{mine}"))
        .token(&owner.access)
        .send()
        .await
        .problem(409, "conflict");
    let active = get("/api/v1/products?status=active")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(active.data().as_array().unwrap().len(), 1);
    delete(&format!("/api/v1/products/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    get(&format!("/api/v1/products/{id}"))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn another_tenants_media_links_jobs_and_products_are_not_found() {
    let owner = register().await;
    let id = uploaded(&owner, "price-list.pdf", "application/pdf", PDF).await;
    let job = run_job(&owner, &id, "extract_text").await;
    let job_id = job["id"].as_str().unwrap();
    let product = post("/api/v1/products")
        .token(&owner.access)
        .json(json!({"name": "Mine", "sku": "MINE-1", "price": 100, "currency": "EUR"}))
        .send()
        .await
        .expect(201);
    let pid = product.data()["id"].as_str().unwrap();
    let other = register().await;
    for path in [
        format!("/api/v1/media/{id}"),
        format!("/api/v1/media/{id}/download"),
        format!("/api/v1/jobs/{job_id}"),
        format!("/api/v1/products/{pid}"),
    ] {
        get(&path)
            .token(&other.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    post(&format!("/api/v1/media/{id}/links"))
        .token(&other.access)
        .json(json!({"expires_in": 60}))
        .send()
        .await
        .problem(404, "not_found");
    post(&format!("/api/v1/media/{id}/process"))
        .token(&other.access)
        .json(json!({"kind": "extract_text"}))
        .send()
        .await
        .problem(404, "not_found");
    post("/api/v1/products/from-candidates")
        .token(&other.access)
        .json(json!({"job_id": job_id, "candidates": [0]}))
        .send()
        .await
        .problem(404, "not_found");
    delete(&format!("/api/v1/media/{id}"))
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    let listed = get("/api/v1/media")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert!(listed.data().as_array().unwrap().is_empty());
}

async fn start_upload(s: &Session, filename: &str, content_type: &str) -> String {
    let r = post("/api/v1/media/uploads")
        .token(&s.access)
        .json(json!({"filename": filename, "content_type": content_type}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["status"], "open");
    r.data()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_multipart_upload_assembles_parts_into_one_checked_file() {
    let owner = register().await;
    let id = start_upload(&owner, "big.csv", "text/csv").await;
    let put_part = |n: u32, body: Vec<u8>, token: String| {
        let path = format!("/api/v1/media/uploads/{id}/parts/{n}");
        async move {
            put(&path)
                .token(&token)
                .raw(&body, "application/octet-stream")
                .send()
                .await
        }
    };
    // R2 wants every part but the last to be at least 5 MiB: a small first part is refused at
    // completion with a field error, and uploading that part number again replaces it.
    let second = "Oak board,19.90\n";
    put_part(2, second.as_bytes().to_vec(), owner.access.clone())
        .await
        .expect(200);
    put_part(1, b"name,price\n".to_vec(), owner.access.clone())
        .await
        .expect(200);
    let complete = || async {
        post(&format!("/api/v1/media/uploads/{id}/complete"))
            .token(&owner.access)
            .send()
            .await
    };
    let small = complete().await.problem(422, "validation_failed");
    assert_eq!(small.body["errors"][0]["field"], "parts", "{}", small.text);

    // 4 KiB into the file (where completion sniffs the type) falls inside the "è" of a line.
    let mut first = "name,price\n".to_string() + &"Crème brûlée dish,4.50\n".repeat(220_000);
    first.truncate(first[..5 * 1024 * 1024 - 1].rfind('\n').unwrap() + 1);
    first.push_str(&"z".repeat(5 * 1024 * 1024 - 1 - first.len()));
    first.push('\n');
    assert_eq!(first.len(), 5 * 1024 * 1024);
    let after = put_part(1, first.clone().into_bytes(), owner.access.clone())
        .await
        .expect(200);
    assert_eq!(after.data()["parts"], json!([1, 2]));
    put_part(0, b"x".to_vec(), owner.access.clone())
        .await
        .problem(422, "validation_failed");
    let done = complete().await.expect(201);
    let whole = format!("{first}{second}");
    assert_eq!(done.data()["size"], whole.len());
    assert_eq!(done.data()["content_type"], "text/csv");
    assert_eq!(
        done.data()["sha256"],
        hex::encode(sha2::Sha256::digest(whole.as_bytes())).as_str()
    );
    let media_id = done.data()["id"].as_str().unwrap();
    let tail = get(&format!("/api/v1/media/{media_id}/download"))
        .token(&owner.access)
        .header("Range", "bytes=-16")
        .send()
        .await
        .expect(206);
    assert_eq!(tail.bytes, second.as_bytes());
    complete().await.problem(409, "conflict");

    // Refused parts are read out, not left hanging: the next requests still get answers.
    let other = register().await;
    put_part(3, vec![b'x'; 2 * 1024 * 1024], other.access.clone())
        .await
        .problem(404, "not_found");
    post(&format!("/api/v1/media/uploads/{id}/complete"))
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    post("/api/v1/media/uploads")
        .token(&owner.access)
        .json(json!({"filename": "x.zip", "content_type": "application/zip"}))
        .send()
        .await
        .problem(422, "validation_failed");

    // Bytes that are not what the upload said: 415 at completion, and the upload is over.
    let fake = start_upload(&owner, "scan.pdf", "application/pdf").await;
    put(&format!("/api/v1/media/uploads/{fake}/parts/1"))
        .token(&owner.access)
        .raw(b"MZ\x90\x00 not a pdf", "application/octet-stream")
        .send()
        .await
        .expect(200);
    post(&format!("/api/v1/media/uploads/{fake}/complete"))
        .token(&owner.access)
        .send()
        .await
        .problem(415, "unsupported_media_type");
    delete(&format!("/api/v1/media/uploads/{fake}"))
        .token(&owner.access)
        .send()
        .await
        .problem(409, "conflict");

    // Text that turns binary past the sniffed first 4 KiB is refused too.
    let tampered = start_upload(&owner, "late.csv", "text/csv").await;
    let mut body = "name,price\n".to_string().into_bytes();
    body.resize(10_000, b'a');
    body[9_000] = 0;
    put(&format!("/api/v1/media/uploads/{tampered}/parts/1"))
        .token(&owner.access)
        .raw(&body, "application/octet-stream")
        .send()
        .await
        .expect(200);
    post(&format!("/api/v1/media/uploads/{tampered}/complete"))
        .token(&owner.access)
        .send()
        .await
        .problem(415, "unsupported_media_type");

    // Abort: the upload ends and its parts are dropped.
    let later = start_upload(&owner, "later.png", "image/png").await;
    delete(&format!("/api/v1/media/uploads/{later}"))
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    delete(&format!("/api/v1/media/uploads/{later}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    put(&format!("/api/v1/media/uploads/{later}/parts/1"))
        .token(&owner.access)
        .raw(&vec![0u8; 2 * 1024 * 1024], "application/octet-stream")
        .send()
        .await
        .problem(409, "conflict");
    get("/api/v1/media")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
}

/// The issue's "done": the seeded shop tenant's files, finished job and products are there, and
/// its owner uploads a supplier price list, extracts it, turns candidates into products and
/// shares an expiring link to the file — all through the documented API.
#[tokio::test]
async fn the_demo_shop_turns_a_supplier_price_list_into_products_and_shares_it() {
    let s = server();
    let owner = session_from(
        login("owner@aldershop.demo", &s.demo_password)
            .await
            .expect(200)
            .data(),
        "owner@aldershop.demo",
        &s.demo_password,
    );
    let files = get("/api/v1/media?limit=100")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(files.data().as_array().unwrap().len() >= 3);
    let seeded = get("/api/v1/media/med_demo_price_list_pdf/download")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(seeded.bytes, PDF);
    let job = get("/api/v1/jobs/job_demo_price_list")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(job.data()["status"], "completed");
    assert_eq!(
        job.data()["result"]["product_candidates"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let products = get("/api/v1/products?limit=100")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(products
        .data()
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["source_job_id"] == "job_demo_price_list"));

    let id = uploaded(&owner, "supplier.pdf", "application/pdf", PDF).await;
    let job = run_job(&owner, &id, "extract_text").await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["result"]["product_candidates"][1]["price"], 3490);
    let made = post("/api/v1/products/from-candidates")
        .token(&owner.access)
        .json(json!({"job_id": job["id"], "candidates": [0, 1]}))
        .send()
        .await
        .expect(201);
    let names: Vec<&str> = made
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ceramic mug blue", "Stoneware teapot 1.2 l"]);
    // The seeded coasters already carry the line's SKU.
    post("/api/v1/products/from-candidates")
        .token(&owner.access)
        .json(json!({"job_id": job["id"], "candidates": [2]}))
        .send()
        .await
        .problem(409, "conflict");

    let link = post(&format!("/api/v1/media/{id}/links"))
        .token(&owner.access)
        .json(json!({"expires_in": 3600}))
        .send()
        .await
        .expect(201);
    let url = link.data()["url"].as_str().unwrap();
    let path = &url[url.find("/api/v1/links/").unwrap()..];
    let shared = get(path).send().await.expect(200);
    assert_eq!(shared.bytes, PDF);
}

#[tokio::test]
async fn unfinished_uploads_count_toward_storage_and_are_limited_in_number() {
    let owner = register().await;
    // The harness's storage quota is 12 MiB; two open uploads holding a 5 MiB part each use 10.
    let five = vec![b'a'; 5 * 1024 * 1024];
    let mut open = Vec::new();
    for name in ["a.csv", "b.csv"] {
        let id = start_upload(&owner, name, "text/csv").await;
        put(&format!("/api/v1/media/uploads/{id}/parts/1"))
            .token(&owner.access)
            .raw(&five, "application/octet-stream")
            .send()
            .await
            .expect(200);
        open.push(id);
    }
    let three = vec![b'b'; 3 * 1024 * 1024];
    let single = || {
        post("/api/v1/media?filename=more.csv")
            .token(&owner.access)
            .raw(&three, "text/csv")
            .send()
    };
    single().await.problem(402, "quota_exceeded");
    // Another part past the quota is refused too; replacing a part by one as big is not.
    let third = start_upload(&owner, "c.csv", "text/csv").await;
    put(&format!("/api/v1/media/uploads/{third}/parts/1"))
        .token(&owner.access)
        .raw(&three, "application/octet-stream")
        .send()
        .await
        .problem(402, "quota_exceeded");
    put(&format!("/api/v1/media/uploads/{}/parts/1", open[0]))
        .token(&owner.access)
        .raw(&five, "application/octet-stream")
        .send()
        .await
        .expect(200);
    // Aborting one frees its parts.
    delete(&format!("/api/v1/media/uploads/{}", open[0]))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    single().await.expect(201);

    // At most ten open at once: b.csv, c.csv and eight more.
    for n in 0..8 {
        start_upload(&owner, &format!("n{n}.png"), "image/png").await;
    }
    post("/api/v1/media/uploads")
        .token(&owner.access)
        .json(json!({"filename": "eleventh.png", "content_type": "image/png"}))
        .send()
        .await
        .problem(409, "conflict");
    delete(&format!("/api/v1/media/uploads/{third}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    start_upload(&owner, "now-it-fits.png", "image/png").await;
    // Another tenant's count is its own.
    let other = register().await;
    start_upload(&other, "mine.png", "image/png").await;
}

#[tokio::test]
async fn the_sweep_aborts_uploads_idle_for_a_day() {
    let owner = register().await;
    let idle = start_upload(&owner, "idle.csv", "text/csv").await;
    let fresh = start_upload(&owner, "fresh.csv", "text/csv").await;
    for id in [&idle, &fresh] {
        put(&format!("/api/v1/media/uploads/{id}/parts/1"))
            .token(&owner.access)
            .raw(b"name,price\nmug,1\n", "application/octet-stream")
            .send()
            .await
            .expect(200);
    }
    let sql = format!(
        "UPDATE media_uploads SET updated_at = '2020-01-01T00:00:00.000Z' WHERE id = '{idle}'"
    );
    d1_alone(move || server().d1(&sql)).await;
    get("/__scheduled?cron=*/5+*+*+*+*")
        .send()
        .await
        .expect(200);
    let status = |id: &str| {
        let sql = format!("SELECT status FROM media_uploads WHERE id = '{id}'");
        d1_alone(move || server().d1(&sql)[0]["status"].as_str().unwrap().to_string())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status(&idle).await != "aborted" {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle upload was not aborted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    }
    assert_eq!(status(&fresh).await, "open");
    put(&format!("/api/v1/media/uploads/{idle}/parts/2"))
        .token(&owner.access)
        .raw(b"more", "application/octet-stream")
        .send()
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn a_non_ascii_file_name_downloads_with_an_encoded_name() {
    let owner = register().await;
    let up = post("/api/v1/media?filename=prix%20%C3%A9t%C3%A9%20%E6%97%A5%E6%9C%AC.csv")
        .token(&owner.access)
        .raw(CSV, "text/csv")
        .send()
        .await
        .expect(201);
    assert_eq!(up.data()["filename"], "prix été 日本.csv");
    let id = up.data()["id"].as_str().unwrap();
    let down = get(&format!("/api/v1/media/{id}/download"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        down.header("content-disposition"),
        Some("inline; filename=\"prix _t_ __.csv\"; filename*=UTF-8''prix%20%C3%A9t%C3%A9%20%E6%97%A5%E6%9C%AC.csv")
    );
    assert_eq!(down.bytes, CSV);
}

#[tokio::test]
async fn candidates_become_products_only_through_the_product_checks() {
    let owner = register().await;
    // A parser reads what the file says: a price beyond the catalogue's range included.
    let list = "product,price\nGold bar,99999999999 EUR\nLinen napkin,4.50 EUR\n";
    let up = post("/api/v1/media?filename=odd.csv")
        .token(&owner.access)
        .raw(list.as_bytes(), "text/csv")
        .send()
        .await
        .expect(201);
    let job = run_job(&owner, up.data()["id"].as_str().unwrap(), "extract_text").await;
    let candidates = job["result"]["product_candidates"].as_array().unwrap();
    let gold = candidates
        .iter()
        .position(|c| c["name"] == "Gold bar")
        .expect("the gold bar is a candidate");
    assert!(candidates[gold]["price"].as_i64().unwrap() > 1_000_000_000_000);
    let r = post("/api/v1/products/from-candidates")
        .token(&owner.access)
        .json(json!({"job_id": job["id"], "candidates": [gold]}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(
        r.body["errors"][0]["field"], "candidates[0].price",
        "{}",
        r.text
    );
    let listed = get("/api/v1/products")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(
        listed.data().as_array().unwrap().is_empty(),
        "nothing was made"
    );
}
