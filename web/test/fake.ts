/**
 * A tiny in-process fake of vidpipe's HTTP API for the hook tests: a fetch that
 * records every request and answers from per-route handlers; event streams are
 * ReadableStreams the test writes to, closes or cuts.
 */
import type { QueueStatus, TimelineEvent } from "../src";

export interface Recorded {
  method: string;
  path: string;
  search: string;
  headers: Headers;
  body: unknown;
}

type Handler = (request: Request, recorded: Recorded) => Response | Promise<Response>;

export class FakeApi {
  readonly calls: Recorded[] = [];
  private readonly routes = new Map<string, Handler>();

  on(method: string, path: string, handler: Handler): this {
    this.routes.set(`${method} ${path}`, handler);
    return this;
  }

  callsTo(method: string, path: string): Recorded[] {
    return this.calls.filter((call) => call.method === method && call.path === path);
  }

  readonly fetch: typeof globalThis.fetch = async (input, init) => {
    const request = input instanceof Request && init === undefined ? input : new Request(input, init);
    const url = new URL(request.url);
    const type = request.headers.get("content-type") ?? "";
    let body: unknown;
    if (type.startsWith("application/json")) {
      body = await request.clone().json();
    } else if (type.startsWith("multipart/form-data")) {
      body = await request.clone().formData();
    }
    const recorded: Recorded = { method: request.method, path: url.pathname, search: url.search, headers: request.headers, body };
    this.calls.push(recorded);
    const handler = this.routes.get(`${request.method} ${url.pathname}`);
    if (!handler) {
      return json(404, { error: `fake: no route ${request.method} ${url.pathname}` });
    }
    return handler(request, recorded);
  };
}

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** An event stream the test feeds: `send` one event, `close` it cleanly, `cut` it as a dropped connection would. */
export class EventStream {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private readonly encoder = new TextEncoder();
  readonly response: Response;

  constructor() {
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
    });
    this.response = new Response(body, { status: 200, headers: { "content-type": "text/event-stream; charset=utf-8" } });
  }

  raw(text: string): void {
    this.controller.enqueue(this.encoder.encode(text));
  }

  send(event: "timeline" | "status", id: number, data: unknown): void {
    this.raw(`event: ${event}\r\nid: ${id}\r\ndata: ${JSON.stringify(data)}\r\n\r\n`);
  }

  close(): void {
    this.controller.close();
  }

  cut(): void {
    this.controller.error(new TypeError("network error: connection reset"));
  }
}

export const QUEUE = "3f6c1a52-7a4e-4c61-9d55-0f4b1c2d9e10";
const STEPS = ["compress", "audio-convert", "transcribe", "embed"];

export function status(version: number, state: QueueStatus["status"], progress = 0, extra: Partial<QueueStatus> = {}): QueueStatus {
  return {
    queue_id: QUEUE,
    owner_id: "dev-tutor",
    attachment_id: "att-1",
    status: state,
    progress_percentage: progress,
    current_step: state === "processing" ? "compress" : null,
    error: null,
    retries: 0,
    version,
    created_at: "2026-12-04T05:00:00Z",
    updated_at: "2026-12-04T05:00:00Z",
    steps: STEPS.map((step, position) => ({
      step,
      position,
      status: state === "completed" ? "completed" : "pending",
      progress: state === "completed" ? 100 : 0,
      attempts: 0,
      retries: 0,
    })),
    ...extra,
  } as QueueStatus;
}

export function timeline(position: number, event: string, step: string | null = null): TimelineEvent {
  return { position, timestamp: "2026-12-04T05:00:00Z", event, step, attempt: null, detail: `${event} ${step ?? ""}`.trim() };
}
