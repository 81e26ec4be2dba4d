-- A workflow the platform admin (the agency) defined for a client is `managed`: its pricing
-- (cost and revenue per execution) is the agency's to change; the client's admins may still
-- deploy, pause or edit it otherwise. Workflows created before this column are managed when
-- the audit trail shows a platform admin created them.
ALTER TABLE workflows ADD COLUMN managed INTEGER NOT NULL DEFAULT 0;
UPDATE workflows SET managed = 1 WHERE id IN (
  SELECT a.target_id FROM audit_logs a JOIN users u ON u.id = a.actor_id
  WHERE a.action = 'workflow.created' AND a.target_type = 'workflow' AND u.role = 'platform_admin'
);
