//! Document jobs: `POST /media/:id/process` queues `extract_text` (the text layer of PDFs, or
//! text/CSV files as they are) or `ocr` (images sent to `OCR_API_URL`); the jobs Worker runs
//! them (`runner.rs`). Listing and reading jobs and their results.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::candidates::Candidate;
use super::job_state::{JobKind, JobStatus};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::Job;

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &JobStatus::NAMES, "Only jobs with this status."),
    q_enum("kind", &JobKind::NAMES, "Only jobs of this kind."),
    q("media_id", "string", "Only this file's jobs."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/media/:id/process", Access::User, handler!(process))
            .doc(
                "jobs",
                "Start a job on a file: `extract_text` (PDF, text, CSV) or `ocr` (images)",
            )
            .body("ProcessMedia")
            .accepted("MediaJob")
            .idempotent(),
        Route::get("/api/v1/jobs", Access::User, handler!(list))
            .doc("jobs", "The tenant's jobs, newest first")
            .list("MediaJob")
            .query(&LIST_QUERY),
        Route::get("/api/v1/jobs/:id", Access::User, handler!(get))
            .doc(
                "jobs",
                "One job with its result (text, pages, confidence, product_candidates)",
            )
            .ok("MediaJob"),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessMedia {
    /// `extract_text` (PDF text layer, text and CSV files) or `ocr` (images).
    #[schema(pattern = "^(extract_text|ocr)$")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    pub text: String,
    pub pages: i64,
    /// 0–1: the OCR service's confidence; 1 for a document's own text (a text layer or file).
    pub confidence: Option<f64>,
    /// Lines that look like a product with a price.
    #[serde(alias = "candidates")]
    pub product_candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaJob {
    pub id: String,
    pub media_id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub progress: i64,
    pub attempts: i64,
    pub result: Option<JobResult>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Deserialize)]
struct JobRow {
    id: String,
    media_id: String,
    kind: JobKind,
    status: JobStatus,
    progress: i64,
    attempts: i64,
    result: Option<String>,
    error: Option<String>,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
}

impl From<JobRow> for MediaJob {
    fn from(r: JobRow) -> Self {
        MediaJob {
            id: r.id,
            media_id: r.media_id,
            kind: r.kind,
            status: r.status,
            progress: r.progress,
            attempts: r.attempts,
            result: r.result.and_then(|t| serde_json::from_str(&t).ok()),
            error: r.error,
            created_at: r.created_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
        }
    }
}

const COLUMNS: &str =
    "jobs.id, jobs.media_id, jobs.kind, jobs.status, jobs.progress, jobs.attempts, \
     jobs.result, jobs.error, jobs.created_at, jobs.started_at, jobs.completed_at";

pub async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<MediaJob> {
    let row: JobRow = db
        .one(
            &format!("SELECT {COLUMNS} FROM jobs WHERE jobs.id = ?1 AND jobs.tenant_id = ?2"),
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

async fn process(cx: Ctx) -> Result<Reply> {
    let body: ProcessMedia = cx.json()?;
    let kind = JobKind::parse(&body.kind)
        .ok_or_else(|| AppError::field("kind", "must be extract_text or ocr"))?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let (media, _) = super::object_key(&db, tenant_id, cx.param("id")).await?;
    let image = media.content_type.starts_with("image/");
    let fits = match kind {
        JobKind::Ocr => image,
        JobKind::ExtractText => !image,
    };
    if !fits {
        return Err(AppError::Conflict(format!(
            "{kind} cannot read {} files; use {}.",
            media.content_type,
            match kind {
                JobKind::Ocr => JobKind::ExtractText,
                JobKind::ExtractText => JobKind::Ocr,
            }
        )));
    }
    if kind == JobKind::Ocr && cx.config.ocr_api_url.is_none() {
        return Err(AppError::Conflict(
            "No OCR service is configured (OCR_API_URL).".into(),
        ));
    }
    let id = ids::new_id("job");
    let now = cx.now();
    // Its message is an outbox row of the same batch: a failed send is made by the sweep.
    let message = Staged::job(&Job::Media { job_id: id.clone() }, 0, cx.now_ms)?;
    db.batch(vec![
        db.stmt(
            "INSERT INTO jobs (id, tenant_id, media_id, kind, status, created_by, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            &args![
                id.as_str(),
                tenant_id,
                media.id.as_str(),
                kind.as_str(),
                JobStatus::Pending.as_str(),
                cx.principal()?.user_id.clone(),
                now
            ],
        )?,
        audit::entry(&cx, "job.created")
            .target("job", id.as_str())
            .meta(json!({"media_id": media.id, "kind": kind}))
            .stmt(&db)?,
        message.insert(&db)?,
    ])
    .await?;
    outbox::send_now(&cx.env, &cx.config, &db, &[message]).await;
    Reply::accepted(
        &find(&db, tenant_id, &id).await?,
        format!("/api/v1/jobs/{id}"),
    )
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM jobs WHERE jobs.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    f.and_opt(
        "jobs.status = ?",
        cx.query_enum("status", &JobStatus::NAMES)?.map(Arg::from),
    )
    .and_opt(
        "jobs.kind = ?",
        cx.query_enum("kind", &JobKind::NAMES)?.map(Arg::from),
    )
    .and_opt(
        "jobs.media_id = ?",
        cx.query_nonempty("media_id").map(Arg::from),
    );
    f.page(&page, "jobs");
    let rows: Vec<JobRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<MediaJob> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |j| (j.created_at.clone(), j.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}
