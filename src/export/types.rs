//! What can be exported: each type's table, its allow-listed columns (never password or key
//! hashes, sealed secrets, tokens, leases or storage keys) and the time column its window and
//! keyset pages run on; and how one row renders as a CSV record or a JSON object. Pure: no
//! bindings, unit-tested natively.

use serde_json::{Map, Value};

use crate::platform::csv::{csv_field, csv_line};

/// One exportable type.
#[derive(Debug, PartialEq, Eq)]
pub struct ExportType {
    /// The `?type=` value.
    pub name: &'static str,
    pub table: &'static str,
    /// The rows' time (RFC 3339 text): `from`/`to` filter on it; pages are ordered by it, then id.
    pub time: &'static str,
    /// The columns exported, in this order (the CSV header and each JSON object's keys).
    pub columns: &'static [&'static str],
    /// Columns holding JSON text: a JSON export nests them as values instead of strings.
    pub json: &'static [&'static str],
}

pub const TYPES: [ExportType; 14] = [
    ExportType {
        name: "users",
        table: "users",
        time: "created_at",
        columns: &[
            "id",
            "email",
            "full_name",
            "role",
            "status",
            "avatar_url",
            "bio",
            "locale",
            "timezone",
            "created_at",
            "updated_at",
            "last_login",
        ],
        json: &[],
    },
    ExportType {
        name: "teams",
        table: "teams",
        time: "created_at",
        columns: &[
            "id",
            "name",
            "description",
            "created_by",
            "created_at",
            "updated_at",
        ],
        json: &[],
    },
    ExportType {
        name: "audit_logs",
        table: "audit_logs",
        time: "created_at",
        columns: &[
            "id",
            "created_at",
            "actor_id",
            "actor_email",
            "action",
            "target_type",
            "target_id",
            "ip",
            "user_agent",
            "request_id",
            "metadata",
        ],
        json: &["metadata"],
    },
    ExportType {
        name: "workflows",
        table: "workflows",
        time: "created_at",
        columns: &[
            "id",
            "name",
            "description",
            "status",
            "managed",
            "config",
            "cost_per_execution",
            "revenue_per_execution",
            "created_at",
            "updated_at",
            "deployed_at",
        ],
        json: &["config"],
    },
    ExportType {
        name: "executions",
        table: "executions",
        time: "created_at",
        columns: &[
            "id",
            "workflow_id",
            "status",
            "progress",
            "input_data",
            "output_data",
            "error_message",
            "attempts",
            "step_count",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
            "duration_seconds",
        ],
        json: &["input_data", "output_data"],
    },
    ExportType {
        name: "support_tickets",
        table: "support_tickets",
        time: "created_at",
        columns: &[
            "id",
            "subject",
            "description",
            "priority",
            "status",
            "created_by",
            "created_at",
            "updated_at",
        ],
        json: &[],
    },
    ExportType {
        name: "conversations",
        table: "conversations",
        time: "created_at",
        columns: &[
            "id",
            "contact_id",
            "status",
            "assigned_to",
            "tags",
            "unread_count",
            "last_message_at",
            "last_message_preview",
            "created_at",
            "updated_at",
        ],
        json: &["tags"],
    },
    ExportType {
        name: "messages",
        table: "messages",
        time: "created_at",
        columns: &[
            "id",
            "conversation_id",
            "direction",
            "wamid",
            "type",
            "text",
            "status",
            "error_code",
            "error_title",
            "sent_by",
            "campaign_id",
            "media_id",
            "media_status",
            "wa_timestamp",
            "created_at",
            "updated_at",
        ],
        json: &[],
    },
    ExportType {
        name: "contacts",
        table: "contacts",
        time: "created_at",
        columns: &[
            "id",
            "wa_id",
            "name",
            "tags",
            "notes",
            "created_at",
            "updated_at",
        ],
        json: &["tags"],
    },
    ExportType {
        name: "media",
        table: "media",
        time: "created_at",
        columns: &[
            "id",
            "filename",
            "content_type",
            "size",
            "attributes",
            "created_by",
            "created_at",
        ],
        json: &["attributes"],
    },
    ExportType {
        name: "products",
        table: "products",
        time: "created_at",
        columns: &[
            "id",
            "name",
            "sku",
            "price",
            "currency",
            "quantity",
            "category",
            "attributes",
            "status",
            "media_ids",
            "source_job_id",
            "created_at",
            "updated_at",
        ],
        json: &["attributes", "media_ids"],
    },
    ExportType {
        name: "payments",
        table: "payments",
        time: "created_at",
        columns: &[
            "id",
            "number",
            "status",
            "amount_due",
            "amount_paid",
            "amount_refunded",
            "currency",
            "period_start",
            "period_end",
            "hosted_invoice_url",
            "invoice_pdf",
            "created_at",
            "updated_at",
        ],
        json: &[],
    },
    ExportType {
        name: "optimizations",
        table: "optimizations",
        time: "created_at",
        columns: &[
            "id",
            "user_id",
            "api_key_id",
            "batch_id",
            "provider",
            "model",
            "strategy",
            "compression_level",
            "original_text",
            "optimized_text",
            "tokens_before",
            "tokens_after",
            "tokens_saved",
            "savings_percent",
            "note",
            "created_at",
        ],
        json: &[],
    },
    ExportType {
        name: "analytics_events",
        table: "analytics_events",
        time: "occurred_at",
        columns: &[
            "id",
            "name",
            "user_id",
            "api_key_id",
            "session_id",
            "anonymous_id",
            "properties",
            "occurred_at",
            "received_at",
        ],
        json: &["properties"],
    },
];

/// The `?type=` values, in the table's order.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

pub fn find(name: &str) -> Option<&'static ExportType> {
    TYPES.iter().find(|t| t.name == name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub const NAMES: [&'static str; 2] = ["csv", "json"];

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

impl ExportType {
    /// The CSV header record.
    pub fn csv_header(&self) -> String {
        csv_line(self.columns)
    }

    /// One row as a CSV record: text formula-safe and quoted, numbers as they are, NULL empty.
    pub fn csv_record(&self, row: &Map<String, Value>) -> String {
        let mut line = String::new();
        for (i, col) in self.columns.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            match row.get(*col) {
                None | Some(Value::Null) => {}
                // Numbers come from the database, never from a person: no formula to defuse,
                // and a `'` before a negative amount would corrupt it.
                Some(Value::Number(n)) => line.push_str(&n.to_string()),
                Some(Value::Bool(b)) => line.push_str(if *b { "true" } else { "false" }),
                Some(Value::String(s)) => line.push_str(&csv_field(s)),
                Some(other) => line.push_str(&csv_field(&other.to_string())),
            }
        }
        line.push_str("\r\n");
        line
    }

    /// One row as a JSON object with the columns in order; JSON text columns nested.
    pub fn json_object(&self, row: &Map<String, Value>) -> String {
        let mut out = String::from("{");
        for (i, col) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String((*col).to_string()).to_string());
            out.push(':');
            let value = row.get(*col).cloned().unwrap_or(Value::Null);
            let value = match value {
                Value::String(s) if self.json.contains(col) => {
                    serde_json::from_str(&s).unwrap_or(Value::String(s))
                }
                v => v,
            };
            out.push_str(&value.to_string());
        }
        out.push('}');
        out
    }

    /// The select list, qualified by the table.
    pub fn select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("{}.{c}", self.table))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parts of column names that would leak a credential (or an internal handle) if exported.
    const NEVER: [&str; 11] = [
        "password",
        "hash",
        "secret",
        "access_token",
        "refresh_token",
        "verify_token",
        "lease",
        "r2_key",
        "upload_id",
        "sha256",
        "stripe_",
    ];

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_fourteen_types_are_there_once() {
        let names = names();
        assert_eq!(
            names,
            [
                "users",
                "teams",
                "audit_logs",
                "workflows",
                "executions",
                "support_tickets",
                "conversations",
                "messages",
                "contacts",
                "media",
                "products",
                "payments",
                "optimizations",
                "analytics_events"
            ]
        );
        assert!(find("products").is_some());
        assert!(find("sessions").is_none() && find("api_keys").is_none() && find("").is_none());
    }

    #[test]
    fn no_type_exports_a_credential_column() {
        for t in &TYPES {
            for col in t.columns {
                for bad in NEVER {
                    assert!(
                        !col.contains(bad),
                        "{}.{col} looks like a credential",
                        t.name
                    );
                }
            }
            for col in t.json {
                assert!(t.columns.contains(col), "{}.{col} is not exported", t.name);
            }
        }
        assert!(!find("users").unwrap().columns.contains(&"password_hash"));
        assert!(!find("users").unwrap().columns.contains(&"preferences"));
    }

    #[test]
    fn every_type_pages_on_columns_it_exports() {
        for t in &TYPES {
            assert!(t.columns.contains(&"id"), "{}", t.name);
            assert!(t.columns.contains(&t.time), "{}", t.name);
            let unique: std::collections::HashSet<_> = t.columns.iter().collect();
            assert_eq!(unique.len(), t.columns.len(), "{} repeats a column", t.name);
        }
        assert_eq!(find("analytics_events").unwrap().time, "occurred_at");
    }

    #[test]
    fn every_exported_column_exists_in_the_migrations() {
        let sql: String = [
            include_str!("../../migrations/0001_init.sql"),
            include_str!("../../migrations/0002_workflows.sql"),
            include_str!("../../migrations/0003_requests_tickets.sql"),
            include_str!("../../migrations/0004_media.sql"),
            include_str!("../../migrations/0005_messaging.sql"),
            include_str!("../../migrations/0007_messaging_hardening.sql"),
            include_str!("../../migrations/0008_workflow_managed.sql"),
            include_str!("../../migrations/0009_billing.sql"),
            include_str!("../../migrations/0010_optimize.sql"),
            include_str!("../../migrations/0011_collaboration.sql"),
        ]
        .concat();
        for t in &TYPES {
            for col in t.columns {
                let declared = sql.lines().any(|l| {
                    let l = l.trim();
                    l.starts_with(&format!("{col} "))
                        || l.contains(&format!("ALTER TABLE {} ADD COLUMN {col} ", t.table))
                });
                assert!(declared, "{}.{col} is not declared", t.table);
            }
        }
    }

    #[test]
    fn csv_records_are_formula_safe_and_keep_numbers() {
        let t = find("products").unwrap();
        assert!(t.csv_header().starts_with("id,name,sku,price,"));
        let line = t.csv_record(&obj(json!({
            "id": "prd_1", "name": "=HYPERLINK(\"x\")", "sku": "A-1", "price": -250,
            "currency": "EUR", "quantity": 3, "category": null, "attributes": "{\"a\":1}",
            "status": "draft", "media_ids": "[]", "source_job_id": null,
            "created_at": "2026-12-01T00:00:00.000Z", "updated_at": "2026-12-01T00:00:00.000Z",
            "tenant_id": "ten_other"
        })));
        assert_eq!(
            line,
            "prd_1,\"'=HYPERLINK(\"\"x\"\")\",A-1,-250,EUR,3,,\"{\"\"a\"\":1}\",draft,[],,\
             2026-12-01T00:00:00.000Z,2026-12-01T00:00:00.000Z\r\n"
        );
        assert!(!line.contains("ten_other"));
    }

    #[test]
    fn json_objects_keep_column_order_and_nest_json_text() {
        let t = find("analytics_events").unwrap();
        let s = t.json_object(&obj(json!({
            "id": "evt_1", "name": "page.view", "user_id": null, "properties": "{\"path\":\"/\"}",
            "occurred_at": "2026-12-01T00:00:00.000Z", "received_at": "x", "extra": 1
        })));
        assert!(s.starts_with("{\"id\":\"evt_1\",\"name\":\"page.view\",\"user_id\":null,"));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["properties"]["path"], "/");
        assert_eq!(v["session_id"], Value::Null);
        assert!(v.get("extra").is_none());
        // JSON text that does not parse stays a string.
        let s = t.json_object(&obj(json!({"properties": "not json"})));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["properties"], "not json");
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("csv"), Some(Format::Csv));
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(Format::parse("CSV"), None);
    }
}
