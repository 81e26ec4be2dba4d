-- Search (issue 17): one row per searchable object in search_documents, kept by triggers on
-- the source tables, under an external-content FTS5 index (search_fts) kept by triggers on
-- search_documents. tenant_id is an indexed FTS column so every query carries
-- a tenant_id column filter; user terms are matched in {title body} only.
--
-- The source triggers are the one definition of what a document holds: the backfill below and
-- POST /admin/search/rebuild rewrite source rows in place (SET col = col) so the UPDATE
-- triggers regenerate the documents.
--
-- wrangler d1 export refuses a database with virtual tables: the README gives the backup steps
-- (drop search_fts and its three triggers, export, recreate them and rebuild the index).
--
-- Trigger bodies use uppercase keywords and LF line ends (for the remote D1 statement splitter).

CREATE TABLE search_documents (
  id INTEGER PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  ref_id TEXT NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '',
  updated_at TEXT NOT NULL,
  UNIQUE (kind, ref_id)
);
CREATE INDEX search_documents_tenant ON search_documents (tenant_id, updated_at, id);

CREATE VIRTUAL TABLE search_fts USING fts5(
  tenant_id, title, body,
  content = 'search_documents', content_rowid = 'id',
  tokenize = 'unicode61 remove_diacritics 2',
  prefix = '2 3 4'
);

CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN
  INSERT INTO search_fts (rowid, tenant_id, title, body)
  VALUES (new.id, new.tenant_id, new.title, new.body);
END;

CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN
  INSERT INTO search_fts (search_fts, rowid, tenant_id, title, body)
  VALUES ('delete', old.id, old.tenant_id, old.title, old.body);
END;

CREATE TRIGGER search_documents_au AFTER UPDATE ON search_documents BEGIN
  INSERT INTO search_fts (search_fts, rowid, tenant_id, title, body)
  VALUES ('delete', old.id, old.tenant_id, old.title, old.body);
  INSERT INTO search_fts (rowid, tenant_id, title, body)
  VALUES (new.id, new.tenant_id, new.title, new.body);
END;

-- workflows as kind workflow
CREATE TRIGGER workflows_search_ai AFTER INSERT ON workflows BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'workflow', new.id, coalesce(new.name, ''), coalesce(new.description, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER workflows_search_au AFTER UPDATE OF name, description, updated_at ON workflows BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'workflow', new.id, coalesce(new.name, ''), coalesce(new.description, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER workflows_search_ad AFTER DELETE ON workflows BEGIN
  DELETE FROM search_documents WHERE kind = 'workflow' AND ref_id = old.id;
END;

-- workflow_requests as kind request
CREATE TRIGGER workflow_requests_search_ai AFTER INSERT ON workflow_requests BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'request', new.id, coalesce(new.title, ''), coalesce(new.description, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER workflow_requests_search_au AFTER UPDATE OF title, description, updated_at ON workflow_requests BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'request', new.id, coalesce(new.title, ''), coalesce(new.description, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER workflow_requests_search_ad AFTER DELETE ON workflow_requests BEGIN
  DELETE FROM search_documents WHERE kind = 'request' AND ref_id = old.id;
END;

-- support_tickets as kind ticket
CREATE TRIGGER support_tickets_search_ai AFTER INSERT ON support_tickets BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'ticket', new.id, coalesce(new.subject, ''), coalesce(new.description, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER support_tickets_search_au AFTER UPDATE OF subject, description, updated_at ON support_tickets BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'ticket', new.id, coalesce(new.subject, ''), coalesce(new.description, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER support_tickets_search_ad AFTER DELETE ON support_tickets BEGIN
  DELETE FROM search_documents WHERE kind = 'ticket' AND ref_id = old.id;
END;

-- products as kind product
CREATE TRIGGER products_search_ai AFTER INSERT ON products BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'product', new.id, coalesce(new.name, ''), coalesce(new.sku || ' ' || coalesce(new.category, ''), ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER products_search_au AFTER UPDATE OF name, sku, category, updated_at ON products BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'product', new.id, coalesce(new.name, ''), coalesce(new.sku || ' ' || coalesce(new.category, ''), ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER products_search_ad AFTER DELETE ON products BEGIN
  DELETE FROM search_documents WHERE kind = 'product' AND ref_id = old.id;
END;

-- media as kind media
CREATE TRIGGER media_search_ai AFTER INSERT ON media BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'media', new.id, coalesce(new.filename, ''), coalesce('', ''), new.created_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER media_search_au AFTER UPDATE OF filename ON media BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'media', new.id, coalesce(new.filename, ''), coalesce('', ''), new.created_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER media_search_ad AFTER DELETE ON media BEGIN
  DELETE FROM search_documents WHERE kind = 'media' AND ref_id = old.id;
END;

-- contacts as kind contact
CREATE TRIGGER contacts_search_ai AFTER INSERT ON contacts BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'contact', new.id, coalesce(CASE WHEN new.name <> '' THEN new.name ELSE new.wa_id END, ''), coalesce(new.wa_id || ' ' || new.notes || ' ' || new.tags, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER contacts_search_au AFTER UPDATE OF name, wa_id, notes, tags, updated_at ON contacts BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'contact', new.id, coalesce(CASE WHEN new.name <> '' THEN new.name ELSE new.wa_id END, ''), coalesce(new.wa_id || ' ' || new.notes || ' ' || new.tags, ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER contacts_search_ad AFTER DELETE ON contacts BEGIN
  DELETE FROM search_documents WHERE kind = 'contact' AND ref_id = old.id;
END;

-- messages as kind message
CREATE TRIGGER messages_search_ai AFTER INSERT ON messages BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'message', new.id, coalesce(substr(new.text, 1, 100), ''), coalesce(new.text, ''), new.created_at
  WHERE coalesce(new.text, '') <> ''
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER messages_search_au AFTER UPDATE OF text ON messages BEGIN
  DELETE FROM search_documents WHERE kind = 'message' AND ref_id = new.id AND NOT (coalesce(new.text, '') <> '');
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'message', new.id, coalesce(substr(new.text, 1, 100), ''), coalesce(new.text, ''), new.created_at
  WHERE coalesce(new.text, '') <> ''
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER messages_search_ad AFTER DELETE ON messages BEGIN
  DELETE FROM search_documents WHERE kind = 'message' AND ref_id = old.id;
END;

-- templates as kind template
CREATE TRIGGER templates_search_ai AFTER INSERT ON templates BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'template', new.id, coalesce(new.name, ''), coalesce(new.language || ' ' || new.category || ' ' || coalesce((SELECT group_concat(json_extract(c.value, '$.text'), ' ') FROM json_each(CASE WHEN json_valid(new.components) THEN new.components ELSE '[]' END) AS c WHERE c.type = 'object'), ''), ''), new.created_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER templates_search_au AFTER UPDATE OF name, language, category, components ON templates BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'template', new.id, coalesce(new.name, ''), coalesce(new.language || ' ' || new.category || ' ' || coalesce((SELECT group_concat(json_extract(c.value, '$.text'), ' ') FROM json_each(CASE WHEN json_valid(new.components) THEN new.components ELSE '[]' END) AS c WHERE c.type = 'object'), ''), ''), new.created_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER templates_search_ad AFTER DELETE ON templates BEGIN
  DELETE FROM search_documents WHERE kind = 'template' AND ref_id = old.id;
END;

-- teams as kind team
CREATE TRIGGER teams_search_ai AFTER INSERT ON teams BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'team', new.id, coalesce(new.name, ''), coalesce(coalesce(new.description, ''), ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER teams_search_au AFTER UPDATE OF name, description, updated_at ON teams BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'team', new.id, coalesce(new.name, ''), coalesce(coalesce(new.description, ''), ''), new.updated_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER teams_search_ad AFTER DELETE ON teams BEGIN
  DELETE FROM search_documents WHERE kind = 'team' AND ref_id = old.id;
END;

-- users as kind user
CREATE TRIGGER users_search_ai AFTER INSERT ON users BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'user', new.id, coalesce(new.full_name, ''), coalesce(new.email, ''), new.updated_at
  WHERE new.status <> 'deleted'
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER users_search_au AFTER UPDATE OF full_name, email, status ON users BEGIN
  DELETE FROM search_documents WHERE kind = 'user' AND ref_id = new.id AND NOT (new.status <> 'deleted');
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'user', new.id, coalesce(new.full_name, ''), coalesce(new.email, ''), new.updated_at
  WHERE new.status <> 'deleted'
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER users_search_ad AFTER DELETE ON users BEGIN
  DELETE FROM search_documents WHERE kind = 'user' AND ref_id = old.id;
END;

-- optimizations as kind optimization
CREATE TRIGGER optimizations_search_ai AFTER INSERT ON optimizations BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'optimization', new.id, coalesce(substr(new.original_text, 1, 100), ''), coalesce(new.original_text || ' ' || new.optimized_text, ''), new.created_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER optimizations_search_au AFTER UPDATE OF original_text, optimized_text ON optimizations BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'optimization', new.id, coalesce(substr(new.original_text, 1, 100), ''), coalesce(new.original_text || ' ' || new.optimized_text, ''), new.created_at
  WHERE true
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER optimizations_search_ad AFTER DELETE ON optimizations BEGIN
  DELETE FROM search_documents WHERE kind = 'optimization' AND ref_id = old.id;
END;

-- audit_logs as kind audit_log
CREATE TRIGGER audit_logs_search_ai AFTER INSERT ON audit_logs BEGIN
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'audit_log', new.id, coalesce(new.action, ''), coalesce(coalesce(new.actor_email, '') || ' ' || coalesce(new.target_type, '') || ' ' || coalesce(new.target_id, '') || ' ' || new.metadata, ''), new.created_at
  WHERE new.tenant_id IS NOT NULL
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER audit_logs_search_au AFTER UPDATE OF action, tenant_id ON audit_logs BEGIN
  DELETE FROM search_documents WHERE kind = 'audit_log' AND ref_id = new.id AND NOT (new.tenant_id IS NOT NULL);
  INSERT INTO search_documents (tenant_id, kind, ref_id, title, body, updated_at)
  SELECT new.tenant_id, 'audit_log', new.id, coalesce(new.action, ''), coalesce(coalesce(new.actor_email, '') || ' ' || coalesce(new.target_type, '') || ' ' || coalesce(new.target_id, '') || ' ' || new.metadata, ''), new.created_at
  WHERE new.tenant_id IS NOT NULL
  ON CONFLICT (kind, ref_id) DO UPDATE SET tenant_id = excluded.tenant_id, title = excluded.title,
    body = excluded.body, updated_at = excluded.updated_at;
END;

CREATE TRIGGER audit_logs_search_ad AFTER DELETE ON audit_logs BEGIN
  DELETE FROM search_documents WHERE kind = 'audit_log' AND ref_id = old.id;
END;

-- Backfill: every existing row through its UPDATE trigger.
UPDATE workflows SET name = name;
UPDATE workflow_requests SET title = title;
UPDATE support_tickets SET subject = subject;
UPDATE products SET name = name;
UPDATE media SET filename = filename;
UPDATE contacts SET name = name;
UPDATE messages SET text = text;
UPDATE templates SET name = name;
UPDATE teams SET name = name;
UPDATE users SET full_name = full_name;
UPDATE optimizations SET original_text = original_text;
UPDATE audit_logs SET action = action;
