//! Workflows and executions as the API shows them, and the bodies that create and change them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::config::WorkflowConfig;
use super::execution::ExecutionStatus;
use crate::http::json::{self, Checks};
use crate::platform::egress::Policy;

pub const STATUSES: [&str; 3] = ["draft", "deployed", "archived"];
/// A step failing this many times fails its execution.
pub const MAX_ATTEMPTS: i64 = 3;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Workflow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    /// `draft`, `deployed` or `archived`; only deployed workflows can be executed.
    #[schema(example = "deployed")]
    pub status: String,
    pub config: WorkflowConfig,
    /// What one execution costs the agency (EUR).
    pub cost_per_execution: f64,
    /// What the client pays per completed execution (EUR).
    pub revenue_per_execution: f64,
    pub created_at: String,
    pub updated_at: String,
    pub deployed_at: Option<String>,
    /// Defined by the platform admin (the agency) for this organisation: only the platform
    /// admin changes its pricing; the organisation's admins may still deploy or pause it.
    pub managed: bool,
    /// Only on `GET /workflows/:id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<WorkflowStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStats {
    pub executions: i64,
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Completed ÷ (completed + failed), in percent; 0 before anything finished.
    pub success_rate: f64,
    /// Mean duration of completed executions, in seconds.
    pub average_duration_seconds: Option<f64>,
    /// Completed executions × revenue per execution (EUR).
    pub revenue: f64,
    /// Finished (completed or failed) executions × cost per execution (EUR).
    pub cost: f64,
}

/// `POST /workflows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// The client organisation (platform admin only; tenant admins create in their own).
    pub tenant_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    /// `draft` (default) or `deployed`.
    pub status: Option<String>,
    pub config: WorkflowConfig,
    pub cost_per_execution: Option<f64>,
    pub revenue_per_execution: Option<f64>,
}

/// `PATCH /workflows/:id`: any of these. `status: "deployed"` deploys. The pricing of a
/// `managed` workflow is the platform admin's to change (403 for the organisation's admins).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflow {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub config: Option<WorkflowConfig>,
    pub cost_per_execution: Option<f64>,
    pub revenue_per_execution: Option<f64>,
}

/// Validated workflow fields, shared by create and update.
pub struct Fields {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub config: Option<WorkflowConfig>,
    pub cost: Option<f64>,
    pub revenue: Option<f64>,
}

fn money(field: &str, v: Option<f64>, checks: &mut Checks) -> Option<f64> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=1_000_000.0).contains(&x) => {
            checks.add(field, "must be between 0 and 1000000");
            None
        }
        Some(x) => Some((x * 100.0).round() / 100.0),
        None => None,
    }
}

impl UpdateWorkflow {
    /// Step URLs are checked against `egress`.
    pub fn validate(self, egress: &Policy, checks: &mut Checks) -> Fields {
        let name = self
            .name
            .and_then(|n| checks.take("name", json::text(&n, 1, 120)));
        let description = self
            .description
            .and_then(|d| checks.take("description", json::text(&d, 0, 2000)));
        let status = self.status.filter(|s| {
            let ok = STATUSES.contains(&s.as_str());
            if !ok {
                checks.add("status", format!("must be one of {}", STATUSES.join(", ")));
            }
            ok
        });
        if let Some(c) = &self.config {
            c.check(egress, checks);
        }
        Fields {
            name,
            description,
            status,
            config: self.config,
            cost: money("cost_per_execution", self.cost_per_execution, checks),
            revenue: money("revenue_per_execution", self.revenue_per_execution, checks),
        }
    }
}

impl CreateWorkflow {
    /// The target tenant (if named) and the validated fields.
    pub fn validate(
        self,
        egress: &Policy,
    ) -> crate::platform::error::Result<(Option<String>, Fields)> {
        let mut checks = Checks::new();
        let status = self.status.unwrap_or_else(|| "draft".into());
        if status == "archived" {
            checks.add("status", "a new workflow is `draft` or `deployed`");
        }
        let fields = UpdateWorkflow {
            name: Some(self.name),
            description: Some(self.description.unwrap_or_default()),
            status: Some(status),
            config: Some(self.config),
            cost_per_execution: Some(self.cost_per_execution.unwrap_or(0.0)),
            revenue_per_execution: Some(self.revenue_per_execution.unwrap_or(0.0)),
        }
        .validate(egress, &mut checks);
        checks.finish()?;
        Ok((self.tenant_id, fields))
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Execution {
    pub id: String,
    pub workflow_id: String,
    pub workflow_name: String,
    pub tenant_id: String,
    #[schema(example = "processing")]
    pub status: ExecutionStatus,
    /// Finished steps ÷ all steps, 0–100.
    pub progress: i64,
    pub steps_total: i64,
    pub steps_completed: i64,
    pub input_data: Value,
    /// The last step's output, once completed.
    pub output_data: Option<Value>,
    pub error_message: Option<String>,
    /// Step attempts so far, retries included.
    pub attempts: i64,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub duration_seconds: Option<f64>,
    /// Only on `GET /executions/:id`: every attempt of every step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepRun>>,
}

/// The answer to `POST /workflows/:id/execute`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedExecution {
    pub execution_id: String,
    #[serde(flatten)]
    pub execution: Execution,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepRun {
    pub step_index: i64,
    pub name: String,
    pub kind: String,
    pub attempt: i64,
    /// `succeeded` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub started_at: String,
    pub duration_ms: i64,
}

/// `POST /workflows/:id/execute`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteWorkflow {
    /// The values `{{input.…}}` templates read; a JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input_data: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> crate::platform::error::Result<(Option<String>, Fields)> {
        crate::http::json::parse_json::<CreateWorkflow>(body.to_string().as_bytes())?
            .validate(&Policy::default())
    }

    #[test]
    fn a_new_workflow_defaults_to_a_free_draft() {
        let (tenant, f) =
            create(json!({"name": " Resize ", "config": {"steps": [{"name": "w", "kind": "delay", "seconds": 1}]}}))
                .unwrap();
        assert_eq!(tenant, None);
        assert_eq!(f.name.as_deref(), Some("Resize"));
        assert_eq!(f.status.as_deref(), Some("draft"));
        assert_eq!((f.cost, f.revenue), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn bad_fields_are_all_reported() {
        let err = create(
            json!({"name": "", "status": "archived", "revenue_per_execution": -1,
                                "config": {"steps": [{"name": "w", "kind": "delay", "seconds": 0}]}}),
        );
        let crate::platform::error::AppError::Validation(errors) = err.err().unwrap() else {
            panic!("expected validation errors")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "status",
                "name",
                "config.steps[0].seconds",
                "revenue_per_execution"
            ]
        );
    }
}
