-- Messaging hardening (issue 14). SQLite cannot change a CHECK constraint in place, so
-- `messages` and `webhook_events` are rebuilt with their new states:
--   messages: `sending` (a claimed send, with the holder and its lease), the campaign
--     recipient index (a chunk redelivery inserts nothing twice), and the inbound attachment
--     (the tenant media file it became, its state and error).
--   webhook_events: `rejected` (a post for a phone number id that is not the tenant's channel).
-- campaigns keep their recipients (each with its own parameters) for the chunked queueing.
PRAGMA defer_foreign_keys = true;

CREATE TABLE messages_new (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  conversation_id TEXT NOT NULL REFERENCES conversations(id),
  direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  wamid TEXT,
  type TEXT NOT NULL,
  text TEXT,
  content TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL
    CHECK (status IN ('received', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed')),
  error_code TEXT,
  error_title TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  sent_by TEXT,
  campaign_id TEXT,
  wa_timestamp TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  -- The delivery that claimed the send (queue message id and invocation) and until when.
  lease_holder TEXT,
  lease_until_ms INTEGER,
  campaign_index INTEGER,
  -- Inbound media: the tenant media file, and where fetching it stands.
  media_id TEXT,
  media_status TEXT CHECK (media_status IN ('pending', 'stored', 'failed')),
  media_error TEXT,
  media_attempts INTEGER NOT NULL DEFAULT 0
);
INSERT INTO messages_new (id, tenant_id, conversation_id, direction, wamid, type, text, content,
  status, error_code, error_title, attempts, sent_by, campaign_id, wa_timestamp, created_at, updated_at)
SELECT id, tenant_id, conversation_id, direction, wamid, type, text, content,
  status, error_code, error_title, attempts, sent_by, campaign_id, wa_timestamp, created_at, updated_at
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE UNIQUE INDEX messages_wamid ON messages (tenant_id, wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);
CREATE INDEX messages_page ON messages (tenant_id, created_at, id);
CREATE INDEX messages_campaign ON messages (campaign_id, status);
CREATE UNIQUE INDEX messages_campaign_recipient ON messages (campaign_id, campaign_index)
  WHERE campaign_id IS NOT NULL AND campaign_index IS NOT NULL;
-- The sweep's look-up of sends whose claim ran out.
CREATE INDEX messages_sending ON messages (status, lease_until_ms) WHERE status = 'sending';

CREATE TABLE webhook_events_new (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  payload TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'received'
    CHECK (status IN ('received', 'processed', 'invalid', 'rejected', 'failed')),
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  received_at TEXT NOT NULL,
  processed_at TEXT,
  created_at TEXT NOT NULL
);
INSERT INTO webhook_events_new SELECT id, tenant_id, payload, status, error, attempts,
  received_at, processed_at, created_at FROM webhook_events;
DROP TABLE webhook_events;
ALTER TABLE webhook_events_new RENAME TO webhook_events;
CREATE INDEX webhook_events_page ON webhook_events (tenant_id, created_at, id);

-- `[{"to": "4915…", "parameters": [...]}, …]`: what the chunk jobs queue.
ALTER TABLE campaigns ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
