/**
 * The vidpipe client: openapi-fetch over the types generated from the API's own
 * `/openapi.json` (src/schema.d.ts), plus the base URL and the token source.
 *
 * The token source is a function so that whatever holds the session (NextAuth's
 * `getSession`, Supabase's `auth.getSession`, a test's constant) is asked on
 * every request and a refreshed token is used as soon as it exists.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export type QueueStatus = components["schemas"]["QueueStatus"];
export type StepStatus = components["schemas"]["StepStatus"];
export type QueueAccepted = components["schemas"]["QueueAccepted"];
export type QueuePage = components["schemas"]["QueuePage"];
export type Timeline = components["schemas"]["Timeline"];
export type TimelineEvent = components["schemas"]["TimelineEvent"];
export type Cancellation = components["schemas"]["Cancellation"];
export type SearchAnswer = components["schemas"]["SearchAnswer"];
export type SearchMoment = components["schemas"]["SearchMoment"];
export type MediaLinks = components["schemas"]["MediaLinks"];
export type ProcessingStatus = QueueStatus["status"];

/** A bearer token, or nothing (then no Authorization header is sent). */
export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

export interface VidpipeConfig {
  /** Where the API is, e.g. `http://127.0.0.1:8000` (no trailing `/api`). */
  baseUrl: string;
  /** Asked before every request; its token is sent as `Authorization: Bearer <token>`. */
  token?: TokenSource;
  /** The fetch to use (tests, or a fetch with its own retries); defaults to the global one. */
  fetch?: typeof globalThis.fetch;
}

/** An answer of the API other than 2xx, with the API's own `error` message. */
export class VidpipeApiError extends Error {
  override readonly name = "VidpipeApiError";

  constructor(
    readonly status: number,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

export interface VidpipeClient {
  readonly config: Readonly<VidpipeConfig>;
  /** The typed openapi-fetch client (every path of the OpenAPI document). */
  readonly api: Client<paths>;
  /** `baseUrl` joined with `path` (which starts with `/`). */
  url(path: string): string;
  /** The Authorization header for the current token, or none. */
  authHeaders(): Promise<Record<string, string>>;
  /** The configured fetch, bound so that it can be called unqualified. */
  fetch: typeof globalThis.fetch;
}

export function createVidpipeClient(config: VidpipeConfig): VidpipeClient {
  if (!config.baseUrl) {
    throw new Error("vidpipe: baseUrl is required, e.g. createVidpipeClient({ baseUrl: 'http://127.0.0.1:8000' })");
  }
  const baseUrl = config.baseUrl.replace(/\/+$/, "");
  const fetchImpl: typeof globalThis.fetch = (input, init) => (config.fetch ?? globalThis.fetch)(input, init);
  const authHeaders = async (): Promise<Record<string, string>> => {
    const token = config.token ? await config.token() : undefined;
    return token ? { Authorization: `Bearer ${token}` } : {};
  };
  const auth: Middleware = {
    async onRequest({ request }) {
      for (const [name, value] of Object.entries(await authHeaders())) {
        request.headers.set(name, value);
      }
      return request;
    },
  };
  const api = createClient<paths>({ baseUrl, fetch: fetchImpl });
  api.use(auth);
  return {
    config: { ...config, baseUrl },
    api,
    url: (path) => `${baseUrl}${path}`,
    authHeaders,
    fetch: fetchImpl,
  };
}

/** The API's `{"error": "..."}` message, else a message naming the status. */
export function errorMessage(status: number, body: unknown): string {
  if (body && typeof body === "object" && "error" in body && typeof body.error === "string") {
    return body.error;
  }
  if (body && typeof body === "object" && "detail" in body) {
    return `vidpipe answered ${status}: ${JSON.stringify(body.detail)}`;
  }
  return `vidpipe answered ${status}`;
}

/** The data of an openapi-fetch result, or a VidpipeApiError carrying the API's message. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok && result.data !== undefined) {
    return result.data;
  }
  const status = result.response.status;
  throw new VidpipeApiError(status, errorMessage(status, result.error), result.error);
}

/** True for the statuses after which a queue never changes again. */
export function isTerminal(status: ProcessingStatus | undefined | null): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}
