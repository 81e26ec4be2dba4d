-- Leases name their holder (the queue message and its delivery attempt), and messages that
-- must follow a commit are written with it (the outbox).

-- A media job's lease: which delivery holds it. `attempts` now counts claims (made before the
-- work runs), so a job that crashed the worker is not run again past its last attempt.
ALTER TABLE jobs ADD COLUMN lease_id TEXT;
ALTER TABLE jobs ADD COLUMN lease_attempt INTEGER;

-- A step lease's holder is `lease_id` (the message) plus this delivery attempt.
ALTER TABLE executions ADD COLUMN lease_attempt INTEGER;

-- Queue messages decided by a commit (the next step, an end callback, a dead letter), written
-- in the same D1 batch. The committer sends each at once and deletes its row; a row still here
-- after a short grace (the send failed, or the worker died first) is sent by the cron sweep.
-- Consumers are idempotent, so a message sent twice is harmless.
CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  queue TEXT NOT NULL CHECK (queue IN ('jobs', 'dlq')),
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  -- Milliseconds since the epoch: written, and when the message is due (written + delay).
  created_ms INTEGER NOT NULL,
  deliver_ms INTEGER NOT NULL,
  -- Sends the sweep tried and the last one's error.
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX outbox_due ON outbox (created_ms);
