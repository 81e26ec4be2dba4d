//! Module D: media files in R2 (metadata in D1), checked against their bytes, downloadable
//! with `Range`, shareable through expiring HMAC-signed links; text extraction and OCR jobs
//! (`jobs`) that propose product candidates (`candidates`).

pub mod bytes;
pub mod candidates;
pub mod job_state;
pub mod jobs;
#[cfg(feature = "jobs")]
pub mod runner;
pub mod uploads;

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use worker::{D1PreparedStatement, Env, FixedLengthStream, HttpMetadata, Range};

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::crypto::{constant_time_eq, hmac_sha256, sha256_hex};
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;
use crate::platform::{bindings, clock, ids};

/// `?type=`: a family of files, or one exact type of `bytes::ALLOWED`.
const KINDS: [&str; 3 + bytes::ALLOWED.len()] = {
    let mut kinds = [""; 3 + bytes::ALLOWED.len()];
    kinds[0] = "image";
    kinds[1] = "document";
    kinds[2] = "text";
    let mut i = 0;
    while i < bytes::ALLOWED.len() {
        kinds[3 + i] = bytes::ALLOWED[i];
        i += 1;
    }
    kinds
};

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "type",
        &KINDS,
        "`image` (image/*), `document` (PDF), `text` (text/*), or one exact content type.",
    ),
    q("from", "string", "Uploaded at or after (RFC 3339)."),
    q("to", "string", "Uploaded before (RFC 3339)."),
];

const UPLOAD_QUERY: [QueryDoc; 1] = [q(
    "filename",
    "string",
    "The file's name, for raw (non-multipart) uploads.",
)];

pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route::post("/api/v1/media", Access::User, handler!(upload))
            .doc(
                "media",
                "Upload a file (multipart `file` + optional `attributes`, or the raw body with its Content-Type; a raw body with a Content-Length is streamed into storage)",
            )
            .created("Media")
            .query(&UPLOAD_QUERY)
            .streamed()
            .metered(),
        Route::get("/api/v1/media", Access::User, handler!(list))
            .doc("media", "The tenant's files, newest first")
            .list("Media")
            .query(&LIST_QUERY),
        Route::get("/api/v1/media/:id", Access::User, handler!(get))
            .doc("media", "One file's metadata")
            .ok("Media"),
        Route::get("/api/v1/media/:id/download", Access::User, handler!(download))
            .doc(
                "media",
                "The file's bytes (supports a single `Range`: 206 / 416)",
            )
            .file(),
        Route::delete("/api/v1/media/:id", Access::User, handler!(remove))
            .doc("media", "Delete a file and its stored object")
            .no_content(),
        Route::post("/api/v1/media/:id/links", Access::User, handler!(create_link))
            .doc(
                "media",
                "An expiring link that downloads the file without logging in",
            )
            .body("CreateLink")
            .created("MediaLink"),
        Route::delete(
            "/api/v1/media/:id/links/:link_id",
            Access::User,
            handler!(revoke_link),
        )
        .doc("media", "Revoke a link before it expires")
        .no_content(),
        Route::get("/api/v1/links/:token", Access::Public, handler!(follow_link))
            .doc(
                "media",
                "A shared link: the file while the link is valid, 403 when expired, revoked or tampered",
            )
            .file(),
    ];
    routes.extend(jobs::routes());
    routes.extend(uploads::routes());
    routes
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Media {
    pub id: String,
    pub filename: String,
    /// Sniffed from the bytes: image/png|jpeg|gif|webp, application/pdf, text/plain|csv.
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub created_at: String,
}

#[derive(Deserialize)]
struct MediaRow {
    id: String,
    filename: String,
    content_type: String,
    size: i64,
    sha256: String,
    attributes: String,
    created_at: String,
    r2_key: String,
}

impl MediaRow {
    fn view(&self) -> Media {
        Media {
            id: self.id.clone(),
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            attributes: serde_json::from_str(&self.attributes).unwrap_or(json!({})),
            created_at: self.created_at.clone(),
        }
    }
}

const COLUMNS: &str = "media.id, media.filename, media.content_type, media.size, media.sha256, \
     media.attributes, media.created_at, media.r2_key";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    /// Seconds until the link stops working (1–604800).
    #[schema(minimum = 1, maximum = 604800)]
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MediaLink {
    pub id: String,
    pub media_id: String,
    pub url: String,
    pub expires_at: String,
}

async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<MediaRow> {
    db.one(
        &format!("SELECT {COLUMNS} FROM media WHERE media.id = ?1 AND media.tenant_id = ?2"),
        &args![id, tenant_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

/// The metadata and R2 key of a tenant's file (for jobs and products).
pub async fn object_key(db: &Db, tenant_id: &str, id: &str) -> Result<(Media, String)> {
    let row = find(db, tenant_id, id).await?;
    Ok((row.view(), row.r2_key))
}

fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    if cleaned.trim().is_empty() {
        "upload".into()
    } else {
        cleaned.trim().to_string()
    }
}

async fn upload(cx: Ctx) -> Result<Reply> {
    if let Some(length) = cx.stream_length() {
        return upload_streamed(cx, length).await;
    }
    let content_type = cx.header("Content-Type").unwrap_or_default();
    let (data, declared, filename, attributes): (&[u8], String, String, Value) =
        if bytes::essence(&content_type) == "multipart/form-data" {
            let parts = bytes::multipart(&content_type, &cx.body).map_err(AppError::BadRequest)?;
            let file = parts
                .iter()
                .find(|p| p.name == "file")
                .ok_or_else(|| AppError::field("file", "is required"))?;
            let attributes = match parts.iter().find(|p| p.name == "attributes") {
                None => json!({}),
                Some(p) => match serde_json::from_slice::<Value>(p.data) {
                    Ok(v @ Value::Object(_)) if p.data.len() <= 16 * 1024 => v,
                    _ => {
                        return Err(AppError::field(
                            "attributes",
                            "must be a JSON object of at most 16 KB",
                        ))
                    }
                },
            };
            (
                file.data,
                file.content_type.clone().unwrap_or_default(),
                file.filename.clone().unwrap_or_else(|| "upload".into()),
                attributes,
            )
        } else {
            (&cx.body, content_type.clone(), raw_filename(&cx), json!({}))
        };
    if data.is_empty() {
        return Err(AppError::field("file", "is empty"));
    }
    let size = data.len() as u64;
    within_file_limit(&cx, size)?;
    let sniffed = checked_type(data, &declared, true)?;
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    used_storage_allows(&cx, &db, &tenant_id, size, None).await?;
    let new = NewMedia::new(&tenant_id, &filename, sniffed, size, attributes);
    cx.env
        .bucket(bindings::MEDIA)?
        .put(&new.key, data.to_vec())
        .http_metadata(new.http_metadata())
        .execute()
        .await?;
    record(&cx, &db, new, sha256_hex(data), Vec::new()).await
}

fn raw_filename(cx: &Ctx) -> String {
    cx.query_nonempty("filename")
        .unwrap_or("upload")
        .to_string()
}

/// Bytes this far into a file decide its type (and, for text, that it looks like text).
const SNIFF_BYTES: usize = 4096;

/// A raw body streamed into R2 without holding it: the first few KiB decide the type before
/// anything is stored, the rest is hashed on its way through.
async fn upload_streamed(cx: Ctx, length: u64) -> Result<Reply> {
    let declared = cx.header("Content-Type").unwrap_or_default();
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    used_storage_allows(&cx, &db, &tenant_id, length, None).await?;
    let Some((mut stream, _)) = cx.take_stream() else {
        return Err(AppError::internal("the streamed body was taken twice"));
    };
    let mut head = Vec::new();
    while head.len() < SNIFF_BYTES {
        match stream.next().await {
            Some(chunk) => head.extend(chunk?),
            None => break,
        }
    }
    let whole = head.len() as u64 >= length;
    let sniffed = match checked_type(&head, &declared, whole) {
        Ok(t) => t,
        Err(e) => {
            // Read the rest before answering: a body abandoned half-read stalls the connection
            // (local workerd); draining costs reading, never holding.
            while let Some(Ok(_)) = stream.next().await {}
            return Err(e);
        }
    };
    let new = NewMedia::new(&tenant_id, &raw_filename(&cx), sniffed, length, json!({}));
    // Hashed on the way through; text is also checked to stay text past the first bytes (the
    // whole body is still stored and then removed if not, so the request is read to its end).
    let digest = Rc::new(RefCell::new(bytes::FileDigest::new(sniffed)));
    digest.borrow_mut().feed(&head);
    let tail = digest.clone();
    let rest = stream.map(move |chunk| {
        let chunk = chunk?;
        tail.borrow_mut().feed(&chunk);
        Ok(chunk)
    });
    let body = futures_util::stream::once(async move { Ok(head) }).chain(rest);
    let bucket = cx.env.bucket(bindings::MEDIA)?;
    bucket
        .put(&new.key, FixedLengthStream::wrap(body, length))
        .http_metadata(new.http_metadata())
        .execute()
        .await
        .map_err(body_length_error)?;
    let Some(sha) = digest.borrow().clone().finish() else {
        bucket.delete(&new.key).await?;
        return Err(AppError::UnsupportedMediaType(format!(
            "The file starts as {sniffed} but is not text all the way through (UTF-8 without NUL)."
        )));
    };
    record(&cx, &db, new, sha, Vec::new()).await
}

/// A streamed body that ended before (or ran past) its `Content-Length` is the client's error.
fn body_length_error(e: worker::Error) -> AppError {
    if e.to_string().contains("fixed length stream") {
        AppError::BadRequest(format!("The body does not match its Content-Length: {e}"))
    } else {
        AppError::from(e)
    }
}

/// The type an upload really has, or 415: not an accepted type, or not the declared one.
/// `whole` says whether `data` is the entire file or only its first bytes.
fn checked_type(data: &[u8], declared: &str, whole: bool) -> Result<&'static str> {
    let sniffed = bytes::sniff_prefix(data, declared, whole).ok_or_else(|| {
        AppError::UnsupportedMediaType(format!(
            "Only {} files are accepted.",
            bytes::ALLOWED.join(", ")
        ))
    })?;
    if !bytes::declared_matches(declared, sniffed) {
        return Err(AppError::UnsupportedMediaType(format!(
            "The file says it is {} but its bytes are {sniffed}.",
            bytes::essence(declared)
        )));
    }
    Ok(sniffed)
}

/// A media file about to be stored: where, and the row that will describe it.
struct NewMedia {
    id: String,
    key: String,
    filename: String,
    content_type: &'static str,
    size: u64,
    attributes: Value,
    /// Assembled from a multipart upload (noted in the audit entry).
    multipart: bool,
}

impl NewMedia {
    fn new(
        tenant_id: &str,
        filename: &str,
        content_type: &'static str,
        size: u64,
        attributes: Value,
    ) -> NewMedia {
        let id = ids::new_id("med");
        NewMedia {
            key: format!("tenants/{tenant_id}/media/{id}"),
            id,
            filename: clean_filename(filename),
            content_type,
            size,
            attributes,
            multipart: false,
        }
    }

    fn http_metadata(&self) -> HttpMetadata {
        HttpMetadata {
            content_type: Some(self.content_type.to_string()),
            ..Default::default()
        }
    }
}

/// Records a stored object with its audit entry, plus `also` in the same batch; removes the
/// object if that fails, so no file is left that nobody can see.
async fn record(
    cx: &Ctx,
    db: &Db,
    new: NewMedia,
    sha: String,
    also: Vec<D1PreparedStatement>,
) -> Result<Reply> {
    let tenant_id = cx.tenant_id()?;
    let mut statements = vec![
            db.stmt(
                "INSERT INTO media (id, tenant_id, filename, content_type, size, sha256, r2_key, \
                 attributes, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                &args![
                    new.id.as_str(),
                    tenant_id,
                    new.filename.as_str(),
                    new.content_type,
                    new.size as i64,
                    sha.as_str(),
                    new.key.as_str(),
                    new.attributes.to_string(),
                    cx.principal()?.user_id.clone(),
                    cx.now()
                ],
            )?,
            audit::entry(cx, "media.uploaded")
                .target("media", new.id.as_str())
                .meta(json!({"filename": new.filename, "size": new.size,
                    "content_type": new.content_type, "multipart": new.multipart}))
                .stmt(db)?,
        ];
    statements.extend(also);
    if let Err(e) = db.batch(statements).await {
        let _ = cx.env.bucket(bindings::MEDIA)?.delete(&new.key).await;
        return Err(e);
    }
    let row = find(db, tenant_id, &new.id).await?;
    Reply::created(&row.view(), Some(format!("/api/v1/media/{}", new.id)))
}

/// 413 above the plan's file size limit.
fn within_file_limit(cx: &Ctx, size: u64) -> Result<()> {
    let max = cx.config.plans.limits(cx.principal()?.plan).max_file_bytes;
    if size > max {
        return Err(AppError::PayloadTooLarge(max));
    }
    Ok(())
}

/// Bytes a tenant's storage holds: its files plus the parts of its unfinished multipart
/// uploads (R2 keeps and bills those too), leaving out the upload `except` (one about to be
/// completed is counted by its final size instead).
/// An SQL expression over `?1` (the tenant) and `?2` (the upload left out, or NULL).
const USED_BYTES: &str = "(SELECT COALESCE(SUM(size), 0) FROM media WHERE tenant_id = ?1) + \
     (SELECT COALESCE(SUM(json_extract(p.value, '$.size')), 0) \
        FROM media_uploads u, json_each(u.parts) p \
       WHERE u.tenant_id = ?1 AND u.status = 'open' AND u.id IS NOT ?2)";

/// The bytes a tenant's storage holds (files plus open multipart uploads' parts), leaving out
/// the upload `except`.
async fn used_bytes(db: &Db, tenant_id: &str, except: Option<&str>) -> Result<u64> {
    #[derive(Deserialize)]
    struct Used {
        used: i64,
    }
    Ok(db
        .one::<Used>(
            &format!("SELECT {USED_BYTES} AS used"),
            &args![tenant_id, Arg::from(except)],
        )
        .await?
        .map_or(0, |u| u.used.max(0) as u64))
}

/// The storage gauge `GET /billing/usage` reports.
pub async fn stored_bytes(db: &Db, tenant_id: &str) -> Result<u64> {
    used_bytes(db, tenant_id, None).await
}

async fn used_storage_allows(
    cx: &Ctx,
    db: &Db,
    tenant_id: &str,
    adding: u64,
    except: Option<&str>,
) -> Result<()> {
    let used = used_bytes(db, tenant_id, except).await?;
    let plan = cx.principal().map(|p| p.plan).unwrap_or_default();
    let quota = cx.config.plans.limits(plan).storage_bytes;
    if used + adding > quota {
        return Err(crate::billing::meter::over_quota(
            "storage",
            quota,
            used,
            None,
            format!(
                "The plan's storage ({quota} bytes) would be exceeded: {used} bytes are in use."
            ),
        ));
    }
    Ok(())
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM media WHERE media.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    match cx.query_enum("type", &KINDS)?.as_deref() {
        Some("image") => {
            f.and("media.content_type LIKE 'image/%'", args![]);
        }
        Some("document") => {
            f.and("media.content_type = 'application/pdf'", args![]);
        }
        Some("text") => {
            f.and("media.content_type LIKE 'text/%'", args![]);
        }
        Some(exact) => {
            f.and("media.content_type = ?", args![exact.to_string()]);
        }
        None => {}
    }
    f.and_opt(
        "media.created_at >= ?",
        cx.query_time("from")?.map(Arg::from),
    )
    .and_opt("media.created_at < ?", cx.query_time("to")?.map(Arg::from));
    f.page(&page, "media");
    let rows: Vec<MediaRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Media> = rows.iter().map(MediaRow::view).collect();
    let (rows, next) = page.finish(rows, |m| (m.created_at.clone(), m.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(
        &find(&cx.db()?, cx.tenant_id()?, cx.param("id"))
            .await?
            .view(),
    )
}

/// Streams a stored file, honouring a single `Range`.
async fn serve_object(env: &Env, row: &MediaRow, range_header: Option<&str>) -> Result<Reply> {
    let size = row.size.max(0) as u64;
    let range =
        bytes::range(range_header, size).map_err(|_| AppError::RangeNotSatisfiable(size))?;
    let bucket = env.bucket(bindings::MEDIA)?;
    let mut get = bucket.get(&row.r2_key);
    if let Some((offset, length)) = range {
        get = get.range(Range::OffsetWithLength { offset, length });
    }
    let object = get.execute().await?.ok_or(AppError::NotFound)?;
    let body = object.body().ok_or(AppError::NotFound)?.response_body()?;
    let (status, length) = match range {
        Some((_, length)) => (206, length),
        None => (200, size),
    };
    let mut reply = Reply::stream(status, body)
        .with_header("Content-Type", row.content_type.clone())
        .with_header("Content-Length", length.to_string())
        .with_header("ETag", format!("\"{}\"", row.sha256))
        .with_header("Accept-Ranges", "bytes")
        .with_header(
            "Content-Disposition",
            bytes::content_disposition("inline", &row.filename),
        );
    if let Some((offset, length)) = range {
        reply = reply.with_header(
            "Content-Range",
            format!("bytes {offset}-{}/{size}", offset + length - 1),
        );
    }
    Ok(reply)
}

async fn download(cx: Ctx) -> Result<Reply> {
    let row = find(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?;
    serve_object(&cx.env, &row, cx.header("Range").as_deref()).await
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = find(&db, tenant_id, cx.param("id")).await?;
    let used = db
        .one::<Value>(
            "SELECT id FROM products WHERE tenant_id = ?1 AND media_ids LIKE ?2 LIMIT 1",
            &args![tenant_id, format!("%\"{}\"%", row.id)],
        )
        .await?;
    if used.is_some() {
        return Err(AppError::Conflict(
            "A product shows this file; remove it from the product first.".into(),
        ));
    }
    db.batch(vec![
        db.stmt(
            "DELETE FROM media_links WHERE media_id = ?1",
            &args![row.id.as_str()],
        )?,
        db.stmt(
            "DELETE FROM jobs WHERE media_id = ?1",
            &args![row.id.as_str()],
        )?,
        db.stmt(
            "DELETE FROM media WHERE id = ?1 AND tenant_id = ?2",
            &args![row.id.as_str(), tenant_id],
        )?,
        audit::entry(&cx, "media.deleted")
            .target("media", row.id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    cx.env.bucket(bindings::MEDIA)?.delete(&row.r2_key).await?;
    Ok(Reply::no_content())
}

/// The link-signing key, separate from every other use of `ENCRYPTION_KEY`.
fn link_key(encryption_key: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(encryption_key, b"tenantry media links v1")
}

/// `<link id>.<expiry unix secs>.<hex HMAC(link id, media id, expiry)>`.
pub fn link_token(key: &[u8; 32], link_id: &str, media_id: &str, expires: i64) -> String {
    let mac = hmac_sha256(key, format!("{link_id}|{media_id}|{expires}").as_bytes());
    format!("{link_id}.{expires}.{}", hex::encode(mac))
}

/// Splits a token into `(link id, expiry)` when its shape is right (the MAC is checked later,
/// against the media id stored with the link).
pub fn parse_token(token: &str) -> Option<(&str, i64, &str)> {
    let mut parts = token.splitn(3, '.');
    let (id, exp, mac) = (parts.next()?, parts.next()?, parts.next()?);
    Some((id, exp.parse().ok()?, mac))
}

async fn create_link(cx: Ctx) -> Result<Reply> {
    let body: CreateLink = cx.json()?;
    if !(1..=604_800).contains(&body.expires_in) {
        return Err(AppError::field(
            "expires_in",
            "must be between 1 and 604800 seconds",
        ));
    }
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = find(&db, tenant_id, cx.param("id")).await?;
    let id = ids::new_id("lnk");
    let expires = cx.now_ms / 1000 + body.expires_in;
    let expires_at = clock::rfc3339(expires * 1000);
    db.batch(vec![
        db.stmt(
            "INSERT INTO media_links (id, tenant_id, media_id, expires_at, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &args![
                id.as_str(),
                tenant_id,
                row.id.as_str(),
                expires_at.as_str(),
                cx.principal()?.user_id.clone(),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "media.link_created")
            .target("media", row.id.as_str())
            .meta(json!({"link_id": id, "expires_at": expires_at}))
            .stmt(&db)?,
    ])
    .await?;
    let token = link_token(&link_key(&cx.config.encryption_key), &id, &row.id, expires);
    let link = MediaLink {
        url: format!("{}/api/v1/links/{token}", cx.origin),
        id,
        media_id: row.id,
        expires_at,
    };
    Reply::created(&link, None)
}

async fn revoke_link(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = find(&db, tenant_id, cx.param("id")).await?;
    let changed = db
        .run(
            "UPDATE media_links SET revoked_at = ?4 WHERE id = ?1 AND media_id = ?2 AND tenant_id = ?3 \
             AND revoked_at IS NULL",
            &args![cx.param("link_id"), row.id.as_str(), tenant_id, cx.now()],
        )
        .await?;
    if changed == 0 {
        return Err(AppError::NotFound);
    }
    Ok(Reply::no_content())
}

async fn follow_link(cx: Ctx) -> Result<Reply> {
    #[derive(Deserialize)]
    struct Link {
        tenant_id: String,
        media_id: String,
        revoked_at: Option<String>,
    }
    let denied = || {
        AppError::Forbidden(
            "link_invalid",
            "This link is invalid, expired or revoked.".into(),
        )
    };
    let (link_id, expires, mac) = parse_token(cx.param("token")).ok_or_else(denied)?;
    let db = cx.db()?;
    let link: Link = db
        .one(
            "SELECT tenant_id, media_id, revoked_at FROM media_links WHERE id = ?1",
            &args![link_id],
        )
        .await?
        .ok_or_else(denied)?;
    let expected = link_token(
        &link_key(&cx.config.encryption_key),
        link_id,
        &link.media_id,
        expires,
    );
    let given = format!("{link_id}.{expires}.{mac}");
    if !constant_time_eq(expected.as_bytes(), given.as_bytes())
        || expires * 1000 <= cx.now_ms
        || link.revoked_at.is_some()
    {
        return Err(denied());
    }
    let row = find(&db, &link.tenant_id, &link.media_id)
        .await
        .map_err(|_| denied())?;
    serve_object(&cx.env, &row, cx.header("Range").as_deref()).await
}

/// A file that arrived from elsewhere (a WhatsApp contact's image, voice note, …), stored as
/// the tenant's media like an upload: typed by its bytes (never by the sender's word), within
/// the plan's file size limit and storage quota, under `tenants/{tenant_id}/media/{id}` with
/// its sha256. `link` is a statement that attaches the file to what it came with, run in the
/// same batch as the row; if it does not apply (someone else stored it first) the row and the
/// object are removed again and the answer is `Ok(None)`.
pub struct Incoming<'a> {
    pub tenant_id: &'a str,
    pub filename: &'a str,
    pub declared: &'a str,
    pub data: Vec<u8>,
    pub attributes: Value,
}

/// Why an incoming file cannot be kept (not worth retrying).
pub fn incoming_type(data: &[u8], declared: &str) -> &'static str {
    bytes::sniff(data, declared)
        .or_else(|| bytes::sniff_inbound(data))
        .unwrap_or("application/octet-stream")
}

pub async fn store_incoming(
    env: &Env,
    db: &Db,
    cfg: &crate::platform::config::Config,
    file: Incoming<'_>,
    link: impl FnOnce(&str) -> Result<D1PreparedStatement>,
) -> std::result::Result<Option<String>, IncomingRefused> {
    #[derive(Deserialize)]
    struct Usage {
        plan: String,
        used: i64,
    }
    let size = file.data.len() as u64;
    let usage = db
        .one::<Usage>(
            &format!("SELECT t.plan, {USED_BYTES} AS used FROM tenants t WHERE t.id = ?1"),
            &args![file.tenant_id, Arg::from(None::<&str>)],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    let plan = Plan::parse(&usage.plan).unwrap_or_default();
    let max = cfg.plans.limits(plan).max_file_bytes;
    if size > max {
        return Err(IncomingRefused::Kept(format!(
            "the file ({size} bytes) is above the plan's file size limit ({max} bytes)"
        )));
    }
    let quota = cfg.plans.limits(plan).storage_bytes;
    if usage.used.max(0) as u64 + size > quota {
        return Err(IncomingRefused::Kept(format!(
            "the plan's storage ({quota} bytes) would be exceeded"
        )));
    }
    let content_type = incoming_type(&file.data, file.declared);
    let new = NewMedia::new(
        file.tenant_id,
        file.filename,
        content_type,
        size,
        file.attributes,
    );
    let sha = sha256_hex(&file.data);
    let bucket = env.bucket(bindings::MEDIA)?;
    bucket
        .put(&new.key, file.data)
        .http_metadata(new.http_metadata())
        .execute()
        .await?;
    let linked = link(&new.id)?;
    let now = clock::rfc3339(clock::now_ms());
    let written = db
        .batch(vec![
            db.stmt(
                "INSERT INTO media (id, tenant_id, filename, content_type, size, sha256, r2_key, \
                 attributes, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9)",
                &args![
                    new.id.as_str(),
                    file.tenant_id,
                    new.filename.as_str(),
                    new.content_type,
                    size as i64,
                    sha.as_str(),
                    new.key.as_str(),
                    new.attributes.to_string(),
                    now
                ],
            )?,
            linked,
        ])
        .await;
    match written {
        Ok(changes) if changes.get(1).copied().unwrap_or(0) > 0 => Ok(Some(new.id)),
        other => {
            if other.is_ok() {
                db.run("DELETE FROM media WHERE id = ?1", &args![new.id.as_str()])
                    .await?;
            }
            let _ = bucket.delete(&new.key).await;
            other?;
            Ok(None)
        }
    }
}

/// Why `store_incoming` did not keep a file.
#[derive(Debug)]
pub enum IncomingRefused {
    /// A lasting reason (size, quota): retrying cannot help.
    Kept(String),
    /// Infrastructure trouble (D1, R2): worth retrying.
    Failed(AppError),
}

impl From<AppError> for IncomingRefused {
    fn from(e: AppError) -> Self {
        IncomingRefused::Failed(e)
    }
}

impl From<worker::Error> for IncomingRefused {
    fn from(e: worker::Error) -> Self {
        IncomingRefused::Failed(e.into())
    }
}

/// Reads a stored file completely (jobs read the documents they process).
pub async fn read_all(env: &Env, key: &str) -> Result<Vec<u8>> {
    let object = env
        .bucket(bindings::MEDIA)?
        .get(key)
        .execute()
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(object.body().ok_or(AppError::NotFound)?.bytes().await?)
}

/// A JSON object's keys, for checks that must not pass arrays or scalars as attributes.
pub fn object_or_empty(v: Option<Value>) -> std::result::Result<Map<String, Value>, String> {
    match v {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err("must be a JSON object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_bind_link_media_and_expiry() {
        let key = link_key(&[7u8; 32]);
        let t = link_token(&key, "lnk_1", "med_1", 1_800_000_000);
        let (id, exp, _) = parse_token(&t).unwrap();
        assert_eq!((id, exp), ("lnk_1", 1_800_000_000));
        assert_ne!(t, link_token(&key, "lnk_1", "med_2", 1_800_000_000));
        assert_ne!(t, link_token(&key, "lnk_1", "med_1", 1_800_000_001));
        assert_ne!(
            t,
            link_token(&link_key(&[8u8; 32]), "lnk_1", "med_1", 1_800_000_000)
        );
        assert!(parse_token("nope").is_none());
        assert!(parse_token("a.notanumber.c").is_none());
    }

    #[test]
    fn filenames_lose_paths_and_quotes() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\x\\list \"2026\".pdf"), "list 2026.pdf");
        assert_eq!(clean_filename("  "), "upload");
    }
}
