//! Message templates: name, language, category, components with `{{1}}` body parameters, and
//! rendering one with its parameters (sends and campaigns use it).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::db::{Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

pub const CATEGORIES: [&str; 3] = ["MARKETING", "UTILITY", "AUTHENTICATION"];
const COMPONENT_TYPES: [&str; 4] = ["HEADER", "BODY", "FOOTER", "BUTTONS"];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/templates", Access::Agent, handler!(list))
            .doc("templates", "Message templates, newest first")
            .list("Template")
            .query(&PAGING),
        Route::post("/api/v1/templates", Access::TenantAdmin, handler!(create))
            .doc("templates", "Register a message template")
            .body("CreateTemplate")
            .created("Template"),
    ]
}

/// A template to send, by name and language, with its body parameters in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub parameters: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    #[schema(value_type = Vec<Object>)]
    pub components: Value,
    /// How many `{{n}}` parameters the body takes.
    pub parameter_count: i64,
    pub created_at: String,
}

#[derive(Deserialize)]
struct TemplateRow {
    id: String,
    name: String,
    language: String,
    category: String,
    components: String,
    parameter_count: i64,
    created_at: String,
}

impl From<TemplateRow> for Template {
    fn from(r: TemplateRow) -> Self {
        Template {
            id: r.id,
            name: r.name,
            language: r.language,
            category: r.category,
            components: serde_json::from_str(&r.components).unwrap_or(Value::Null),
            parameter_count: r.parameter_count,
            created_at: r.created_at,
        }
    }
}

const TEMPLATE_COLUMNS: &str =
    "templates.id, templates.name, templates.language, templates.category, \
     templates.components, templates.parameter_count, templates.created_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    /// Lower case letters, digits and `_`.
    pub name: String,
    /// e.g. `en_US`, `de`.
    pub language: String,
    pub category: String,
    /// `[{"type": "BODY", "text": "Hi {{1}}, your order {{2}} shipped"}, …]`; one BODY.
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

/// The `{{n}}` placeholders of a text, in order of appearance.
pub fn placeholders(text: &str) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("has a `{{` without `}}`")?;
        let n: usize = after[..end].trim().parse().map_err(|_| {
            format!(
                "`{{{{{}}}}}` is not a numbered parameter like {{{{1}}}}",
                &after[..end]
            )
        })?;
        out.push(n);
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Checks components; returns the body's parameter count.
pub fn check_components(components: &[Value]) -> std::result::Result<i64, String> {
    if components.is_empty() || components.len() > 10 {
        return Err("must have 1–10 components".into());
    }
    let mut body = None;
    for c in components {
        let kind = c["type"].as_str().unwrap_or_default().to_ascii_uppercase();
        if !COMPONENT_TYPES.contains(&kind.as_str()) {
            return Err(format!(
                "each component's type is one of {}",
                COMPONENT_TYPES.join(", ")
            ));
        }
        let text = c
            .get("text")
            .map(|t| t.as_str().ok_or("a component's text must be a string"));
        let text = text.transpose()?;
        if kind != "BODY" && text.is_some_and(|t| !placeholders(t).unwrap_or_default().is_empty()) {
            return Err("only the BODY takes {{n}} parameters".into());
        }
        if kind == "BODY" {
            if body.is_some() {
                return Err("exactly one BODY component".into());
            }
            let text = text.filter(|t| !t.trim().is_empty() && t.chars().count() <= 1024);
            body = Some(text.ok_or("the BODY needs a text of 1–1024 characters")?);
        }
    }
    let body = body.ok_or("exactly one BODY component")?;
    let mut seen = placeholders(body)?;
    seen.sort_unstable();
    seen.dedup();
    if seen.iter().enumerate().any(|(i, n)| *n != i + 1) {
        return Err("body parameters must be numbered {{1}}, {{2}}, … without gaps".into());
    }
    Ok(seen.len() as i64)
}

/// The body text with its parameters filled in.
pub fn fill(text: &str, params: &[String]) -> String {
    let mut out = text.to_string();
    for (i, p) in params.iter().enumerate() {
        out = out.replace(&format!("{{{{{}}}}}", i + 1), p);
    }
    out
}

fn valid_name(n: &str) -> bool {
    (1..=512).contains(&n.len())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_language(l: &str) -> bool {
    let (lang, region) = l.split_once('_').unwrap_or((l, ""));
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && (region.is_empty()
            || (region.len() == 2 && region.chars().all(|c| c.is_ascii_uppercase())))
}

pub async fn find(
    db: &Db,
    tenant_id: &str,
    name: &str,
    language: &str,
) -> Result<Option<Template>> {
    Ok(db
        .one::<TemplateRow>(
            &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE tenant_id = ?1 AND name = ?2 AND language = ?3"),
            &args![tenant_id, name, language],
        )
        .await?
        .map(Into::into))
}

/// Checks a template reference against the stored template; returns the filled body text.
pub async fn render(db: &Db, tenant_id: &str, t: &TemplateRef) -> Result<String> {
    let template = find(db, tenant_id, &t.name, &t.language)
        .await?
        .ok_or_else(|| {
            AppError::field("template.name", "no template with this name and language")
        })?;
    if t.parameters.len() as i64 != template.parameter_count {
        return Err(AppError::field(
            "template.parameters",
            format!("the template takes {} parameters", template.parameter_count),
        ));
    }
    Ok(fill(template.body_text(), &t.parameters))
}

impl Template {
    /// The BODY component's text, with its `{{n}}` placeholders.
    pub fn body_text(&self) -> &str {
        self.components
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case("BODY"))
            })
            .and_then(|c| c["text"].as_str())
            .unwrap_or_default()
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE templates.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    f.page(&page, "templates");
    let rows: Vec<TemplateRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Template> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |t| (t.created_at.clone(), t.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateTemplate = cx.json()?;
    let mut checks = Checks::new();
    if !valid_name(&body.name) {
        checks.add("name", "must be 1–512 characters of a-z, 0-9 and _");
    }
    if !valid_language(&body.language) {
        checks.add("language", "must be a language code like en or en_US");
    }
    let category = body.category.to_ascii_uppercase();
    if !CATEGORIES.contains(&category.as_str()) {
        checks.add(
            "category",
            format!("must be one of {}", CATEGORIES.join(", ")),
        );
    }
    let count = checks.take("components", check_components(&body.components));
    checks.finish()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let id = ids::new_id("tpl");
    db.batch(vec![
        db.stmt(
            "INSERT INTO templates (id, tenant_id, name, language, category, components, parameter_count, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &args![
                id.as_str(),
                tenant_id,
                body.name.as_str(),
                body.language.as_str(),
                category.as_str(),
                Value::Array(body.components.clone()).to_string(),
                count.unwrap_or(0),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "template.created")
            .target("template", id.as_str())
            .meta(json!({"name": body.name, "language": body.language}))
            .stmt(&db)?,
    ])
    .await
    .map_err(|e| match e {
        AppError::Conflict(_) => AppError::Conflict("A template with this name and language exists.".into()),
        other => other,
    })?;
    let t = find(&db, tenant_id, &body.name, &body.language)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::created(&t, Some(format!("/api/v1/templates/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_parameters_are_numbered_without_gaps() {
        let c = |text: &str| {
            vec![
                json!({"type": "HEADER", "text": "Order"}),
                json!({"type": "body", "text": text}),
            ]
        };
        assert_eq!(
            check_components(&c("Hi {{1}}, order {{2}} shipped ({{1}})")),
            Ok(2)
        );
        assert_eq!(check_components(&c("No parameters")), Ok(0));
        assert!(check_components(&c("Hi {{2}}")).is_err());
        assert!(check_components(&c("Hi {{name}}")).is_err());
        assert!(check_components(&c("Hi {{1")).is_err());
        assert!(check_components(&[json!({"type": "FOOTER", "text": "x"})]).is_err());
        assert!(check_components(&[
            json!({"type": "BODY", "text": "a"}),
            json!({"type": "BODY", "text": "b"})
        ])
        .is_err());
        assert!(check_components(&[
            json!({"type": "HEADER", "text": "{{1}}"}),
            json!({"type": "BODY", "text": "b"})
        ])
        .is_err());
        assert!(check_components(&[json!({"type": "CAROUSEL"})]).is_err());
    }

    #[test]
    fn parameters_fill_the_body_and_names_are_checked() {
        assert_eq!(
            fill("Hi {{1}}, order {{2}}", &["Ann".into(), "42".into()]),
            "Hi Ann, order 42"
        );
        assert!(
            valid_language("en_US")
                && valid_language("de")
                && !valid_language("EN")
                && !valid_language("en-us")
        );
        assert!(valid_name("order_update_2") && !valid_name("Order Update"));
    }
}
