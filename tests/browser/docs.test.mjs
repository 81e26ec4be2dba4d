// The /docs page in a real browser (Debian's Chromium driven by playwright-core): it renders
// every operation of /openapi.json, shows an upload's body types, and "Try it out" works with a
// demo token. Run by `cargo test --test browser`, which starts the worker and sets BASE_URL.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, collectProblems, login } from "./browser.mjs";

const base = process.env.BASE_URL;
let browser;
let page;
let problems;

before(async () => {
  assert.ok(base, "BASE_URL is not set: run this through `cargo test --test browser`");
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  problems = collectProblems(page);
  const answer = await page.goto(`${base}/docs`);
  assert.equal(answer.status(), 200);
  assert.ok(answer.headers()["x-request-id"], "the page carries X-Request-Id");
  await page.waitForSelector(".opblock", { timeout: 30_000 });
});

after(async () => {
  await browser?.close();
});

/** Every (method, path) pair of the document, as Swagger UI lists them. */
async function operations() {
  const doc = await (await fetch(`${base}/openapi.json`)).json();
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) ops.push({ method: method.toUpperCase(), path });
  }
  return ops;
}

function block(method, path) {
  return page.locator(`.opblock:has(.opblock-summary-method:text-is("${method}")):has([data-path="${path}"])`);
}

test("every operation of /openapi.json appears on the page", async () => {
  const ops = await operations();
  assert.ok(ops.length > 100, `only ${ops.length} operations in the document`);
  assert.equal(await page.locator(".opblock").count(), ops.length);
  const shown = await page.$$eval(".opblock", (blocks) =>
    blocks.map((b) => {
      const method = b.querySelector(".opblock-summary-method")?.textContent.trim();
      const path = b.querySelector("[data-path]")?.getAttribute("data-path");
      return `${method} ${path}`;
    }),
  );
  const missing = ops.map((o) => `${o.method} ${o.path}`).filter((o) => !shown.includes(o));
  assert.deepEqual(missing, []);
  for (const [method, path] of [
    ["POST", "/api/v1/auth/login"],
    ["GET", "/api/v1/users/{id}"],
    ["POST", "/api/v1/workflows/{id}/execute"],
    ["POST", "/api/v1/webhooks/whatsapp/{tenant_id}"],
  ]) {
    assert.equal(await block(method, path).count(), 1, `${method} ${path} is not shown`);
  }
});

test("an upload route shows its multipart and raw body types", async () => {
  const upload = block("POST", "/api/v1/media");
  await upload.locator(".opblock-summary-control").click();
  const select = upload.locator(".opblock-section-request-body select");
  await select.waitFor();
  const types = await select.locator("option").allTextContents();
  assert.ok(types.includes("multipart/form-data"), `body types: ${types}`);
  assert.ok(types.includes("application/octet-stream"), `body types: ${types}`);
  await upload.locator(".opblock-summary-control").click();
});

test("try it out with a demo token answers 200", async () => {
  const token = await login(base, "owner@northwind.demo", process.env.DEMO_PASSWORD);
  await page.locator("button.authorize").first().click();
  const dialog = page.locator(".dialog-ux");
  await dialog.locator('.auth-container:has-text("bearerAuth") input').fill(token);
  await dialog.locator('.auth-container:has-text("bearerAuth") button.authorize').click();
  await dialog.locator("button.btn-done").first().click();

  const me = block("GET", "/api/v1/auth/me");
  await me.locator(".opblock-summary-control").click();
  await me.locator("button.try-out__btn").click();
  // Generous: on a loaded 2-core machine Swagger UI can take a while to send it.
  const answer = page.waitForResponse((r) => r.url().endsWith("/api/v1/auth/me"), {
    timeout: 90_000,
  });
  await me.locator("button.execute").click();
  assert.equal((await answer).status(), 200);
  const status = me.locator(".live-responses-table tbody .response-col_status").first();
  await status.waitFor();
  assert.equal((await status.textContent()).trim(), "200");
  await me.locator(".live-responses-table").getByText("owner@northwind.demo").first().waitFor();

  // For the README: the page as a reader first sees it, and the answer of the call just tried.
  const shots = process.env.SCREENSHOT_DIR || "target";
  await me.locator(".live-responses-table").screenshot({ path: `${shots}/docs-try-it.png` });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${shots}/docs.png` });
});

test("the page logged no console error and no request failed", async () => {
  assert.deepEqual(problems, []);
});
