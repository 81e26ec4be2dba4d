-- Drops the search index before wrangler d1 export (see the README backup steps); the
-- documents stay in search_documents and scripts/search_fts.sql brings the index back.
DROP TRIGGER IF EXISTS search_documents_ai;
DROP TRIGGER IF EXISTS search_documents_ad;
DROP TRIGGER IF EXISTS search_documents_au;
DROP TABLE IF EXISTS search_fts;
