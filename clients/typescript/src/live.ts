// Typed live feeds over a WebSocket: `/api/v1/conversations/{id}/live` (agents and above) and
// `/api/v1/notifications/live` (your own notifications). The token goes as the subprotocols
// `bearer, <token>` (browsers cannot set an Authorization header on a WebSocket); the server
// selects `bearer`. A feed lasts no longer than the token it was opened with: the server closes
// it with 1008 when that token expires or the session ends — open a new one with a fresh token.

import type { components } from "./schema.js";

type Schemas = components["schemas"];

/** Frames every feed sends: the greeting, the answer to a ping, and a refused client frame. */
export type CommonEvent =
  | { type: "connected" }
  | { type: "pong" }
  | { type: "error"; message: string };

/** A conversation's live events. */
export type ConversationEvent =
  | CommonEvent
  | { type: "message.created"; conversation_id: string; data: Schemas["Message"] }
  | { type: "message.status"; conversation_id: string; data: Schemas["Message"] }
  | { type: "message.updated"; conversation_id: string; data: Schemas["Message"] }
  | { type: "conversation.updated"; conversation_id: string; data: Schemas["Conversation"] }
  /** Another agent is typing. */
  | { type: "typing"; user_id: string };

/** Your notification feed's events. */
export type NotificationEvent =
  | CommonEvent
  | { type: "notification.created"; data: Schemas["Notification"] };

/** What a client may send on a conversation feed. */
export type ConversationFrame = { type: "typing" } | { type: "ping" };
/** What a client may send on the notification feed. */
export type NotificationFrame = { type: "ping" };

/** The part of the WebSocket API the wrapper uses: the browser's global and `ws` both fit. */
export interface SocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void;
}

/** A WebSocket constructor: `globalThis.WebSocket` in a browser, `WebSocket` from `ws` in Node. */
export type SocketConstructor = new (url: string, protocols: string[]) => SocketLike;

export interface LiveOptions {
  /** The deployment's origin (`https://…` becomes `wss://…`). */
  baseUrl: string;
  /** The access token (an API key cannot open a feed: feeds belong to a user's session). */
  token: string;
  /** Defaults to `globalThis.WebSocket` (browsers, Node 22+); pass `ws`'s in Node 20. */
  WebSocket?: SocketConstructor;
}

export interface Closed {
  code: number;
  reason: string;
}

/** A live feed of events `E`, accepting client frames `F`. */
export class LiveFeed<E extends { type: string }, F extends { type: string }> {
  readonly socket: SocketLike;
  /** Resolves on the server's `connected` frame; rejects if the socket closes first. */
  readonly opened: Promise<void>;
  /** Resolves when the socket has closed (1008: the token expired or the session ended). */
  readonly closed: Promise<Closed>;
  private readonly handlers = new Set<(event: E) => void>();
  private readonly backlog: E[] = [];
  private readonly waiters = new Set<{ take: (event: E) => boolean; fail: (e: Error) => void }>();
  private ended: Closed | undefined;

  constructor(url: string, token: string, Ctor: SocketConstructor) {
    this.socket = new Ctor(url, ["bearer", token]);
    let opened: () => void = () => {};
    let failed: (e: Error) => void = () => {};
    this.opened = new Promise<void>((resolve, reject) => {
      opened = resolve;
      failed = reject;
    });
    // Callers that never await `opened` must not see an unhandled rejection.
    this.opened.catch(() => {});
    this.closed = new Promise<Closed>((resolve) => {
      this.socket.addEventListener("close", (event: { code?: number; reason?: string }) => {
        this.ended = { code: event.code ?? 1006, reason: String(event.reason ?? "") };
        failed(new Error(`live feed closed (${this.ended.code}) before it was connected`));
        resolve(this.ended);
        for (const w of this.waiters) w.fail(new Error(`live feed closed (${this.ended.code})`));
        this.waiters.clear();
      });
    });
    this.socket.addEventListener("message", (event: { data: unknown }) => {
      const parsed = parse<E>(event.data);
      if (!parsed) return;
      if (parsed.type === "connected") opened();
      this.dispatch(parsed);
    });
  }

  private dispatch(event: E) {
    for (const h of this.handlers) h(event);
    for (const w of this.waiters) {
      if (w.take(event)) {
        this.waiters.delete(w);
        return;
      }
    }
    this.backlog.push(event);
    if (this.backlog.length > 1000) this.backlog.shift();
  }

  /** Calls `handler` with every event from now on; returns a function that stops it. */
  on(handler: (event: E) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /**
   * The next event of `type` (and matching `filter`), including ones that arrived since the
   * feed opened and were not taken yet. Rejects after `timeoutMs` or when the feed closes.
   */
  next<T extends E["type"]>(
    type: T,
    options: { filter?: (event: Extract<E, { type: T }>) => boolean; timeoutMs?: number } = {},
  ): Promise<Extract<E, { type: T }>> {
    type Wanted = Extract<E, { type: T }>;
    const matches = (e: E): e is Wanted =>
      e.type === type && (!options.filter || options.filter(e as Wanted));
    const i = this.backlog.findIndex(matches);
    if (i >= 0) return Promise.resolve(this.backlog.splice(i, 1)[0] as Wanted);
    if (this.ended) return Promise.reject(new Error(`live feed closed (${this.ended.code})`));
    return new Promise<Wanted>((resolve, reject) => {
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.waiters.delete(waiter);
              reject(new Error(`no ${type} event within ${options.timeoutMs} ms`));
            }, options.timeoutMs);
      const waiter = {
        take: (e: E) => {
          if (!matches(e)) return false;
          clearTimeout(timer);
          resolve(e);
          return true;
        },
        fail: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Sends a client frame. */
  send(frame: F): void {
    this.socket.send(JSON.stringify(frame));
  }

  /** Closes the feed (1000). */
  close(): void {
    this.socket.close(1000, "done");
  }
}

function parse<E>(data: unknown): E | undefined {
  let text: string;
  if (typeof data === "string") text = data;
  else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    text = new TextDecoder().decode(data as ArrayBuffer);
  } else return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && "type" in value ? (value as E) : undefined;
  } catch {
    return undefined;
  }
}

function liveUrl(baseUrl: string, path: string): string {
  const url = new URL(path, baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

function constructor(options: LiveOptions): SocketConstructor {
  const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
  if (!Ctor) {
    throw new Error("no WebSocket here: pass `WebSocket` (in Node 20, the `ws` package's)");
  }
  return Ctor;
}

/** Opens a conversation's live feed (agents, admins and owners). */
export function conversationFeed(
  options: LiveOptions,
  conversationId: string,
): LiveFeed<ConversationEvent, ConversationFrame> {
  const path = `/api/v1/conversations/${encodeURIComponent(conversationId)}/live`;
  return new LiveFeed(liveUrl(options.baseUrl, path), options.token, constructor(options));
}

/** Opens the caller's own notification feed. */
export function notificationFeed(
  options: LiveOptions,
): LiveFeed<NotificationEvent, NotificationFrame> {
  return new LiveFeed(
    liveUrl(options.baseUrl, "/api/v1/notifications/live"),
    options.token,
    constructor(options),
  );
}
