-- Exports a tenant's admins downloaded (GET /export), listed by GET /exports: what was taken,
-- by whom, over which window and how many rows, kept for compliance beside the audit entry.
CREATE TABLE export_history (
  id TEXT PRIMARY KEY,                 -- exp_…
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT,                        -- the admin who asked, or
  api_key_id TEXT,                     -- the admin-scoped API key that asked
  type TEXT NOT NULL,                  -- users, products, audit_logs, …
  format TEXT NOT NULL CHECK (format IN ('csv', 'json')),
  from_time TEXT,                      -- the window asked for (RFC 3339), NULL = unbounded
  to_time TEXT,
  row_count INTEGER NOT NULL,          -- rows counted before the stream started
  filename TEXT NOT NULL,
  request_id TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX export_history_tenant_page ON export_history (tenant_id, created_at, id);

-- Exports page analytics events by (occurred_at, id) within a tenant; the existing index stops
-- at occurred_at, which would sort every matching row again for each page.
CREATE INDEX analytics_events_tenant_page ON analytics_events (tenant_id, occurred_at, id);
