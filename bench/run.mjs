#!/usr/bin/env node
// Tenantry benchmark: release bundle size, then throughput/latency of a few endpoints against a
// local `wrangler dev` this script starts itself (fresh, migrated, seeded state in a temp dir),
// each reported as a ratio to a trivial endpoint. `make bench` runs it after `make build`.
// Writes bench/results/latest.json and prints a markdown table. No dependencies but autocannon.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BUILD = path.join(ROOT, 'build');
const WORKERS = ['api', 'jobs']; // build/api (tenantry-api), build/jobs (tenantry-jobs)
const WRANGLER = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');
const RESULTS = path.join(RESULTS_DIR, 'latest.json');

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || 10);
const DURATION_S = Number(process.env.BENCH_DURATION || 8);
const WARMUP_S = Number(process.env.BENCH_WARMUP || 2);
const READY_TIMEOUT_MS = 90_000;
const MAX_NON_2XX_SHARE = 0.01;
const HUGE_LIMIT = '100000000';
const DEMO_EMAIL = 'owner@northwind.demo';
// BENCH_JOBS=0 runs tenantry-api alone (the queue consumer paused): what the webhook tail looks
// like when the jobs Worker does not share the local workerd process.
const WITH_JOBS = process.env.BENCH_JOBS !== '0';

const tmp = path.join(os.tmpdir(), `tenantry-bench-${process.pid}`);
let worker = null; // the detached `wrangler dev` (leader of its own process group)
const workerLog = []; // its output, last lines only
let cleanedUp = false;

const log = (...a) => console.error('[bench]', ...a);

// ---------------------------------------------------------------- bundle size

function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'dry-run') continue; // `make deploy-check` output, a copy of the same code
      walk(p, out);
    } else if (e.isFile()) out.push(p);
  }
  return out;
}

function bundleSizes(dir) {
  const files = walk(dir);
  const wasm = files.filter((f) => f.endsWith('.wasm'));
  const js = files.filter((f) => /\.(m?js|cjs)$/.test(f));
  if (wasm.length === 0) throw new Error(`no .wasm under ${dir}; run \`make build\``);
  const read = (fs_) => fs_.map((f) => fs.readFileSync(f));
  const gz = (buf) => zlib.gzipSync(buf, { level: 9 }).length;
  const wasmBufs = read(wasm);
  const jsBufs = read(js);
  const sum = (bufs) => bufs.reduce((n, b) => n + b.length, 0);
  const rel = (f) => path.relative(ROOT, f);
  return {
    wasm_files: wasm.map(rel),
    wasm_bytes: sum(wasmBufs),
    wasm_gzip_bytes: gz(Buffer.concat(wasmBufs)),
    js_files: js.map(rel),
    js_bytes: sum(jsBufs),
    js_gzip_bytes: gz(Buffer.concat(jsBufs)),
    // Like wrangler's "Total Upload … / gzip": one gzip stream over all modules.
    upload_bytes: sum(wasmBufs) + sum(jsBufs),
    upload_gzip_bytes: gz(Buffer.concat([...wasmBufs, ...jsBufs])),
  };
}

// ---------------------------------------------------------------- worker setup

const randomChars = (n) => randomBytes(n).toString('base64url').slice(0, n);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function wranglerEnv() {
  return { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' };
}

function run(cmd, args, { stdoutFile } = {}) {
  const r = spawnSync(cmd, args, {
    cwd: tmp,
    env: wranglerEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
  });
  if (r.error) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(
      `${path.basename(cmd)} ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`.trim(),
    );
  }
  if (stdoutFile) fs.writeFileSync(stdoutFile, r.stdout);
  return r;
}

function prepareState() {
  fs.mkdirSync(tmp, { recursive: true });
  // Both Workers' configs side by side in tmp (absolute paths), so both read tmp/.dev.vars.
  run('python3', [path.join(ROOT, 'scripts', 'local_configs.py'), tmp]);
  const config = path.join(tmp, 'wrangler.toml');
  const jobsConfig = path.join(tmp, 'jobs.toml');

  const vars = {
    JWT_SECRET: randomChars(48),
    ENCRYPTION_KEY: randomBytes(32).toString('base64url'),
    ADMIN_EMAIL: 'admin@bench.local',
    ADMIN_PASSWORD: `admin-${randomChars(16)}`,
    DEMO_PASSWORD: `demo-${randomChars(16)}`,
    // Budgets far above what the benchmark can reach: measure the work, not the limiter.
    RATE_LIMIT_FREE: HUGE_LIMIT,
    RATE_LIMIT_STARTER: HUGE_LIMIT,
    RATE_LIMIT_PRO: HUGE_LIMIT,
    RATE_LIMIT_PREMIUM_CUSTOM: HUGE_LIMIT,
    RATE_LIMIT_PLATFORM: HUGE_LIMIT,
    AUTH_RATE_LIMIT: HUGE_LIMIT,
    AUTH_ACCOUNT_RATE_LIMIT: HUGE_LIMIT,
    REGISTER_RATE_LIMIT: HUGE_LIMIT,
  };
  const varsFile = path.join(tmp, '.dev.vars');
  fs.writeFileSync(
    varsFile,
    Object.entries(vars).map(([k, v]) => `${k}="${v}"`).join('\n') + '\n',
    { mode: 0o600 },
  );

  const state = path.join(tmp, 'state');
  const common = ['--local', '--persist-to', state, '-c', config];
  log('applying migrations');
  run(WRANGLER, ['d1', 'migrations', 'apply', 'DB', ...common]);
  log('seeding');
  const seedSql = path.join(tmp, 'seed.sql');
  run('python3', [path.join(ROOT, 'scripts', 'seed.py'), '--vars', varsFile], { stdoutFile: seedSql });
  run(WRANGLER, ['d1', 'execute', 'DB', ...common, '--file', seedSql]);
  return { config, jobsConfig, state, vars };
}

function remember(chunk) {
  // eslint-disable-next-line no-control-regex
  for (const line of chunk.toString().replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
    if (line.trim() === '') continue;
    workerLog.push(line);
    if (workerLog.length > 3000) workerLog.splice(0, workerLog.length - 2000);
  }
}

function startWorker(config, jobsConfig, state, port) {
  // --log-level warn: wrangler's per-request "[wrangler:info] GET … 200" lines cost about as
  // much as a trivial request itself (measured: ~2x the req/s without them) and would compress
  // every ratio towards 1. The worker's console.error/warn output is still shown.
  const args = [
    'dev', '-c', config, ...(WITH_JOBS ? ['-c', jobsConfig] : []), '--port', String(port), '--persist-to', state, '--ip', '127.0.0.1',
    '--log-level', 'warn',
  ];
  log(`starting wrangler ${args.join(' ')}`);
  worker = spawn(WRANGLER, args, {
    cwd: tmp,
    env: wranglerEnv(),
    detached: true, // own process group: workerd and friends die with it
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  worker.exited = false;
  worker.on('exit', (code, signal) => {
    worker.exited = true;
    worker.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
  });
  worker.stdout.on('data', remember);
  worker.stderr.on('data', remember);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitReady(base) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (worker.exited) throw new Error(`wrangler dev exited early (${worker.exitInfo})`);
    try {
      const r = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(5000) });
      if (r.status === 200) return;
      last = `HTTP ${r.status}: ${(await r.text()).slice(0, 300)}`;
    } catch (e) {
      last = e.cause?.code || e.message;
    }
    await sleep(500);
  }
  throw new Error(`GET /health/ready not 200 within ${READY_TIMEOUT_MS / 1000} s (last: ${last})`);
}

function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

async function stopWorker() {
  if (!worker) return;
  const pid = worker.pid;
  killGroup(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (groupAlive(pid) && Date.now() < deadline) await sleep(100);
  if (groupAlive(pid)) killGroup(pid, 'SIGKILL');
  worker = null;
}

function removeTmp() {
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
  } catch (e) {
    console.error(`[bench] could not remove ${tmp}: ${e.message}`);
  }
}

async function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  await stopWorker();
  removeTmp();
}

// Last resort when the process leaves without running cleanup() (sync only).
process.on('exit', () => {
  if (worker) killGroup(worker.pid, 'SIGKILL');
  if (!cleanedUp) removeTmp();
});
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.on(sig, () => {
    log(`${sig}: stopping the worker and cleaning up`);
    cleanup().finally(() => process.exit(code));
  });
}

// ---------------------------------------------------------------- load

async function login(base, password) {
  const r = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: DEMO_EMAIL, password }),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`login as ${DEMO_EMAIL}: HTTP ${r.status}: ${text.slice(0, 500)}`);
  const token = JSON.parse(text)?.data?.access_token;
  if (!token) throw new Error(`login answered 200 without data.access_token: ${text.slice(0, 500)}`);
  return token;
}

// Connects the seeded inbox tenant's WhatsApp channel with a known app secret and returns a
// Meta-shaped webhook post signed with it (the same message each time: stored, queued, and
// deduplicated by wamid in the consumer).
async function webhookScenario(base, password) {
  const login = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'owner@blueharbor.demo', password }),
  });
  const token = (await login.json())?.data?.access_token;
  const secret = 'bench-app-secret';
  const put = await fetch(`${base}/api/v1/channels/whatsapp`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ phone_number_id: '106540352242922', app_secret: secret, access_token: 'bench-token' }),
  });
  if (put.status !== 200) throw new Error(`connecting the bench channel: HTTP ${put.status}`);
  const body = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '1', changes: [{ field: 'messages', value: {
      metadata: { phone_number_id: '106540352242922' },
      contacts: [{ profile: { name: 'Bench' }, wa_id: '4915100000999' }],
      messages: [{ from: '4915100000999', id: 'wamid.bench', timestamp: '1700000000', type: 'text', text: { body: 'load' } }],
    } }] }],
  });
  const signature = 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
  return {
    name: 'webhook',
    method: 'POST',
    path: '/api/v1/webhooks/whatsapp/ten_demo_inbox',
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
    body,
  };
}

function scenarios(token, password, webhook) {
  const bearer = { authorization: `Bearer ${token}` };
  return [
    { name: 'trivial', method: 'GET', path: '/health/live' },
    { name: 'health', method: 'GET', path: '/health' },
    {
      name: 'login',
      // PBKDF2 makes each log-in cost ~0.3 s of worker time; 10 queued log-ins outlast the local
      // dev proxy's patience (it answers 503), so this scenario runs with 2 connections.
      connections: 2,
      method: 'POST',
      path: '/api/v1/auth/login',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: DEMO_EMAIL, password }),
    },
    { name: 'auth_me', method: 'GET', path: '/api/v1/auth/me', headers: bearer },
    { name: 'list', method: 'GET', path: '/api/v1/users?limit=20', headers: bearer },
    webhook,
  ];
}

// One request first, so a broken endpoint fails fast with its body instead of 8 s of noise.
async function probe(base, s) {
  const r = await fetch(base + s.path, { method: s.method, headers: s.headers, body: s.body });
  const text = await r.text();
  if (r.status < 200 || r.status > 299) {
    throw new Error(`${s.name}: ${s.method} ${s.path} → HTTP ${r.status}: ${text.slice(0, 500)}`);
  }
}

function cannon(base, s, duration) {
  const samples = new Map(); // status → first body seen
  const opts = {
    url: base,
    connections: s.connections ?? CONNECTIONS,
    duration,
    timeout: 30,
    requests: [
      {
        method: s.method,
        path: s.path,
        headers: s.headers,
        body: s.body,
        onResponse: (status, body) => {
          if ((status < 200 || status > 299) && !samples.has(status)) {
            samples.set(status, String(body ?? '').slice(0, 300));
          }
        },
      },
    ],
  };
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, res) => (err ? reject(err) : resolve({ res, samples })));
  });
}

const round = (x, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

async function measure(base, s) {
  await probe(base, s);
  log(`${s.name}: warm-up ${WARMUP_S} s, then ${DURATION_S} s × ${s.connections ?? CONNECTIONS} connections`);
  await cannon(base, s, WARMUP_S);
  const { res, samples } = await cannon(base, s, DURATION_S);
  const ok = res['2xx'];
  const bad = res.non2xx + res.errors + res.timeouts;
  const total = ok + bad;
  const statuses = Object.fromEntries(
    Object.entries(res.statusCodeStats || {}).map(([code, v]) => [code, v.count]),
  );
  return {
    method: s.method,
    path: s.path,
    connections: s.connections ?? CONNECTIONS,
    requests: total,
    ok_2xx: ok,
    non_2xx: res.non2xx,
    errors: res.errors,
    timeouts: res.timeouts,
    non_2xx_share: total ? round(bad / total, 4) : 1,
    status_codes: statuses,
    non_2xx_samples: Object.fromEntries(samples),
    rps: round(res.requests.average, 1),
    latency_ms: {
      p50: res.latency.p50,
      p90: res.latency.p90,
      p99: res.latency.p99,
      avg: round(res.latency.average),
      max: res.latency.max,
    },
  };
}

// ---------------------------------------------------------------- report

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;

function table(results) {
  const rows = [
    '| scenario | req/s | p50 ms | p99 ms | rps ratio vs trivial |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const [name, r] of Object.entries(results)) {
    const ratio = r.rps_ratio == null ? 'n/a' : r.rps_ratio.toFixed(3);
    rows.push(`| ${name} | ${r.rps.toFixed(1)} | ${r.latency_ms.p50} | ${r.latency_ms.p99} | ${ratio} |`);
  }
  return rows.join('\n');
}

function bundleLine(name, b) {
  return (
    `Bundle ${name}: wasm ${kib(b.wasm_bytes)} (gzip ${kib(b.wasm_gzip_bytes)}), ` +
    `js ${kib(b.js_bytes)} (gzip ${kib(b.js_gzip_bytes)}), ` +
    `upload ${kib(b.upload_bytes)} (gzip ${kib(b.upload_gzip_bytes)})`
  );
}

function workerProblems() {
  const bad = workerLog.filter(
    (l) =>
      /error|✘|panic|unreachable|exception/i.test(l) &&
      // wrangler fetching request.cf data on an offline machine; it falls back, harmless.
      !/workers\.cloudflare\.com/.test(l),
  );
  return [...new Set(bad)].slice(0, 20);
}

// ---------------------------------------------------------------- main

async function main() {
  for (const w of WORKERS) {
    const shim = path.join(BUILD, w, 'worker', 'shim.mjs');
    if (!fs.existsSync(shim)) throw new Error(`${path.relative(ROOT, shim)} is missing; run \`make build\` first`);
  }
  if (!fs.existsSync(WRANGLER)) throw new Error(`${WRANGLER} is missing; run \`npm ci\``);

  const bundle = Object.fromEntries(WORKERS.map((w) => [w, bundleSizes(path.join(BUILD, w))]));
  for (const w of WORKERS) log(bundleLine(w, bundle[w]));

  const { config, jobsConfig, state, vars } = prepareState();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  startWorker(config, jobsConfig, state, port);
  const t0 = Date.now();
  await waitReady(base);
  log(`worker ready on ${base} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const token = await login(base, vars.DEMO_PASSWORD);

  const results = {};
  const webhook = await webhookScenario(base, vars.DEMO_PASSWORD);
  for (const s of scenarios(token, vars.DEMO_PASSWORD, webhook)) {
    results[s.name] = await measure(base, s);
    const r = results[s.name];
    log(`${s.name}: ${r.rps} req/s, p50 ${r.latency_ms.p50} ms, p99 ${r.latency_ms.p99} ms, non-2xx ${r.non_2xx + r.errors + r.timeouts}/${r.requests}`);
  }
  const trivial = results.trivial;
  for (const r of Object.values(results)) {
    r.rps_ratio = trivial.rps > 0 ? round(r.rps / trivial.rps, 4) : null;
    r.p50_ratio = trivial.latency_ms.p50 > 0 ? round(r.latency_ms.p50 / trivial.latency_ms.p50, 3) : null;
  }

  const problems = workerProblems();
  if (process.env.BENCH_LOG) fs.writeFileSync(process.env.BENCH_LOG, workerLog.join('\n') + '\n');
  await cleanup();

  const out = {
    timestamp: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? null,
    load: { connections: CONNECTIONS, duration_s: DURATION_S, warmup_s: WARMUP_S },
    jobs_worker_running: WITH_JOBS,
    bundle,
    scenarios: results,
    worker_log_problems: problems,
  };
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(RESULTS, JSON.stringify(out, null, 2) + '\n');

  console.log(table(results));
  console.log('');
  for (const w of WORKERS) console.log(bundleLine(w, bundle[w]));
  console.log('');
  console.log(`(${os.cpus().length} cores, Node ${process.version}, ${CONNECTIONS} connections × ${DURATION_S} s; ${path.relative(ROOT, RESULTS)})`);

  if (problems.length) {
    console.error('\n[bench] the worker logged errors:');
    for (const p of problems) console.error('  ' + p);
  }
  const failing = Object.entries(results).filter(([, r]) => r.non_2xx_share > MAX_NON_2XX_SHARE);
  if (failing.length) {
    for (const [name, r] of failing) {
      console.error(
        `[bench] FAIL ${name}: ${(r.non_2xx_share * 100).toFixed(2)}% non-2xx/errors ` +
          `(statuses ${JSON.stringify(r.status_codes)}, errors ${r.errors}, timeouts ${r.timeouts}) ` +
          `samples ${JSON.stringify(r.non_2xx_samples)}`,
      );
    }
    if (failing.some(([, r]) => Object.values(r.non_2xx_samples).some((b) => b.includes('restarted mid-request')))) {
      console.error(
        '[bench] note: "Your worker restarted mid-request" is wrangler dev\'s proxy reporting a lost ' +
          'connection to the worker (any fetch error on a non-root path gets this text); see bench/README.md',
      );
    }
    process.exitCode = 1;
  } else {
    const any = Object.entries(results).filter(([, r]) => r.non_2xx + r.errors + r.timeouts > 0);
    for (const [name, r] of any) {
      console.error(`[bench] note ${name}: ${r.non_2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts (under 1%)`);
    }
  }
}

main().catch(async (e) => {
  console.error(`[bench] error: ${e.stack || e.message}`);
  if (process.env.BENCH_LOG) fs.writeFileSync(process.env.BENCH_LOG, workerLog.join('\n') + '\n');
  if (workerLog.length) {
    console.error('[bench] last wrangler dev output:');
    for (const l of workerLog.slice(-40)) console.error('  ' + l);
  }
  await cleanup();
  process.exit(1);
});
