// The client's own behaviour against a scripted fetch (no server): refresh once on 401, bounded
// Retry-After retries on 429, Idempotency-Key kept across retries, paging, typed errors.

import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, paginate, retryDelayMs, TenantryError, unwrap } from "../src/index.js";

const BASE = "https://api.test";

type Seen = { method: string; path: string; auth: string | null; key: string | null; body: string };

/** A fetch that answers from `answer` and records what it was sent. */
function scripted(answer: (seen: Seen, n: number) => Response | Promise<Response>) {
  const calls: Seen[] = [];
  const fetch = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const seen: Seen = {
      method: request.method,
      path: url.pathname + url.search,
      auth: request.headers.get("Authorization"),
      key: request.headers.get("Idempotency-Key"),
      body: await request.text(),
    };
    calls.push(seen);
    return answer(seen, calls.length);
  };
  return { fetch, calls };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const type = status >= 400 ? "application/problem+json" : "application/json";
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": type, ...headers },
  });
}

function problem(status: number, code: string, headers: Record<string, string> = {}): Response {
  return json(
    status,
    { type: "about:blank", title: code, status, detail: `${code}!`, code, request_id: "req_1" },
    { "X-Request-Id": "req_1", ...headers },
  );
}

const me = { data: { user: { id: "usr_1" }, tenant: { id: "ten_1" }, role: "owner" } };
const pair = (n: number) => ({
  data: { access_token: `access-${n}`, refresh_token: `refresh-${n}`, token_type: "Bearer", expires_in: 900 },
});

test("an expired token is refreshed once and the request sent again with the new one", async () => {
  const { fetch, calls } = scripted((s) => {
    if (s.path === "/api/v1/auth/refresh") return json(200, pair(2));
    return s.auth === "Bearer access-2" ? json(200, me) : problem(401, "token_expired");
  });
  const stored: string[] = [];
  const api = createClient({
    baseUrl: BASE,
    token: "access-1",
    refreshToken: "refresh-1",
    fetch,
    onTokens: (t) => void stored.push(t.refresh_token),
  });
  const [a, b] = await Promise.all([unwrap(api.GET("/api/v1/auth/me")), unwrap(api.GET("/api/v1/auth/me"))]);
  assert.equal(a.data.role, "owner");
  assert.equal(b.data.role, "owner");
  const refreshes = calls.filter((c) => c.path === "/api/v1/auth/refresh");
  assert.equal(refreshes.length, 1, "two 401s share one refresh");
  assert.deepEqual(JSON.parse(refreshes[0]!.body), { refresh_token: "refresh-1" });
  assert.equal(refreshes[0]!.auth, null, "the expired token is not sent to /auth/refresh");
  assert.deepEqual(stored, ["refresh-2"]);
  assert.deepEqual(api.tokens, { access_token: "access-2", refresh_token: "refresh-2" });
});

test("a refused refresh ends the session and answers the first 401", async () => {
  const { fetch, calls } = scripted((s) =>
    s.path === "/api/v1/auth/refresh" ? problem(401, "invalid_refresh_token") : problem(401, "token_expired"),
  );
  const ended: string[] = [];
  const api = createClient({
    baseUrl: BASE,
    token: "access-1",
    refreshToken: "refresh-1",
    fetch,
    onSessionEnded: (e) => void ended.push(e.code),
  });
  await assert.rejects(unwrap(api.GET("/api/v1/auth/me")), (e: unknown) => {
    assert.ok(e instanceof TenantryError);
    assert.equal(e.code, "token_expired");
    return true;
  });
  assert.deepEqual(ended, ["invalid_refresh_token"]);
  // No refresh token left: the next 401 is answered as it is.
  await api.GET("/api/v1/auth/me");
  assert.equal(calls.filter((c) => c.path === "/api/v1/auth/refresh").length, 1);
  assert.equal(api.tokens.refresh_token, undefined);
});

test("an API key is sent as the bearer token and never refreshed", async () => {
  const { fetch, calls } = scripted(() => problem(401, "invalid_token"));
  const api = createClient({ baseUrl: BASE, apiKey: "tnt_key", refreshToken: "ignored", fetch });
  const r = await api.GET("/api/v1/auth/me");
  assert.equal(r.response.status, 401);
  assert.equal(calls.length, 1);
  assert.equal(calls[0]!.auth, "Bearer tnt_key");
});

test("429 is retried after Retry-After, at most max times, with the same body and key", async () => {
  const body = { name: "Mug", sku: "MUG-1", price: 900, currency: "EUR" };
  const { fetch, calls } = scripted((_s, n) =>
    n < 3 ? problem(429, "rate_limited", { "Retry-After": "0" }) : json(201, { data: { id: "prd_1" } }),
  );
  const api = createClient({ baseUrl: BASE, token: "t", fetch, retryOn429: { max: 3 }, idempotencyKeys: true });
  const created = await unwrap(api.POST("/api/v1/products", { body }));
  assert.equal(created.data.id, "prd_1");
  assert.equal(calls.length, 3);
  assert.ok(calls[0]!.key, "a key was added");
  for (const c of calls) {
    assert.equal(c.key, calls[0]!.key, "one key across the retries");
    assert.deepEqual(JSON.parse(c.body), body);
    assert.equal(c.auth, "Bearer t");
  }
});

test("429 retries are bounded and opt-in", async () => {
  const limited = () => problem(429, "rate_limited", { "Retry-After": "0" });
  const bounded = scripted(limited);
  const api = createClient({ baseUrl: BASE, token: "t", fetch: bounded.fetch, retryOn429: { max: 2 } });
  await assert.rejects(unwrap(api.GET("/api/v1/products")), (e: unknown) => {
    assert.ok(e instanceof TenantryError);
    assert.equal(e.status, 429);
    assert.equal(e.code, "rate_limited");
    return true;
  });
  assert.equal(bounded.calls.length, 3, "the first try and two retries");

  const plain = scripted(limited);
  const noRetry = createClient({ baseUrl: BASE, token: "t", fetch: plain.fetch });
  assert.equal((await noRetry.GET("/api/v1/products")).response.status, 429);
  assert.equal(plain.calls.length, 1);
});

test("retry delays follow Retry-After (seconds or a date), else back off, and are capped", () => {
  assert.equal(retryDelayMs("2", 0), 2000);
  assert.equal(retryDelayMs(null, 0), 1000);
  assert.equal(retryDelayMs(null, 3), 8000);
  assert.equal(retryDelayMs("3600", 0), 30_000);
  assert.equal(retryDelayMs("3600", 0, 5000), 5000);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(retryDelayMs("Thu, 01 Jan 2026 00:00:04 GMT", 0, 30_000, now), 4000);
  assert.equal(retryDelayMs("Wed, 31 Dec 2025 00:00:00 GMT", 0, 30_000, now), 0);
  assert.equal(retryDelayMs("soon", 1), 2000);
});

test("a POST gets no Idempotency-Key unless asked, and a caller's own key is kept", async () => {
  const { fetch, calls } = scripted(() => json(201, { data: { id: "prd_1" } }));
  const body = { name: "Mug", sku: "MUG-1", price: 900, currency: "EUR" };
  await createClient({ baseUrl: BASE, token: "t", fetch }).POST("/api/v1/products", { body });
  const asked = createClient({ baseUrl: BASE, token: "t", fetch, idempotencyKeys: true });
  await asked.POST("/api/v1/products", { body, params: { header: { "Idempotency-Key": "mine" } } });
  await asked.GET("/api/v1/products");
  assert.deepEqual(
    calls.map((c) => c.key),
    [null, "mine", null],
  );
});

test("paginate follows next_cursor until it is null", async () => {
  const pages: Record<string, unknown> = {
    "": { data: [1, 2], next_cursor: "c1" },
    c1: { data: [3, 4], next_cursor: "c2" },
    c2: { data: [5], next_cursor: null },
  };
  const { fetch, calls } = scripted((s) => {
    const cursor = new URL(s.path, BASE).searchParams.get("cursor") ?? "";
    return json(200, pages[cursor]);
  });
  const api = createClient({ baseUrl: BASE, token: "t", fetch });
  const seen: unknown[] = [];
  for await (const item of paginate((cursor) =>
    api.GET("/api/v1/products", { params: { query: { cursor, limit: 2 } } }),
  )) {
    seen.push(item);
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.deepEqual(
    calls.map((c) => c.path),
    ["/api/v1/products?limit=2", "/api/v1/products?cursor=c1&limit=2", "/api/v1/products?cursor=c2&limit=2"],
  );
});

test("paginate stops on a cursor it has seen, and throws a page's error", async () => {
  const loop = scripted(() => json(200, { data: [1], next_cursor: "same" }));
  const api = createClient({ baseUrl: BASE, token: "t", fetch: loop.fetch });
  const items: unknown[] = [];
  for await (const i of paginate((cursor) => api.GET("/api/v1/products", { params: { query: { cursor } } }))) {
    items.push(i);
  }
  assert.deepEqual(items, [1, 1]);

  const failing = scripted(() => problem(403, "forbidden"));
  const denied = createClient({ baseUrl: BASE, token: "t", fetch: failing.fetch });
  await assert.rejects(
    (async () => {
      for await (const _ of paginate((cursor) => denied.GET("/api/v1/products", { params: { query: { cursor } } }))) {
        // never reached
      }
    })(),
    (e: unknown) => e instanceof TenantryError && e.code === "forbidden" && e.request_id === "req_1",
  );
});

test("an answer that is not problem+json still becomes a TenantryError", async () => {
  const { fetch } = scripted(
    () => new Response("<html>bad gateway</html>", { status: 502, headers: { "X-Request-Id": "edge-9" } }),
  );
  const api = createClient({ baseUrl: BASE, token: "t", fetch });
  await assert.rejects(unwrap(api.GET("/api/v1/products")), (e: unknown) => {
    assert.ok(e instanceof TenantryError);
    assert.equal(e.status, 502);
    assert.equal(e.code, "http_502");
    assert.equal(e.request_id, "edge-9");
    assert.deepEqual(e.errors, []);
    return true;
  });
});
