// The client against a running worker (tests/api/ts_client.rs starts one with fresh state and
// passes a fresh tenant's owner in the environment): log in, refresh after expiry, paging,
// idempotent create and replay, a 422 as a typed error, and a live notification over `ws`.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import WebSocket from "ws";

import { createClient, paginate, TenantryError, unwrap, type TenantryClient, type Tokens } from "../src/index.js";
import { notificationFeed } from "../src/live.js";

function need(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: these tests run from tests/api/ts_client.rs (make test)`);
  }
  return value;
}

const env = {
  baseUrl: need("TENANTRY_BASE_URL"),
  email: need("TENANTRY_EMAIL"),
  password: need("TENANTRY_PASSWORD"),
  expiredToken: need("TENANTRY_EXPIRED_TOKEN"),
  refreshToken: need("TENANTRY_REFRESH_TOKEN"),
};
// Its own client address, so per-address budgets of other tests do not meet this one's.
const headers: Record<string, string> = process.env.TENANTRY_CLIENT_IP
  ? { "CF-Connecting-IP": process.env.TENANTRY_CLIENT_IP }
  : {};
const run = Math.random().toString(36).slice(2, 8);

let api: TenantryClient;

before(async () => {
  api = createClient({ baseUrl: env.baseUrl, headers });
  await api.login({ email: env.email, password: env.password });
});

function product(sku: string, name = `Product ${sku}`) {
  return { name, sku, price: 1250, currency: "EUR", quantity: 3 };
}

test("logging in keeps the pair and authorises the next calls", async () => {
  assert.ok(api.tokens.access_token && api.tokens.refresh_token);
  const me = await unwrap(api.GET("/api/v1/auth/me"));
  assert.equal(me.data.user.email, env.email);
  assert.equal(me.data.role, "owner");

  const wrong = createClient({ baseUrl: env.baseUrl, headers });
  await assert.rejects(wrong.login({ email: env.email, password: "not the password" }), (e: unknown) => {
    assert.ok(e instanceof TenantryError);
    assert.equal(e.status, 401);
    assert.equal(e.code, "invalid_credentials");
    return true;
  });
  assert.equal(wrong.tokens.access_token, undefined);
});

test("an expired access token is refreshed once and the call goes through", async () => {
  const alone = createClient({ baseUrl: env.baseUrl, token: env.expiredToken, headers });
  await assert.rejects(unwrap(alone.GET("/api/v1/auth/me")), (e: unknown) => {
    assert.ok(e instanceof TenantryError);
    assert.equal(e.code, "token_expired");
    return true;
  });

  const issued: Tokens[] = [];
  const session = createClient({
    baseUrl: env.baseUrl,
    token: env.expiredToken,
    refreshToken: env.refreshToken,
    headers,
    onTokens: (t) => void issued.push(t),
  });
  const me = await unwrap(session.GET("/api/v1/auth/me"));
  assert.equal(me.data.user.email, env.email);
  assert.equal(issued.length, 1, "one refresh");
  assert.notEqual(issued[0]!.refresh_token, env.refreshToken, "the refresh token rotated");
  assert.notEqual(issued[0]!.access_token, env.expiredToken);
  // The new token is used from now on, with no further refresh.
  await unwrap(session.GET("/api/v1/auth/me"));
  assert.equal(issued.length, 1);
});

test("a cursor list is read across pages by paginate", async () => {
  const prefix = `PG-${run}`;
  const skus = [1, 2, 3, 4, 5].map((n) => `${prefix}-${n}`);
  for (const sku of skus) {
    await unwrap(api.POST("/api/v1/products", { body: product(sku) }));
  }
  let pages = 0;
  const seen: string[] = [];
  for await (const p of paginate((cursor) => {
    pages++;
    return api.GET("/api/v1/products", { params: { query: { q: prefix, limit: 2, cursor } } });
  })) {
    seen.push(p.sku);
  }
  assert.equal(pages, 3, "5 items at 2 a page");
  assert.deepEqual([...seen].sort(), skus);
});

test("a create with an Idempotency-Key is replayed, and the key with another body is refused", async () => {
  const key = `create-${run}`;
  const sku = `IDEM-${run}`;
  const call = (body: ReturnType<typeof product>) =>
    api.POST("/api/v1/products", { body, params: { header: { "Idempotency-Key": key } } });

  const first = await call(product(sku));
  assert.equal(first.response.status, 201);
  const replay = await call(product(sku));
  assert.equal(replay.response.status, 201);
  assert.equal(replay.data?.data.id, first.data?.data.id, "the first answer again");
  assert.equal(replay.response.headers.get("Location"), first.response.headers.get("Location"));

  const listed = await unwrap(api.GET("/api/v1/products", { params: { query: { q: sku } } }));
  assert.equal(listed.data.length, 1, "created once");

  await assert.rejects(unwrap(call(product(sku, "Another name"))), (e: unknown) => {
    assert.ok(e instanceof TenantryError);
    assert.equal(e.status, 422);
    assert.equal(e.code, "idempotency_key_reused");
    return true;
  });
});

test("invalid input is a 422 read as a TenantryError with the fields named", async () => {
  const r = await api.POST("/api/v1/products", {
    body: { name: "Bad", sku: "bad sku!", price: -1, currency: "usd" },
  });
  assert.equal(r.response.status, 422);
  assert.equal(r.response.headers.get("Content-Type"), "application/problem+json");
  const e = TenantryError.from(r.response, r.error);
  assert.equal(e.code, "validation_failed");
  assert.equal(e.status, 422);
  assert.ok(e.title.length > 0);
  assert.ok(e.request_id.length > 0);
  assert.equal(e.request_id, r.response.headers.get("X-Request-Id"));
  const fields = e.errors.map((f) => f.field);
  for (const f of ["sku", "price", "currency"]) {
    assert.ok(fields.includes(f), `${f} named in ${JSON.stringify(e.errors)}`);
  }
  assert.ok(e.field("price"));
});

test("a notification arrives on the live feed opened with the bearer subprotocol", async () => {
  const me = await unwrap(api.GET("/api/v1/auth/me"));
  const feed = notificationFeed({
    baseUrl: env.baseUrl,
    token: api.tokens.access_token!,
    WebSocket,
  });
  try {
    await feed.opened;
    assert.equal(feed.socket.protocol, "bearer");
    const title = `Live ${run}`;
    const sent = await api.POST("/api/v1/notifications", {
      body: { title, body: "over the socket", to: { user_ids: [me.data.user.id] }, channels: ["in_app"] },
    });
    assert.equal(sent.response.status, 202, JSON.stringify(sent.error));
    const event = await feed.next("notification.created", {
      filter: (e) => e.data.title === title,
      timeoutMs: 20_000,
    });
    assert.equal(event.data.type, "broadcast");
    assert.equal(event.data.read, false);
  } finally {
    feed.close();
    await feed.closed;
  }
});
