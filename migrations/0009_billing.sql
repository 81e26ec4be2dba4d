-- Billing (issue 15): the plan catalogue's per-tenant overrides, Stripe's view of each tenant,
-- the Stripe events received, invoices (payments), refunds, and the usage meter's monthly
-- counters copied to D1 for reports.

-- `premium_custom` limits: a JSON object such as {"executions": 50000, "optimizations": null}
-- (a missing or null metric is unlimited).
ALTER TABLE tenants ADD COLUMN quota_overrides TEXT;
-- What Stripe last said about the tenant's subscription (the webhook consumer writes these).
ALTER TABLE tenants ADD COLUMN stripe_customer_id TEXT;
ALTER TABLE tenants ADD COLUMN stripe_subscription_id TEXT;
ALTER TABLE tenants ADD COLUMN stripe_price_id TEXT;
-- active, trialing, past_due, unpaid, canceled, incomplete, incomplete_expired, paused
ALTER TABLE tenants ADD COLUMN subscription_status TEXT;
ALTER TABLE tenants ADD COLUMN cancel_at_period_end INTEGER NOT NULL DEFAULT 0;
-- The price as Stripe bills it (minor units per interval); `subscription_amount` stays the
-- monthly equivalent in major units, which MRR sums.
ALTER TABLE tenants ADD COLUMN subscription_unit_amount INTEGER;
ALTER TABLE tenants ADD COLUMN subscription_currency TEXT;
ALTER TABLE tenants ADD COLUMN subscription_interval TEXT;
ALTER TABLE tenants ADD COLUMN current_period_start TEXT;
ALTER TABLE tenants ADD COLUMN current_period_end TEXT;
-- `created` (Unix seconds) of the last subscription event applied: older ones are stale.
ALTER TABLE tenants ADD COLUMN billing_event_created INTEGER;
CREATE UNIQUE INDEX tenants_stripe_customer ON tenants (stripe_customer_id)
  WHERE stripe_customer_id IS NOT NULL;

CREATE TABLE stripe_events (
  id TEXT PRIMARY KEY,                 -- Stripe's event id (evt_…): redelivery is a no-op
  type TEXT NOT NULL,
  created INTEGER NOT NULL,            -- the event's `created` (Unix seconds)
  tenant_id TEXT,
  status TEXT NOT NULL DEFAULT 'received'
    CHECK (status IN ('received', 'processed', 'ignored', 'stale', 'failed')),
  error TEXT,                          -- why ignored, stale or failed
  payload TEXT NOT NULL,               -- the raw body as signed
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_holder TEXT,
  lease_until TEXT,
  received_at TEXT NOT NULL,
  processed_at TEXT
);
CREATE INDEX stripe_events_received ON stripe_events (received_at, id);
CREATE INDEX stripe_events_status ON stripe_events (status, received_at);

-- One row per Stripe invoice.
CREATE TABLE payments (
  id TEXT PRIMARY KEY,                 -- pay_…
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  stripe_invoice_id TEXT NOT NULL UNIQUE,
  stripe_customer_id TEXT,
  stripe_subscription_id TEXT,
  stripe_charge_id TEXT,
  stripe_payment_intent_id TEXT,
  number TEXT,
  amount_due INTEGER NOT NULL DEFAULT 0,       -- minor units
  amount_paid INTEGER NOT NULL DEFAULT 0,
  amount_refunded INTEGER NOT NULL DEFAULT 0,
  currency TEXT NOT NULL DEFAULT 'eur',
  status TEXT NOT NULL
    CHECK (status IN ('open', 'paid', 'failed', 'void', 'refunded', 'partially_refunded')),
  period_start TEXT,
  period_end TEXT,
  hosted_invoice_url TEXT,
  invoice_pdf TEXT,
  stripe_created INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX payments_tenant ON payments (tenant_id, created_at, id);
CREATE INDEX payments_charge ON payments (stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;
CREATE INDEX payments_intent ON payments (stripe_payment_intent_id)
  WHERE stripe_payment_intent_id IS NOT NULL;

CREATE TABLE refunds (
  id TEXT PRIMARY KEY,                 -- ref_…
  stripe_refund_id TEXT NOT NULL UNIQUE,
  payment_id TEXT NOT NULL REFERENCES payments(id),
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  amount INTEGER NOT NULL,             -- minor units
  currency TEXT NOT NULL,
  reason TEXT,
  status TEXT NOT NULL,                -- Stripe's: pending, succeeded, failed, canceled
  requested_by TEXT,                   -- the platform admin who asked (null: from Stripe)
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id, created_at);

-- The usage meter's counters (its Durable Object is exact; these lag by up to a minute).
CREATE TABLE usage_counters (
  tenant_id TEXT NOT NULL,
  period TEXT NOT NULL,                -- YYYY-MM (UTC)
  metric TEXT NOT NULL,                -- executions, optimizations
  used INTEGER NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (tenant_id, period, metric)
);
CREATE INDEX usage_counters_period ON usage_counters (period, metric);
