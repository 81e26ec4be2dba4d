//! The one error type of the API and its RFC 9457 problem+json rendering.

use serde::Serialize;

/// A field-level validation message, rendered in the problem's `errors` array.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub enum AppError {
    /// 400: the request cannot be read at all (malformed JSON, bad encoding).
    BadRequest(String),
    /// 422: the request was read but its values are not acceptable.
    Validation(Vec<FieldError>),
    /// 401 with a stable code (`unauthorized`, `invalid_credentials`, `token_expired`, …).
    Unauthorized(&'static str, String),
    /// 403 with a stable code (`forbidden`, `account_suspended`, …).
    Forbidden(&'static str, String),
    NotFound,
    MethodNotAllowed(String),
    Conflict(String),
    PayloadTooLarge(u64),
    UnsupportedMediaType(String),
    /// 422 that is not about a field (idempotency key reuse with another body, …).
    Unprocessable(&'static str, String),
    RateLimited {
        retry_after_secs: u64,
    },
    /// 416: the requested byte range is outside a resource of this size.
    RangeNotSatisfiable(u64),
    /// Any other refusal with its own stable code and extension members (RFC 9457 §3.2),
    /// e.g. 402 `quota_exceeded` with `metric, limit, used, resets_at`, 402
    /// `feature_not_in_plan`, 409 `managed_by_stripe`, 503 `billing_unavailable`.
    Refused(Box<Refusal>),
    /// Anything unexpected. The message is logged, never shown.
    Internal(String),
}

pub type Result<T> = std::result::Result<T, AppError>;

/// The parts of an `AppError::Refused`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    /// Extension members rendered beside `detail` (never `type`, `status`, … themselves).
    pub members: serde_json::Map<String, serde_json::Value>,
}

impl AppError {
    /// A refusal with a code of its own; add members with `Refusal::with`.
    pub fn refused(status: u16, code: &'static str, detail: impl Into<String>) -> AppError {
        AppError::Refused(Box::new(Refusal {
            status,
            code,
            detail: detail.into(),
            members: serde_json::Map::new(),
        }))
    }

    /// Adds an extension member to a `Refused` error (others are returned unchanged).
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> AppError {
        if let AppError::Refused(r) = &mut self {
            r.members.insert(name.to_string(), value.into());
        }
        self
    }
}

/// The problem document (RFC 9457) every error answers with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    pub request_id: String,
    /// Members specific to the problem's `code` (e.g. `metric`, `limit`, `used`, `resets_at`
    /// for `quota_exceeded`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl AppError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        AppError::Internal(e.to_string())
    }

    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest(_) => 400,
            AppError::Validation(_) => 422,
            AppError::Unauthorized(..) => 401,
            AppError::Forbidden(..) => 403,
            AppError::NotFound => 404,
            AppError::MethodNotAllowed(_) => 405,
            AppError::Conflict(_) => 409,
            AppError::PayloadTooLarge(_) => 413,
            AppError::UnsupportedMediaType(_) => 415,
            AppError::Unprocessable(..) => 422,
            AppError::RateLimited { .. } => 429,
            AppError::RangeNotSatisfiable(_) => 416,
            AppError::Refused(r) => r.status,
            AppError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Validation(_) => "validation_failed",
            AppError::Unauthorized(code, _) => code,
            AppError::Forbidden(code, _) => code,
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed(_) => "method_not_allowed",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::Unprocessable(code, _) => code,
            AppError::RateLimited { .. } => "rate_limited",
            AppError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            AppError::Refused(r) => r.code,
            AppError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            413 => "Payload Too Large",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Internal Server Error",
        }
    }

    fn detail(&self) -> String {
        match self {
            AppError::BadRequest(d)
            | AppError::Unauthorized(_, d)
            | AppError::Forbidden(_, d)
            | AppError::Conflict(d)
            | AppError::UnsupportedMediaType(d)
            | AppError::Unprocessable(_, d) => d.clone(),
            AppError::Refused(r) => r.detail.clone(),
            AppError::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                _ => "The request has invalid fields.".into(),
            },
            AppError::NotFound => "The resource does not exist.".into(),
            AppError::MethodNotAllowed(allow) => {
                format!("This resource supports: {allow}.")
            }
            AppError::PayloadTooLarge(limit) => {
                format!("The body is larger than the limit of {limit} bytes.")
            }
            AppError::RateLimited { retry_after_secs } => {
                format!("Too many requests; retry in {retry_after_secs} s.")
            }
            AppError::RangeNotSatisfiable(size) => {
                format!("The range is outside the {size} bytes of this file.")
            }
            AppError::Internal(_) => {
                "An unexpected error occurred; quote the request id when reporting it.".into()
            }
        }
    }

    pub fn to_problem(&self, request_id: &str) -> Problem {
        let code = self.code();
        Problem {
            type_: format!("https://tenantry.dev/problems/{}", code.replace('_', "-")),
            title: self.title().into(),
            status: self.status(),
            detail: self.detail(),
            code: code.into(),
            errors: match self {
                AppError::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
            request_id: request_id.into(),
            extra: match self {
                AppError::Refused(r) => r.members.clone(),
                _ => serde_json::Map::new(),
            },
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Internal(msg) => write!(f, "internal: {msg}"),
            other => write!(f, "{}: {}", other.code(), other.detail()),
        }
    }
}

impl From<worker::Error> for AppError {
    fn from(e: worker::Error) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for AppError {
    fn from(e: serde_json::Error) -> Self {
        AppError::Internal(format!("json: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_show_their_message() {
        let p = AppError::Internal("db password is hunter2".into()).to_problem("req_1");
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("hunter2"));
        assert_eq!(p.request_id, "req_1");
    }

    #[test]
    fn validation_problem_lists_fields() {
        let p = AppError::Validation(vec![
            FieldError::new("email", "must be an email address"),
            FieldError::new("password", "too short"),
        ])
        .to_problem("r");
        assert_eq!(p.status, 422);
        assert_eq!(p.code, "validation_failed");
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.type_, "https://tenantry.dev/problems/validation-failed");
    }

    #[test]
    fn each_status_has_a_stable_code() {
        assert_eq!(AppError::NotFound.code(), "not_found");
        assert_eq!(AppError::Conflict("x".into()).status(), 409);
        assert_eq!(
            AppError::RateLimited {
                retry_after_secs: 3
            }
            .status(),
            429
        );
        assert_eq!(AppError::PayloadTooLarge(10).code(), "payload_too_large");
    }

    #[test]
    fn a_refusal_renders_its_code_and_members_beside_the_standard_ones() {
        let p = AppError::refused(402, "quota_exceeded", "used up")
            .with("metric", "executions")
            .with("limit", 5)
            .to_problem("r");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], 402);
        assert_eq!(v["code"], "quota_exceeded");
        assert_eq!(v["title"], "Payment Required");
        assert_eq!(v["metric"], "executions");
        assert_eq!(v["limit"], 5);
        assert_eq!(v["type"], "https://tenantry.dev/problems/quota-exceeded");
    }
}
