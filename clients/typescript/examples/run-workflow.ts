// Log in, start a deployed workflow and poll its execution until it ends. Against `make dev`:
//   TENANTRY_URL=http://localhost:8787 TENANTRY_EMAIL=member@northwind.demo \
//   TENANTRY_PASSWORD=… node --experimental-strip-types examples/run-workflow.ts
// (or compile it with the package's tsc). `make test` type-checks it.

import { createClient, idempotencyKey, paginate, unwrap, type Schemas } from "@tenantry/client";

const api = createClient({
  baseUrl: process.env.TENANTRY_URL ?? "http://localhost:8787",
  retryOn429: { max: 3 },
  onTokens: (t) => console.log(`session renewed, access token lives ${t.expires_in ?? "?"} s`),
});
await api.login({ email: process.env.TENANTRY_EMAIL ?? "", password: process.env.TENANTRY_PASSWORD ?? "" });

// The first deployed workflow (every page of the list, fetched as the loop needs it).
let workflow: Schemas["Workflow"] | undefined;
for await (const w of paginate((cursor) => api.GET("/api/v1/workflows", { params: { query: { cursor } } }))) {
  if (w.status === "deployed") {
    workflow = w;
    break;
  }
}
if (!workflow) throw new Error("no deployed workflow in this tenant");

// 202 with the execution; the key makes a retried click start it only once.
const started = await unwrap(
  api.POST("/api/v1/workflows/{id}/execute", {
    params: { path: { id: workflow.id }, header: { "Idempotency-Key": idempotencyKey() } },
    body: { input_data: { prompt: "a lighthouse at dusk", count: 2 } },
  }),
);
console.log(`started ${started.data.execution_id} of ${workflow.name}`);

let execution: Schemas["Execution"];
do {
  await new Promise((r) => setTimeout(r, 1000));
  execution = (
    await unwrap(api.GET("/api/v1/executions/{id}", { params: { path: { id: started.data.execution_id } } }))
  ).data;
  console.log(`${execution.status} ${execution.progress}%`);
} while (execution.status === "pending" || execution.status === "processing");

console.log(execution.status === "completed" ? execution.output_data : execution.error_message);
