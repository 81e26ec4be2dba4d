-- Module M: the WhatsApp Business inbox. Channels (secrets sealed with AES-256-GCM), raw webhook
-- events (stored before processing), contacts, conversations, messages (idempotent by wamid),
-- message templates and campaigns.

CREATE TABLE channels (
  tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
  phone_number_id TEXT NOT NULL,
  waba_id TEXT NOT NULL DEFAULT '',
  display_phone TEXT NOT NULL DEFAULT '',
  access_token TEXT,
  access_token_last4 TEXT,
  app_secret TEXT,
  app_secret_last4 TEXT,
  verify_token TEXT,
  verify_token_last4 TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX channels_phone ON channels (phone_number_id);

CREATE TABLE webhook_events (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  payload TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'received'
    CHECK (status IN ('received', 'processed', 'invalid', 'failed')),
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  received_at TEXT NOT NULL,
  processed_at TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX webhook_events_page ON webhook_events (tenant_id, created_at, id);

CREATE TABLE contacts (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  wa_id TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '[]',
  notes TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (tenant_id, wa_id)
);
CREATE INDEX contacts_page ON contacts (tenant_id, created_at, id);

CREATE TABLE conversations (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  contact_id TEXT NOT NULL REFERENCES contacts(id),
  status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'pending', 'resolved', 'archived')),
  assigned_to TEXT REFERENCES users(id),
  tags TEXT NOT NULL DEFAULT '[]',
  unread_count INTEGER NOT NULL DEFAULT 0,
  last_message_at TEXT,
  last_message_preview TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX conversations_page ON conversations (tenant_id, created_at, id);
CREATE INDEX conversations_contact ON conversations (tenant_id, contact_id, status);

CREATE TABLE messages (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  conversation_id TEXT NOT NULL REFERENCES conversations(id),
  direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  -- WhatsApp's message id; unique per tenant so a redelivered webhook inserts nothing.
  wamid TEXT,
  type TEXT NOT NULL,
  text TEXT,
  content TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL CHECK (status IN ('received', 'queued', 'sent', 'delivered', 'read', 'failed')),
  error_code TEXT,
  error_title TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  sent_by TEXT,
  campaign_id TEXT,
  wa_timestamp TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_wamid ON messages (tenant_id, wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_conversation ON messages (conversation_id, created_at, id);
CREATE INDEX messages_page ON messages (tenant_id, created_at, id);
CREATE INDEX messages_campaign ON messages (campaign_id, status);

CREATE TABLE templates (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  language TEXT NOT NULL,
  category TEXT NOT NULL,
  components TEXT NOT NULL,
  parameter_count INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (tenant_id, name, language)
);
CREATE INDEX templates_page ON templates (tenant_id, created_at, id);

CREATE TABLE campaigns (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  template_name TEXT NOT NULL,
  language TEXT NOT NULL,
  parameters TEXT NOT NULL DEFAULT '[]',
  total INTEGER NOT NULL,
  created_by TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX campaigns_page ON campaigns (tenant_id, created_at, id);

-- At most one active (open or pending) conversation per contact, so concurrent webhook
-- deliveries for a new contact cannot open two.
CREATE UNIQUE INDEX conversations_active ON conversations (tenant_id, contact_id)
  WHERE status IN ('open', 'pending');
