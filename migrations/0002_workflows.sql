-- Module W: workflows, their executions (one queue message per step), the step ledger,
-- dead-lettered messages, tenant settings (callback URL and signing secret) and tenant secrets.

CREATE TABLE workflows (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'deployed', 'archived')),
  config TEXT NOT NULL,
  cost_per_execution REAL NOT NULL DEFAULT 0,
  revenue_per_execution REAL NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  deployed_at TEXT
);
CREATE INDEX workflows_tenant_page ON workflows (tenant_id, created_at, id);

-- `config` is the workflow's config when the execution started, so edits never change a run.
-- `next_step` is the index of the first unfinished step; a step message for an earlier index
-- is a redelivery and is skipped. `lease_id`/`lease_until` let one message at a time run a step.
CREATE TABLE executions (
  id TEXT PRIMARY KEY,
  workflow_id TEXT NOT NULL REFERENCES workflows(id),
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  progress INTEGER NOT NULL DEFAULT 0,
  input_data TEXT NOT NULL DEFAULT '{}',
  output_data TEXT,
  error_message TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  config TEXT NOT NULL,
  step_count INTEGER NOT NULL,
  next_step INTEGER NOT NULL DEFAULT 0,
  step_outputs TEXT NOT NULL DEFAULT '{}',
  lease_id TEXT,
  lease_until INTEGER,
  timeout_at TEXT NOT NULL,
  created_by TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  started_at TEXT,
  completed_at TEXT,
  duration_seconds REAL
);
CREATE INDEX executions_tenant_page ON executions (tenant_id, created_at, id);
CREATE INDEX executions_workflow_page ON executions (workflow_id, created_at, id);
CREATE INDEX executions_status ON executions (status, timeout_at);
CREATE INDEX executions_created ON executions (created_at);

-- One row per attempt of a step: what ran, how long, and why it failed.
CREATE TABLE step_runs (
  execution_id TEXT NOT NULL REFERENCES executions(id),
  step_index INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
  error TEXT,
  started_at TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  PRIMARY KEY (execution_id, step_index, attempt)
);

-- Messages that kept failing, recorded by the dead-letter queue's consumer.
CREATE TABLE dead_letters (
  id TEXT PRIMARY KEY,
  tenant_id TEXT,
  execution_id TEXT,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE INDEX dead_letters_page ON dead_letters (created_at, id);

CREATE TABLE tenant_settings (
  tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
  callback_url TEXT,
  allowed_origins TEXT NOT NULL DEFAULT '[]',
  auto_assign_conversations INTEGER NOT NULL DEFAULT 0,
  -- AES-256-GCM under ENCRYPTION_KEY; returned only once, by the rotate route.
  callback_secret TEXT,
  updated_at TEXT NOT NULL
);

CREATE TABLE tenant_secrets (
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  -- AES-256-GCM under ENCRYPTION_KEY; never returned.
  value TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant_id, name)
);
