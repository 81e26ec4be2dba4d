-- Web push (issue 18): browsers' PushSubscriptions per user, the `push` channel of a
-- notification preference, and one delivery row per (notice, subscription) that the jobs
-- Worker encrypts (RFC 8291) and sends with VAPID (RFC 8292).

CREATE TABLE push_subscriptions (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  endpoint TEXT NOT NULL,
  p256dh TEXT NOT NULL,                -- base64url, 65-byte uncompressed P-256 point
  auth TEXT NOT NULL,                  -- base64url, 16 bytes
  expiration_time INTEGER,             -- epoch ms, as the browser gave it (may be null)
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (user_id, endpoint)
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (tenant_id, user_id, created_at, id);

-- Existing preference rows keep push off.
ALTER TABLE notification_preferences ADD COLUMN push INTEGER NOT NULL DEFAULT 0;

-- One encrypted message to one subscription. The subscription may be gone by the time it is
-- sent (deleted, or removed after a 404/410): the row keeps what it needs to say so.
CREATE TABLE push_deliveries (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  subscription_id TEXT NOT NULL,
  payload TEXT NOT NULL,               -- the notification JSON, encrypted only when sent
  urgency TEXT NOT NULL DEFAULT 'normal' CHECK (urgency IN ('very-low', 'low', 'normal', 'high')),
  status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'gone', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_id TEXT,
  lease_attempt INTEGER,
  lease_until INTEGER,
  response_status INTEGER,
  error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  sent_at TEXT
);
CREATE INDEX push_deliveries_subscription ON push_deliveries (subscription_id, status);
CREATE INDEX push_deliveries_tenant ON push_deliveries (tenant_id, created_at, id);
