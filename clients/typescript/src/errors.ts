// Errors as Tenantry answers them: RFC 9457 problem+json with a stable `code`, per-field
// `errors` for validation and the `request_id` to quote to support.

import type { components } from "./schema.js";

/** The problem+json body of every Tenantry error, as the OpenAPI document describes it. */
export type Problem = components["schemas"]["Problem"];
/** One field's complaint in a `validation_failed` (422) problem. */
export type FieldError = components["schemas"]["FieldError"];

/**
 * A Tenantry error answer, typed. `code` is the stable machine code (`validation_failed`,
 * `unauthorized`, `not_found`, `rate_limited`, `quota_exceeded`, …); `problem` keeps the whole
 * body, including members a code adds (`metric`, `limit`, `used`, `resets_at` for
 * `quota_exceeded`).
 */
export class TenantryError extends Error {
  override readonly name = "TenantryError";
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  readonly type: string;
  readonly errors: FieldError[];
  readonly request_id: string;
  readonly problem: Problem | undefined;
  readonly response: Response | undefined;

  constructor(
    init: {
      status: number;
      code: string;
      title: string;
      detail?: string;
      type?: string;
      errors?: FieldError[];
      request_id?: string;
      problem?: Problem;
    },
    response?: Response,
  ) {
    super(init.detail ? `${init.title}: ${init.detail}` : init.title);
    this.status = init.status;
    this.code = init.code;
    this.title = init.title;
    this.detail = init.detail ?? "";
    this.type = init.type ?? "about:blank";
    this.errors = init.errors ?? [];
    this.request_id = init.request_id ?? "";
    this.problem = init.problem;
    this.response = response;
  }

  /** The message for one field of a 422, if the server named it. */
  field(name: string): string | undefined {
    return this.errors.find((e) => e.field === name)?.message;
  }

  /**
   * Builds the error from a non-2xx answer and its parsed body. A body that is not a problem
   * (a proxy's HTML page, an empty 502) still gives a usable error: `code` is `http_<status>`
   * and `request_id` comes from the `X-Request-Id` header.
   */
  static from(response: Response, body: unknown): TenantryError {
    const headerId = response.headers.get("X-Request-Id") ?? "";
    if (isProblem(body)) {
      return new TenantryError(
        {
          status: body.status,
          code: body.code,
          title: body.title,
          detail: body.detail,
          type: body.type,
          errors: Array.isArray(body.errors) ? body.errors : [],
          request_id: body.request_id || headerId,
          problem: body,
        },
        response,
      );
    }
    return new TenantryError(
      {
        status: response.status,
        code: `http_${response.status}`,
        title: response.statusText || `HTTP ${response.status}`,
        detail: typeof body === "string" ? body.slice(0, 500) : "",
        request_id: headerId,
      },
      response,
    );
  }
}

function isProblem(body: unknown): body is Problem {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Record<string, unknown>;
  return (
    typeof b.status === "number" &&
    typeof b.code === "string" &&
    typeof b.title === "string" &&
    typeof b.request_id === "string"
  );
}

/** Whether `e` is a Tenantry error answer (optionally with this `code`). */
export function isTenantryError(e: unknown, code?: string): e is TenantryError {
  return e instanceof TenantryError && (code === undefined || e.code === code);
}
