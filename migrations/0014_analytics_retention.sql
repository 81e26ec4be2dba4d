-- The retention sweep deletes analytics events by age across tenants; the existing indexes
-- lead with tenant_id, so it gets its own.
CREATE INDEX analytics_events_time ON analytics_events (occurred_at);
