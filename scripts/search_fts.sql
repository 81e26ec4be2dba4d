-- The search index (migration 0012) recreated after a backup: wrangler d1 export refuses a
-- database with virtual tables, so the README backup steps drop search_fts and its triggers,
-- export, and run this file. The statements are the migration's own (a unit test in
-- src/search keeps them equal); the last one refills the index from search_documents.

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

INSERT INTO search_fts (search_fts) VALUES ('rebuild');
