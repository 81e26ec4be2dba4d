-- Prompt optimisation (issue 16): each tenant's LLM providers (keys sealed with AES-256-GCM,
-- AAD `provider:{tenant}:{name}`), every optimisation made (prompts are customer data: the
-- author or an admin can delete one), and batches with one row per item, run by the jobs Worker.

CREATE TABLE provider_configs (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name TEXT NOT NULL CHECK (name IN ('openai', 'anthropic', 'deepseek', 'gemini', 'openai-compatible')),
  key_sealed TEXT,                     -- v1.<base64url(nonce ‖ ciphertext ‖ tag)>; NULL: none stored
  key_last4 TEXT,
  base_url TEXT,                       -- NULL: the deployment's *_API_BASE
  model TEXT,                          -- NULL: the deployment's default model
  enabled INTEGER NOT NULL DEFAULT 1,
  is_default INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0, -- failures in a row (reset by a success)
  cooldown_until TEXT,                 -- skipped until then after 5 failures in a row
  last_error TEXT,                     -- scrubbed
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant_id, name)
);
-- At most one default per tenant.
CREATE UNIQUE INDEX provider_configs_default ON provider_configs (tenant_id) WHERE is_default = 1;

CREATE TABLE optimize_batches (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT,
  api_key_id TEXT,
  provider TEXT NOT NULL,
  model TEXT,
  strategy TEXT NOT NULL,
  compression_level INTEGER NOT NULL,
  fallbacks TEXT NOT NULL DEFAULT '[]',  -- JSON array of provider names
  status TEXT NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'running', 'completed', 'cancelled')),
  total INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  completed_at TEXT
);
CREATE INDEX optimize_batches_tenant_page ON optimize_batches (tenant_id, created_at, id);

CREATE TABLE optimize_batch_items (
  id TEXT PRIMARY KEY,                 -- also the usage meter's op id for its unit
  batch_id TEXT NOT NULL REFERENCES optimize_batches(id) ON DELETE CASCADE,
  tenant_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  ref TEXT,
  text TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_id TEXT,
  lease_attempt INTEGER,
  lease_until INTEGER,
  error TEXT,
  optimization_id TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX optimize_batch_items_batch ON optimize_batch_items (batch_id, position);
CREATE INDEX optimize_batch_items_reserved ON optimize_batch_items (tenant_id, status, created_at);

CREATE TABLE optimizations (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT,                        -- the author (a user), or
  api_key_id TEXT,                     -- the API key that asked
  batch_id TEXT,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  strategy TEXT NOT NULL,
  compression_level INTEGER NOT NULL,
  original_text TEXT NOT NULL,
  optimized_text TEXT NOT NULL,
  tokens_before INTEGER NOT NULL,
  tokens_after INTEGER NOT NULL,
  tokens_saved INTEGER NOT NULL,
  savings_percent REAL NOT NULL,
  provider_usage TEXT,                 -- JSON {input_tokens, output_tokens}, NULL for local
  attempts TEXT NOT NULL DEFAULT '[]', -- JSON: the providers tried, in order
  note TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX optimizations_tenant_page ON optimizations (tenant_id, created_at, id);
CREATE INDEX optimizations_user_page ON optimizations (tenant_id, user_id, created_at, id);
