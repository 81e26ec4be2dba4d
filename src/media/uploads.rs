//! Files larger than one request: R2 multipart uploads through the API. Create an upload, PUT
//! its parts (each at least 5 MiB except the last, as R2 requires), then complete it; the worker
//! then checks the assembled file like a single upload (type by magic number, size, quota) and
//! hashes it while streaming it back, so it never holds the whole file.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use worker::{Data, Env, FixedLengthStream, HttpMetadata, Range, UploadedPart};

use super::{
    body_length_error, bytes, clean_filename, record, used_storage_allows, within_file_limit,
    NewMedia, SNIFF_BYTES,
};
use crate::args;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::{bindings, clock, ids};

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/media/uploads", Access::User, handler!(create))
            .doc(
                "media",
                "Start a multipart upload for a large file (at most 10 open per tenant: 409 beyond; \
                 parts count toward storage until completed; aborted after 24 h without a part)",
            )
            .body("CreateUpload")
            .created("Upload"),
        Route::put(
            "/api/v1/media/uploads/:id/parts/:part",
            Access::User,
            handler!(put_part),
        )
        .doc(
            "media",
            "Upload part 1–10000 (raw body, streamed; every part but the last ≥ 5 MiB and of one size)",
        )
        .ok("Upload")
        .streamed()
        .metered(),
        Route::post(
            "/api/v1/media/uploads/:id/complete",
            Access::User,
            handler!(complete),
        )
        .doc(
            "media",
            "Assemble the parts into a media file (checked like a single upload; 422 when part sizes break R2's rules)",
        )
        .created("Media")
        .metered(),
        Route::delete("/api/v1/media/uploads/:id", Access::User, handler!(abort))
            .doc("media", "Abort a multipart upload")
            .no_content(),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    #[schema(min_length = 1, max_length = 255)]
    pub filename: String,
    /// What the file will be; checked against its bytes on completion.
    #[schema(pattern = "^(image/(png|jpeg|gif|webp)|application/pdf|text/(plain|csv))(;.*)?$")]
    pub content_type: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Upload {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    /// `open`, `completed` or `aborted`.
    pub status: String,
    /// Part numbers received so far.
    pub parts: Vec<u16>,
    /// The media file, once completed.
    pub media_id: Option<String>,
    pub created_at: String,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    r2_key: String,
    upload_id: String,
    filename: String,
    content_type: String,
    parts: String,
    status: String,
    media_id: Option<String>,
    created_at: String,
}

impl Row {
    fn parts(&self) -> Map<String, Value> {
        serde_json::from_str(&self.parts).unwrap_or_default()
    }

    fn view(&self) -> Upload {
        let mut parts: Vec<u16> = self.parts().keys().filter_map(|k| k.parse().ok()).collect();
        parts.sort_unstable();
        Upload {
            id: self.id.clone(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            status: self.status.clone(),
            parts,
            media_id: self.media_id.clone(),
            created_at: self.created_at.clone(),
        }
    }
}

async fn load(db: &Db, tenant_id: &str, id: &str) -> Result<Row> {
    db.one(
        "SELECT id, r2_key, upload_id, filename, content_type, parts, status, media_id, created_at \
         FROM media_uploads WHERE id = ?1 AND tenant_id = ?2",
        &args![id, tenant_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

/// Unfinished uploads a tenant may have at once (each holds R2 parts until completed).
const MAX_OPEN_UPLOADS: i64 = 10;

/// How long an upload may sit without a new part before the sweep aborts it.
pub const IDLE_UPLOAD_MS: i64 = 24 * 3600 * 1000;

fn too_many_open() -> AppError {
    AppError::Conflict(format!(
        "At most {MAX_OPEN_UPLOADS} uploads may be open at once; complete or abort one first."
    ))
}

fn open_only(row: &Row) -> Result<()> {
    if row.status == "open" {
        Ok(())
    } else {
        Err(AppError::Conflict(format!("The upload is {}.", row.status)))
    }
}

/// R2's smallest part (all but the last).
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// R2 completes an upload only when every part but the last is at least 5 MiB and all of those
/// have the same size; say which part breaks that instead of letting R2 fail the request.
fn part_sizes_problem(sizes: &[(u16, u64)]) -> Option<String> {
    let (_, init) = sizes.split_last()?;
    let &(first_n, first_size) = init.first()?;
    if first_size < MIN_PART_BYTES {
        return Some(format!(
            "part {first_n} has {first_size} bytes; every part but the last needs at least {MIN_PART_BYTES}"
        ));
    }
    init.iter().find(|(_, s)| *s != first_size).map(|(n, s)| {
        format!("part {n} has {s} bytes; every part but the last must have the same size as part {first_n} ({first_size})")
    })
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateUpload = cx.json()?;
    let declared = bytes::essence(&body.content_type);
    if !bytes::ALLOWED.contains(&declared.as_str()) {
        return Err(AppError::field(
            "content_type",
            format!("must be one of {}", bytes::ALLOWED.join(", ")),
        ));
    }
    let tenant_id = cx.tenant_id()?;
    let db = cx.db()?;
    #[derive(Deserialize)]
    struct Open {
        open: i64,
    }
    let open = db
        .one::<Open>(
            "SELECT COUNT(*) AS open FROM media_uploads WHERE tenant_id = ?1 AND status = 'open'",
            &args![tenant_id],
        )
        .await?
        .map_or(0, |o| o.open);
    if open >= MAX_OPEN_UPLOADS {
        return Err(too_many_open());
    }
    let media_id = ids::new_id("med");
    let key = format!("tenants/{tenant_id}/media/{media_id}");
    let bucket = cx.env.bucket(bindings::MEDIA)?;
    let upload = bucket
        .create_multipart_upload(&key)
        .http_metadata(HttpMetadata {
            content_type: Some(declared.clone()),
            ..Default::default()
        })
        .execute()
        .await?;
    let id = ids::new_id("upl");
    let now = cx.now();
    // The count is checked again in the insert itself: of concurrent creations past the
    // limit, only those that fit are recorded; the others' R2 uploads are aborted at once.
    let inserted = db
        .run(
            "INSERT INTO media_uploads (id, tenant_id, r2_key, upload_id, filename, content_type, \
             media_id, created_by, created_at, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?8 \
             WHERE (SELECT COUNT(*) FROM media_uploads WHERE tenant_id = ?2 AND status = 'open') < ?9",
            &args![
                id.as_str(),
                tenant_id,
                key.as_str(),
                upload.upload_id().await,
                clean_filename(&body.filename),
                declared,
                cx.principal()?.user_id.clone(),
                now,
                MAX_OPEN_UPLOADS
            ],
        )
        .await?;
    if inserted == 0 {
        upload.abort().await?;
        return Err(too_many_open());
    }
    let row = load(&db, tenant_id, &id).await?;
    Reply::created(&row.view(), Some(format!("/api/v1/media/uploads/{id}")))
}

async fn put_part(cx: Ctx) -> Result<Reply> {
    let part: u16 = cx
        .param("part")
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| AppError::field("part", "must be a part number from 1 to 10000"))?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = load(&db, tenant_id, cx.param("id")).await?;
    open_only(&row)?;
    // A part with a Content-Length streams through; one without it was read first. Taken only
    // now: a refused part's body is left to the dispatcher, which reads it out.
    let incoming = cx.stream_length().unwrap_or(cx.body.len() as u64);
    // A part replacing an earlier one of the same number frees that one's bytes.
    let replaced = row
        .parts()
        .get(&part.to_string())
        .and_then(|p| p["size"].as_u64())
        .unwrap_or(0);
    used_storage_allows(&cx, &db, tenant_id, incoming.saturating_sub(replaced), None).await?;
    let (data, size): (Data, u64) = match cx.take_stream() {
        Some((stream, length)) => (FixedLengthStream::wrap(stream, length).into(), length),
        None if cx.body.is_empty() => {
            return Err(AppError::field("body", "a part cannot be empty"))
        }
        None => (cx.body.clone().into(), cx.body.len() as u64),
    };
    let upload = cx
        .env
        .bucket(bindings::MEDIA)?
        .resume_multipart_upload(&row.r2_key, &row.upload_id)?;
    let uploaded = upload
        .upload_part(part, data)
        .await
        .map_err(body_length_error)?;
    // Each part is its own key in the JSON map, so concurrent parts do not overwrite each other.
    db.run(
        "UPDATE media_uploads SET parts = json_set(parts, ?3, json(?4)), updated_at = ?5 \
         WHERE id = ?1 AND tenant_id = ?2",
        &args![
            row.id.as_str(),
            tenant_id,
            format!("$.\"{part}\""),
            json!({"etag": uploaded.etag(), "size": size}).to_string(),
            cx.now()
        ],
    )
    .await?;
    Reply::ok(&load(&db, tenant_id, &row.id).await?.view())
}

async fn complete(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let row = load(&db, &tenant_id, cx.param("id")).await?;
    open_only(&row)?;
    let parts = row.parts();
    if parts.is_empty() {
        return Err(AppError::Conflict("Upload at least one part first.".into()));
    }
    let mut sizes: Vec<(u16, u64)> = parts
        .iter()
        .filter_map(|(n, p)| Some((n.parse().ok()?, p["size"].as_u64()?)))
        .collect();
    sizes.sort_unstable();
    if let Some(message) = part_sizes_problem(&sizes) {
        return Err(AppError::field("parts", message));
    }
    let size: u64 = sizes.iter().map(|(_, s)| s).sum();
    within_file_limit(&cx, size)?;
    used_storage_allows(&cx, &db, &tenant_id, size, Some(&row.id)).await?;
    let mut uploaded: Vec<(u16, String)> = parts
        .iter()
        .filter_map(|(n, p)| Some((n.parse().ok()?, p["etag"].as_str()?.to_string())))
        .collect();
    uploaded.sort_unstable();
    let bucket = cx.env.bucket(bindings::MEDIA)?;
    bucket
        .resume_multipart_upload(&row.r2_key, &row.upload_id)?
        .complete(
            uploaded
                .into_iter()
                .map(|(n, etag)| UploadedPart::new(n, etag)),
        )
        .await?;

    // Check the assembled file as a single upload would be checked, reading it in chunks.
    let head = bucket
        .get(&row.r2_key)
        .range(Range::Prefix {
            length: SNIFF_BYTES as u64,
        })
        .execute()
        .await?
        .ok_or(AppError::NotFound)?
        .body()
        .ok_or(AppError::NotFound)?
        .bytes()
        .await?;
    let sniffed = bytes::sniff_prefix(&head, &row.content_type, head.len() as u64 >= size)
        .filter(|s| bytes::declared_matches(&row.content_type, s));
    let refuse = || async {
        bucket.delete(&row.r2_key).await?;
        db.run(
            "UPDATE media_uploads SET status = 'aborted', updated_at = ?2 WHERE id = ?1",
            &args![row.id.as_str(), cx.now()],
        )
        .await?;
        Err(AppError::UnsupportedMediaType(format!(
            "The assembled file is not {}.",
            row.content_type
        )))
    };
    let Some(sniffed) = sniffed else {
        return refuse().await;
    };
    let object = bucket
        .get(&row.r2_key)
        .execute()
        .await?
        .ok_or(AppError::NotFound)?;
    let mut stream = object.body().ok_or(AppError::NotFound)?.stream()?;
    let mut digest = bytes::FileDigest::new(sniffed);
    while let Some(chunk) = stream.next().await {
        digest.feed(&chunk?);
    }
    let Some(sha) = digest.finish() else {
        return refuse().await;
    };
    // The object key was made from the media id when the upload was created.
    let media_id = row
        .r2_key
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let completed = db.stmt(
        "UPDATE media_uploads SET status = 'completed', media_id = ?2, updated_at = ?3 WHERE id = ?1",
        &args![row.id.as_str(), media_id.as_str(), cx.now()],
    )?;
    let new = NewMedia {
        id: media_id,
        key: row.r2_key.clone(),
        filename: row.filename.clone(),
        content_type: sniffed,
        size,
        attributes: json!({}),
        multipart: true,
    };
    record(&cx, &db, new, sha, vec![completed]).await
}

/// The sweep's part: aborts uploads that got no part for `IDLE_UPLOAD_MS` (R2 drops their
/// parts) and marks them aborted, so forgotten uploads stop holding storage and open slots.
/// Returns how many it aborted; one that R2 fails to abort is left for the next sweep.
pub async fn abort_idle(env: &Env, db: &Db, now_ms: i64) -> Result<usize> {
    #[derive(Deserialize)]
    struct Idle {
        id: String,
        r2_key: String,
        upload_id: String,
    }
    let idle: Vec<Idle> = db
        .all(
            "SELECT id, r2_key, upload_id FROM media_uploads WHERE status = 'open' \
             AND updated_at < ?1 LIMIT 100",
            &args![clock::rfc3339(now_ms - IDLE_UPLOAD_MS)],
        )
        .await?;
    let bucket = env.bucket(bindings::MEDIA)?;
    let mut aborted = 0;
    for u in idle {
        let gone = match bucket.resume_multipart_upload(&u.r2_key, &u.upload_id) {
            Ok(upload) => upload.abort().await,
            Err(e) => Err(e),
        };
        if let Err(e) = gone {
            worker::console_error!("aborting idle upload {} failed: {e}", u.id);
            continue;
        }
        aborted += db
            .run(
                "UPDATE media_uploads SET status = 'aborted', updated_at = ?2 \
                 WHERE id = ?1 AND status = 'open'",
                &args![u.id.as_str(), clock::rfc3339(now_ms)],
            )
            .await? as usize;
    }
    Ok(aborted)
}

async fn abort(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = load(&db, tenant_id, cx.param("id")).await?;
    open_only(&row)?;
    cx.env
        .bucket(bindings::MEDIA)?
        .resume_multipart_upload(&row.r2_key, &row.upload_id)?
        .abort()
        .await?;
    db.run(
        "UPDATE media_uploads SET status = 'aborted', updated_at = ?3 WHERE id = ?1 AND tenant_id = ?2",
        &args![row.id.as_str(), tenant_id, cx.now()],
    )
    .await?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB5: u64 = MIN_PART_BYTES;

    #[test]
    fn part_sizes_follow_r2s_rules() {
        assert_eq!(part_sizes_problem(&[(1, 10)]), None);
        assert_eq!(part_sizes_problem(&[(1, MIB5), (2, 1)]), None);
        assert_eq!(
            part_sizes_problem(&[(1, MIB5), (2, MIB5), (3, MIB5 + 9)]),
            None
        );
        let small = part_sizes_problem(&[(1, 1024), (2, 16)]).unwrap();
        assert!(small.starts_with("part 1 has 1024 bytes"), "{small}");
        let uneven = part_sizes_problem(&[(1, MIB5), (2, MIB5 + 1), (3, 1)]).unwrap();
        assert!(uneven.starts_with("part 2 has"), "{uneven}");
    }
}
