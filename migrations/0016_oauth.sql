-- Sign in with Google and GitHub. The authorization request's state, PKCE verifier, nonce and
-- redirect_uri travel in a short-lived encrypted HttpOnly cookie (no table): only the browser
-- that started a flow can finish it, and an abandoned flow leaves nothing behind.

-- A provider account linked to a user: (provider, subject) names one person at one provider.
CREATE TABLE oauth_identities (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  user_id TEXT NOT NULL REFERENCES users(id),
  provider TEXT NOT NULL CHECK (provider IN ('google', 'github')),
  subject TEXT NOT NULL,
  email TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (provider, subject)
);
CREATE INDEX oauth_identities_user ON oauth_identities (user_id, created_at);

-- The one-time code the callback hands the frontend (SHA-256 of it), holding the identity the
-- provider vouched for until `POST /auth/oauth/exchange` trades it, once, within its TTL.
CREATE TABLE oauth_codes (
  code_hash TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  subject TEXT NOT NULL,
  email TEXT NOT NULL,
  full_name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at TEXT
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at);

-- A provider identity whose verified e-mail belongs to an existing user: linked only when that
-- user, logged in, presents the token (SHA-256 stored) at `POST /auth/oauth/:provider/link`.
CREATE TABLE oauth_pending_links (
  token_hash TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  user_id TEXT NOT NULL REFERENCES users(id),
  provider TEXT NOT NULL,
  subject TEXT NOT NULL,
  email TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at TEXT
);
CREATE INDEX oauth_pending_links_expiry ON oauth_pending_links (expires_at);
