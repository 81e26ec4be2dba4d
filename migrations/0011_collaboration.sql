-- Collaboration (issue 17): teams and their members, invitations (tokens stored as SHA-256),
-- the e-mail outbox (one row per message, sent by Job::Email), notifications with per-user,
-- per-type preferences, profile fields and preferences of users, and analytics events.

CREATE TABLE teams (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  created_by TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
-- Names are unique per tenant, case-insensitively.
CREATE UNIQUE INDEX teams_tenant_name ON teams (tenant_id, lower(name));
CREATE INDEX teams_tenant_page ON teams (tenant_id, created_at, id);

CREATE TABLE team_members (
  team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  tenant_id TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('lead', 'member')),
  created_at TEXT NOT NULL,
  PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE invitations (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  email TEXT NOT NULL,                 -- lower-cased
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'member')),
  team_ids TEXT NOT NULL DEFAULT '[]', -- JSON array of team ids
  token_hash TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the token (32 random bytes, base64url)
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'revoked')),
  invited_by TEXT,
  accepted_by TEXT,
  expires_at TEXT NOT NULL,            -- `expired` is a pending invitation past this
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  accepted_at TEXT
);
-- One pending invitation per e-mail and tenant.
CREATE UNIQUE INDEX invitations_pending_email ON invitations (tenant_id, email) WHERE status = 'pending';
CREATE INDEX invitations_tenant_page ON invitations (tenant_id, created_at, id);

CREATE TABLE email_outbox (
  id TEXT PRIMARY KEY,
  tenant_id TEXT,
  to_email TEXT NOT NULL,
  template TEXT NOT NULL CHECK (template IN ('invitation', 'notification', 'payment_failed')),
  variables TEXT NOT NULL DEFAULT '{}',  -- JSON object; escaped when rendered
  status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'skipped')),
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_id TEXT,
  lease_attempt INTEGER,
  lease_until INTEGER,
  error TEXT,
  provider_message_id TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  sent_at TEXT
);
CREATE INDEX email_outbox_tenant ON email_outbox (tenant_id, created_at, id);

CREATE TABLE notifications (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  type TEXT NOT NULL,                  -- invitation.accepted, team.added, execution.failed, …
  title TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '',
  link TEXT,
  data TEXT,                           -- JSON
  emailed INTEGER NOT NULL DEFAULT 0,
  read_at TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX notifications_user_page ON notifications (user_id, created_at, id);
CREATE INDEX notifications_user_unread ON notifications (user_id, read_at);
CREATE INDEX notifications_tenant_type ON notifications (tenant_id, type, created_at);

CREATE TABLE notification_preferences (
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  type TEXT NOT NULL,
  in_app INTEGER NOT NULL DEFAULT 1,
  email INTEGER NOT NULL DEFAULT 0,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (user_id, type)
);

-- Profile (PATCH /auth/me) and the user's own preferences object (GET/PATCH /me/preferences).
ALTER TABLE users ADD COLUMN avatar_url TEXT;
ALTER TABLE users ADD COLUMN bio TEXT;
ALTER TABLE users ADD COLUMN locale TEXT;
ALTER TABLE users ADD COLUMN timezone TEXT;
ALTER TABLE users ADD COLUMN preferences TEXT NOT NULL DEFAULT '{}';

CREATE TABLE analytics_events (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  user_id TEXT,                        -- from the caller (a user), never from the body
  api_key_id TEXT,
  session_id TEXT,
  anonymous_id TEXT,
  properties TEXT NOT NULL DEFAULT '{}', -- JSON object ≤ 4 KB
  occurred_at TEXT NOT NULL,
  received_at TEXT NOT NULL
);
CREATE INDEX analytics_events_tenant_time ON analytics_events (tenant_id, occurred_at);
CREATE INDEX analytics_events_tenant_name ON analytics_events (tenant_id, name, occurred_at);
