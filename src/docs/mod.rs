//! The OpenAPI 3.1 document, generated from the route table (so every route is in it) and the
//! DTO types (utoipa derives), and `/docs`: Swagger UI (npm `swagger-ui-dist`, pinned) rendering
//! it, its files served from the Worker's static assets through this Worker so they carry the
//! same headers as every other answer.

use serde_json::{json, Map, Value};
use utoipa::{PartialSchema, ToSchema};

use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{Access, Method, ResponseDoc, Route};
use crate::platform::bindings;
use crate::platform::config::VERSION;
use crate::platform::error::{AppError, Result};

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for (path, alias) in [("/openapi.json", false), ("/api/v1/openapi.json", true)] {
        let r = Route::get(path, Access::Public, handler!(openapi))
            .doc("operations", "This OpenAPI 3.1 document")
            .raw(200, "application/json");
        routes.push(if alias { r.alias() } else { r });
    }
    for (path, alias) in [("/docs", false), ("/api/v1/docs", true)] {
        let r = Route::get(path, Access::Public, handler!(docs_page))
            .doc(
                "operations",
                "A readable page rendering the OpenAPI document",
            )
            .raw(200, "text/html");
        routes.push(if alias { r.alias() } else { r });
    }
    // The page's scripts and styles (copied into the assets directory by `make build`).
    routes.push(
        Route::get("/docs/:file", Access::Public, handler!(docs_asset))
            .doc("operations", "A file of the docs page (Swagger UI)")
            .alias(),
    );
    routes
}

macro_rules! schemas {
    ($($t:ty),* $(,)?) => {
        vec![$((<$t as ToSchema>::name().to_string(), serde_json::to_value(<$t as PartialSchema>::schema()).unwrap_or_default())),*]
    };
}

fn component_schemas() -> Vec<(String, Value)> {
    use crate::analytics::events::AnalyticsEventIn;
    use crate::analytics::{
        AnalyticsAccepted, AnalyticsBatch, AnalyticsSeries, SeriesPoint, SessionStats,
    };
    use crate::apikeys::{ApiKey, CreateApiKey, CreatedApiKey};
    use crate::audit::report::{ActionCount, ActorCount, AuditReport, DayCount, Totals};
    use crate::audit::routes::{ApiLog, AuditLog};
    use crate::auth::model::*;
    use crate::billing::events::{BillingEvent, StripeReceipt, StripeWebhookEvent};
    use crate::billing::meter::Alert;
    use crate::billing::payments::{CreateRefund, Payment, Refund};
    use crate::billing::plans::{Feature, Metric, QuotaOverrides};
    use crate::billing::stripe::PaymentStatus;
    use crate::billing::subscription::{
        ChangeSubscription, CheckoutSession, CreateCheckout, CreatePortal, PortalSession,
        Subscription,
    };
    use crate::billing::usage::{
        LimitsView, MetricUsage, MonthlyUsage, PlanList, PlanView, TenantUsage, Usage, UsageMetrics,
    };
    use crate::export::ExportRecord;
    use crate::health::{Health, HealthChecks};
    use crate::inventory::model::MovementKind;
    use crate::inventory::{
        Category, CategoryStock, CreateMovement, CurrencyTotal, InventorySummary, Movement,
        RecordedMovement, RenameCategory, RenamedCategory,
    };
    use crate::media::candidates::Candidate;
    use crate::media::job_state::{JobKind, JobStatus};
    use crate::media::jobs::{JobResult, MediaJob, ProcessMedia};
    use crate::media::uploads::{CreateUpload, Upload};
    use crate::media::{CreateLink, Media, MediaLink};
    use crate::messaging::campaigns::{
        Campaign, CampaignProgress, CreateCampaign, PersonalRecipient, Recipient,
    };
    use crate::messaging::channel::{Channel, PutChannel, SecretState};
    use crate::messaging::delivery::{Direction, MessageStatus};
    use crate::messaging::inbox::{
        AgentLoad, InboxSummary, StatusCounts, UpdateContact, UpdateConversation, UpdateMessage,
    };
    use crate::messaging::ingest::{WebhookPayload, WebhookReceipt};
    use crate::messaging::model::{Contact, ContactSummary, Conversation, Message, MessageMedia};
    use crate::messaging::outbound::SendMessage;
    use crate::messaging::templates::{CreateTemplate, Template, TemplateRef};
    use crate::notifications::model::BroadcastTo;
    use crate::notifications::{
        Broadcast, BroadcastResult, MarkedRead, Notification, NotificationPreferences,
        NotificationStats, NotificationTypeStats, PutNotificationPreferences, UnreadCount,
    };
    use crate::oauth::model::{ExchangeRequest, Identity, LinkRequest};
    use crate::optimize::adapters::ProviderUsage;
    use crate::optimize::batches::{
        BatchInput, BatchItem, BatchStatus, CreateBatch, ItemStatus, OptimizeBatch,
    };
    use crate::optimize::gateway::{Attempt, AttemptOutcome, ProviderTest};
    use crate::optimize::model::{ProviderName, Strategy};
    use crate::optimize::providers::{ProviderView, PutProvider};
    use crate::optimize::{Optimization, OptimizeRequest, OptimizeStats, StatsBucket};
    use crate::platform::error::{FieldError, Problem};
    use crate::platform::plan::Plan;
    use crate::products::{CreateProduct, CreatedProducts, FromCandidates, Product, UpdateProduct};
    use crate::profile::{
        DashboardMedia, DashboardUsage, TenantDashboard, UpdateOrganization, UpdateProfile,
        UserPreferences,
    };
    use crate::push::{PushKey, PushKeys, PushSubscription, PushSubscriptionIn};
    use crate::requests::{CreateWorkflowRequest, UpdateWorkflowRequest, WorkflowRequest};
    use crate::search::{SearchHit, SearchRebuild};
    use crate::settings::secrets::{PutSecret, Secret};
    use crate::settings::{CallbackSecret, Settings, UpdateSettings};
    use crate::teams::invitations::{
        AcceptInvitation, CreateInvitation, CreatedInvitation, Invitation, InvitationPreview,
        PreviewInvitation, TeamRef,
    };
    use crate::teams::{AddTeamMember, CreateTeam, Team, TeamMember, UpdateTeam, UpdateTeamMember};
    use crate::tenants::model::{CreateTenant, Tenant, UpdateTenant};
    use crate::tenants::CreateUser;
    use crate::tickets::{Comment, CreateComment, CreateTicket, Ticket, UpdateTicket};
    use crate::users::model::{UpdateUser, User};
    use crate::workflows::admin::{
        Dashboard, ErrorEntry, TenantCounts, Uptime, Window, WorkflowPerformance,
    };
    use crate::workflows::config::{Step, WorkflowConfig};
    use crate::workflows::execution::ExecutionStatus;
    use crate::workflows::model::{
        CreateWorkflow, ExecuteWorkflow, Execution, StartedExecution, StepRun, UpdateWorkflow,
        Workflow, WorkflowStats,
    };
    schemas![
        Problem,
        FieldError,
        Health,
        HealthChecks,
        RegisterRequest,
        LoginRequest,
        RefreshRequest,
        LogoutRequest,
        ChangePasswordRequest,
        TokenResponse,
        MeResponse,
        ExchangeRequest,
        LinkRequest,
        Identity,
        User,
        UpdateUser,
        Tenant,
        Plan,
        Subscription,
        ChangeSubscription,
        CreateCheckout,
        CheckoutSession,
        CreatePortal,
        PortalSession,
        Payment,
        CreateRefund,
        Refund,
        CreateTenant,
        UpdateTenant,
        CreateUser,
        ApiKey,
        CreateApiKey,
        CreatedApiKey,
        AuditLog,
        ApiLog,
        Settings,
        UpdateSettings,
        CallbackSecret,
        Secret,
        PutSecret,
        WorkflowConfig,
        Step,
        Workflow,
        WorkflowStats,
        CreateWorkflow,
        UpdateWorkflow,
        ExecuteWorkflow,
        Execution,
        ExecutionStatus,
        JobKind,
        JobStatus,
        Direction,
        MessageStatus,
        StartedExecution,
        StepRun,
        Dashboard,
        TenantCounts,
        Window,
        Uptime,
        WorkflowPerformance,
        ErrorEntry,
        Channel,
        SecretState,
        PutChannel,
        WebhookPayload,
        WebhookReceipt,
        Conversation,
        ContactSummary,
        Contact,
        Message,
        MessageMedia,
        UpdateConversation,
        UpdateMessage,
        UpdateContact,
        InboxSummary,
        StatusCounts,
        AgentLoad,
        SendMessage,
        TemplateRef,
        Template,
        CreateTemplate,
        CreateCampaign,
        Recipient,
        PersonalRecipient,
        Campaign,
        CampaignProgress,
        WorkflowRequest,
        CreateWorkflowRequest,
        UpdateWorkflowRequest,
        Ticket,
        Comment,
        CreateTicket,
        UpdateTicket,
        CreateComment,
        Media,
        CreateLink,
        MediaLink,
        ProcessMedia,
        MediaJob,
        JobResult,
        Candidate,
        Product,
        CreatedProducts,
        CreateProduct,
        UpdateProduct,
        FromCandidates,
        MovementKind,
        CreateMovement,
        Movement,
        RecordedMovement,
        CategoryStock,
        CurrencyTotal,
        InventorySummary,
        Category,
        RenameCategory,
        RenamedCategory,
        CreateUpload,
        Upload,
        PaymentStatus,
        PlanList,
        PlanView,
        LimitsView,
        Feature,
        Metric,
        QuotaOverrides,
        Usage,
        UsageMetrics,
        MetricUsage,
        Alert,
        TenantUsage,
        MonthlyUsage,
        StripeWebhookEvent,
        StripeReceipt,
        BillingEvent,
        ProviderName,
        Strategy,
        ProviderView,
        PutProvider,
        ProviderTest,
        ProviderUsage,
        OptimizeRequest,
        Optimization,
        Attempt,
        AttemptOutcome,
        OptimizeStats,
        StatsBucket,
        CreateBatch,
        BatchInput,
        OptimizeBatch,
        BatchStatus,
        ItemStatus,
        BatchItem,
        Team,
        CreateTeam,
        UpdateTeam,
        TeamMember,
        AddTeamMember,
        UpdateTeamMember,
        Invitation,
        CreatedInvitation,
        CreateInvitation,
        PreviewInvitation,
        AcceptInvitation,
        InvitationPreview,
        TeamRef,
        Notification,
        UnreadCount,
        MarkedRead,
        NotificationPreferences,
        PutNotificationPreferences,
        Broadcast,
        BroadcastTo,
        BroadcastResult,
        NotificationStats,
        NotificationTypeStats,
        PushKey,
        PushSubscriptionIn,
        PushKeys,
        PushSubscription,
        UpdateProfile,
        UserPreferences,
        UpdateOrganization,
        TenantDashboard,
        DashboardUsage,
        DashboardMedia,
        AnalyticsBatch,
        AnalyticsEventIn,
        AnalyticsAccepted,
        AnalyticsSeries,
        SeriesPoint,
        SessionStats,
        SearchHit,
        SearchRebuild,
        ExportRecord,
        AuditReport,
        Totals,
        ActionCount,
        ActorCount,
        DayCount,
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The headers every response carries.
fn request_id_header() -> Value {
    json!({"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}})
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "headers": request_id_header(),
        "content": {"application/problem+json": {"schema": schema_ref("Problem")}}
    })
}

fn success(route: &Route) -> (String, Value) {
    let headers = request_id_header();
    match route.response {
        ResponseDoc::Data(status, schema) => {
            let mut headers = headers;
            if status == 201 || status == 202 {
                headers["Location"] =
                    json!({"schema": {"type": "string"}, "description": "URL of the new resource"});
            }
            let mut content = json!({"application/json": {"schema": {
                "type": "object", "required": ["data"],
                "properties": {"data": schema_ref(schema)}
            }}});
            if route.csv {
                content["text/csv"] = json!({"schema": {"type": "string"}});
            }
            (
                status.to_string(),
                json!({"description": "Success", "headers": headers, "content": content}),
            )
        }
        ResponseDoc::List(schema) => {
            let mut content = json!({"application/json": {"schema": {
                "type": "object", "required": ["data", "next_cursor"],
                "properties": {
                    "data": {"type": "array", "items": schema_ref(schema)},
                    "next_cursor": {"type": ["string", "null"]}
                }
            }}});
            if route.csv {
                content["text/csv"] = json!({"schema": {"type": "string"}});
            }
            (
                "200".into(),
                json!({"description": "A page of results", "headers": headers, "content": content}),
            )
        }
        ResponseDoc::NoContent => (
            "204".into(),
            json!({"description": "Done", "headers": headers}),
        ),
        ResponseDoc::File => ("200".into(), file_response(headers)),
        ResponseDoc::Download(content_types) => {
            let mut headers = headers;
            headers["Content-Disposition"] = json!({"schema": {"type": "string"},
                "description": "`attachment; filename=\"…\"`"});
            let content: Map<String, Value> = content_types
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        if *t == "application/json" {
                            // One JSON array of the rows, whose columns depend on the type.
                            json!({"schema": {"type": "array", "items": {"type": "object"}}})
                        } else {
                            json!({"schema": {"type": "string"}})
                        },
                    )
                })
                .collect();
            (
                "200".into(),
                json!({"description": "The download, streamed", "headers": headers, "content": content}),
            )
        }
        ResponseDoc::Raw(status, content_type) => (
            status.to_string(),
            json!({"description": "Success", "headers": headers, "content": {content_type: {"schema": {}}}}),
        ),
    }
}

/// A stored file: one of the accepted media types, with the headers downloads carry.
fn file_response(mut headers: Value) -> Value {
    for (name, what) in [
        ("ETag", "The stored object's entity tag"),
        ("Content-Length", "Bytes in this response"),
        ("Accept-Ranges", "`bytes`"),
    ] {
        headers[name] = json!({"schema": {"type": "string"}, "description": what});
    }
    let content: Map<String, Value> = crate::media::bytes::ALLOWED
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({"schema": {"type": "string", "format": "binary"}}),
            )
        })
        .collect();
    json!({"description": "The file's bytes, in its stored type", "headers": headers, "content": content})
}

fn operation(route: &Route) -> Value {
    let mut params: Vec<Value> = route
        .param_names()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    for q in route.query {
        let mut schema = json!({"type": q.ty});
        if !q.enumeration.is_empty() {
            schema["enum"] = json!(q.enumeration);
        }
        if q.name == "limit" {
            schema["minimum"] = json!(1);
            schema["maximum"] = json!(100);
        }
        params.push(json!({"name": q.name, "in": "query", "required": false, "description": q.description, "schema": schema}));
    }
    if route.idempotent {
        params.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Replays the first response for 24 h; reuse with another body is 422.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255}
        }));
    }
    let mut responses = Map::new();
    let (code, ok) = success(route);
    responses.insert(code, ok);
    if matches!(route.response, ResponseDoc::File) {
        let mut partial = file_response(request_id_header());
        partial["description"] = json!("The requested byte range (`Content-Range`)");
        responses.insert("206".into(), partial);
        responses.insert("416".into(), problem("The `Range` lies outside the file"));
    }
    let public = route.access == Access::Public;
    if !route.query.is_empty() || route.request.is_some() || route.param_names().next().is_some() {
        responses.insert("400".into(), problem("The request could not be read"));
        responses.insert(
            "422".into(),
            problem("Invalid input; `errors` names the fields"),
        );
    }
    let api = route.path.starts_with("/api/v1/");
    if !public || (api && route.request.is_some()) {
        responses.insert(
            "401".into(),
            problem("Missing, invalid or expired credentials"),
        );
        responses.insert(
            "403".into(),
            problem("The caller's role or scopes do not allow this"),
        );
    }
    if !public || api {
        responses.insert(
            "429".into(),
            problem("Rate limit exceeded; see Retry-After"),
        );
    }
    if route.param_names().next().is_some() {
        responses.insert(
            "404".into(),
            problem("No such resource in the caller's tenant"),
        );
    }
    if let Some(f) = route.feature {
        responses.insert(
            "402".into(),
            problem(match f {
                crate::billing::plans::Feature::LargeBatches => {
                    "The plan lacks the `large_batches` feature (`feature_not_in_plan`, with `feature` and `plans`)"
                }
                crate::billing::plans::Feature::OperatorLlmKeys => {
                    "The plan lacks the `operator_llm_keys` feature (`feature_not_in_plan`, with `feature` and `plans`)"
                }
            }),
        );
    } else if route.metered {
        responses.insert(
            "402".into(),
            problem(
                "A quota of the plan (monthly executions or optimisations, storage) would be exceeded (`quota_exceeded`, with `metric, limit, used, resets_at`); a batch above 10 items on a plan without `large_batches` (`feature_not_in_plan`)",
            ),
        );
    }
    if route.upstream {
        responses.insert(
            "502".into(),
            problem("No outside service gave a result (`upstream_error`, with `provider_status` and `attempts`)"),
        );
        responses.insert(
            "504".into(),
            problem("The outside service did not answer in time (`upstream_timeout`)"),
        );
    }
    if route.method != Method::Get {
        responses.insert("409".into(), problem("Conflicts with the current state"));
    }
    if route.request.is_some() || route.upload {
        responses.insert("413".into(), problem("The body is too large"));
        responses.insert(
            "415".into(),
            problem("The body's media type is not accepted"),
        );
    }
    responses.insert("default".into(), problem("An error (problem+json)"));

    let mut op = json!({
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": format!("{}{}", route.method.as_str().to_lowercase(), route.path.replace(['/', ':', '-', '.'], "_")),
        "parameters": params,
        "responses": responses,
    });
    if public {
        op["security"] = json!([]);
    }
    if let Some(schema) = route.request {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}});
    }
    if route.upload {
        op["requestBody"] = json!({"required": true, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"},
                "attributes": {"type": "string", "description": "A JSON object stored with the file."}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                "description": "The raw file; send its real Content-Type and `?filename=`."}}});
    }
    op
}

/// Converts `/users/:id` to `/users/{id}`.
pub fn openapi_path(path: &str) -> String {
    path.split('/')
        .map(|s| match s.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Marks free-form objects (`"type": "object"` with no `properties`: attributes, config,
/// `input_data`, …) `additionalProperties: true`. JSON Schema already means that, but
/// generators read a bare object as an empty one (openapi-typescript: `Record<string, never>`),
/// which would refuse every key a client sends.
fn mark_free_form_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_object = match map.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                _ => false,
            };
            let shaped = [
                "properties",
                "additionalProperties",
                "patternProperties",
                "allOf",
                "oneOf",
                "anyOf",
                "$ref",
            ]
            .iter()
            .any(|k| map.contains_key(*k));
            if is_object && !shaped {
                map.insert("additionalProperties".into(), Value::Bool(true));
            }
            map.values_mut().for_each(mark_free_form_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(mark_free_form_objects),
        _ => {}
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for route in crate::routes::table()
        .routes()
        .iter()
        .filter(|r| r.documented)
    {
        let item = paths
            .entry(openapi_path(route.path))
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_lowercase()] = operation(route);
    }
    let schemas: Map<String, Value> = component_schemas().into_iter().collect();
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tenantry API",
            "version": VERSION,
            "description": "Multi-tenant SaaS backend on Cloudflare Workers. Success bodies are `{\"data\": …}`; lists add `next_cursor` (pass it as `?cursor=`, with `?limit=` 1–100). Errors are RFC 9457 problem+json with a stable `code`, field `errors` and `request_id`. Bad input is 400 (unreadable) or 422 (invalid values, unknown fields). Another tenant's object is 404. Rate-limited responses carry RateLimit-Limit/Remaining/Reset; refusals are 429 with Retry-After."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or tnt_ API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
            "headers": {
                "X-Request-Id": {"description": "Echoed or generated request id", "schema": {"type": "string"}}
            }
        }
    });
    mark_free_form_objects(&mut doc);
    doc
}

async fn openapi(_cx: Ctx) -> Result<Reply> {
    Ok(Reply::json_bytes(200, serde_json::to_vec(&document())?))
}

const DOCS_HTML: &str = include_str!("docs.html");

/// Swagger UI runs only this origin's scripts; it sets element styles and uses `data:` icons.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn docs_page(_cx: Ctx) -> Result<Reply> {
    Ok(
        Reply::text(200, DOCS_HTML.to_string(), "text/html; charset=utf-8")
            .with_header("Content-Security-Policy", DOCS_CSP)
            .with_header("Cache-Control", "public, max-age=300"),
    )
}

/// A plain file name (no path, no dot-files): what the assets directory's `docs/` holds.
fn asset_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

async fn docs_asset(cx: Ctx) -> Result<Reply> {
    let name = cx.param("file");
    if !asset_name(name) {
        return Err(AppError::NotFound);
    }
    // Revalidation passes through, so a browser's cached copy is answered 304.
    let headers = worker::Headers::new();
    if let Some(tag) = cx.headers.get("If-None-Match")? {
        headers.set("If-None-Match", &tag)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_headers(headers);
    // The assets binding ignores the host; the path is the file's place in the directory.
    let response = cx
        .env
        .assets(bindings::ASSETS)?
        .fetch(format!("https://assets.invalid/docs/{name}"), Some(init))
        .await?;
    if response.status_code() == 404 {
        return Err(AppError::NotFound);
    }
    let mut reply = Reply::stream(response.status_code(), response.body().clone())
        .with_header("Cache-Control", "public, max-age=3600")
        .with_header("Content-Security-Policy", DOCS_CSP);
    for header in ["Content-Type", "ETag"] {
        if let Some(value) = response.headers().get(header)? {
            reply = reply.with_header(header, value);
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_route_is_in_the_document() {
        let doc = document();
        for r in crate::routes::all().iter().filter(|r| r.documented) {
            let op = &doc["paths"][openapi_path(r.path)][r.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {} missing", r.method.as_str(), r.path);
            assert!(!r.summary.is_empty(), "{} has no summary", r.path);
        }
    }

    #[test]
    fn every_referenced_schema_exists() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                schemas.contains_key(&name),
                "schema {name} is referenced but not defined"
            );
        }
    }

    #[test]
    fn free_form_objects_take_any_member_and_shaped_ones_are_left_alone() {
        let mut v = json!({
            "a": {"type": "object"},
            "b": {"type": ["object", "null"], "description": "x"},
            "c": {"type": "object", "properties": {"type": {"type": "string"}}},
            "d": {"type": "object", "additionalProperties": false},
            "e": {"allOf": [{"type": "object"}, {"$ref": "#/components/schemas/X"}]},
            "f": {"type": "string"},
        });
        mark_free_form_objects(&mut v);
        assert_eq!(v["a"]["additionalProperties"], true);
        assert_eq!(v["b"]["additionalProperties"], true);
        assert!(v["c"].get("additionalProperties").is_none());
        assert!(v["c"]["properties"]["type"]
            .get("additionalProperties")
            .is_none());
        assert_eq!(v["d"]["additionalProperties"], false);
        assert!(v["e"].get("additionalProperties").is_none());
        assert_eq!(v["e"]["allOf"][0]["additionalProperties"], true);
        assert!(v["f"].get("additionalProperties").is_none());
    }

    #[test]
    fn the_document_has_no_bare_object_schema() {
        let text = document().to_string();
        assert!(
            !text.contains(r#"{"type":"object"}"#),
            "a bare object is left"
        );
    }

    #[test]
    fn asset_names_are_plain_file_names() {
        assert!(asset_name("swagger-ui-bundle.js"));
        assert!(asset_name("favicon-32x32.png"));
        for bad in ["", ".env", "..", "a/b", "a%2Fb", "x\\y", &"a".repeat(65)] {
            assert!(!asset_name(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_use_openapi_templates() {
        assert_eq!(openapi_path("/api/v1/users/:id"), "/api/v1/users/{id}");
    }
}
