// Harness for the contract tests of the local QStash server through the official
// TypeScript client (@upstash/qstash 2.x): the client pointed at the server under
// test (QSTASH_URL, started by tests/local/test_qstash_js_sdk.py), and a
// destination HTTP server on loopback whose every request is verified with the
// SDK's own Receiver. A delivery with a bad signature is recorded and fails the
// test that waits for it (and every test checks none was bad at its end).

import http from "node:http";
import { Client, Receiver } from "@upstash/qstash";

export const QSTASH_URL = requiredEnv("QSTASH_URL");
export const TOKEN = requiredEnv("QSTASH_TOKEN");
const CURRENT_SIGNING_KEY = requiredEnv("QSTASH_CURRENT_SIGNING_KEY");
const NEXT_SIGNING_KEY = requiredEnv("QSTASH_NEXT_SIGNING_KEY");

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through tests/local/test_qstash_js_sdk.py`);
  }
  return value;
}

/** The official client, without client-side retries, in production mode (no dev-server spawning). */
export function client() {
  return new Client({ baseUrl: QSTASH_URL, token: TOKEN, retry: false, devMode: false });
}

/** A raw authorised request to the server, for what the SDK does not expose. */
export async function raw(method, path, init = {}) {
  const response = await fetch(`${QSTASH_URL}${path}`, {
    method,
    ...init,
    headers: { Authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) },
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitUntil(predicate, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** A unique path prefix per test, so tests sharing one server never see each other's requests. */
export function uniquePath(name) {
  return `/${name}-${Math.random().toString(36).slice(2, 10)}`;
}

/** A destination on loopback: answers from a per-path script (default 200 "ok"),
 * records every request and verifies its Upstash-Signature with the SDK's Receiver. */
export class Destination {
  constructor() {
    this.received = [];
    this.scripts = new Map();
    this.receiver = new Receiver({
      currentSigningKey: CURRENT_SIGNING_KEY,
      nextSigningKey: NEXT_SIGNING_KEY,
      devMode: false,
    });
    this.server = http.createServer((request, response) => this.handle(request, response));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  async close() {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  url(path) {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Answer the next requests to `path` with `replies` ({status, body, headers, delayMs}) in order. */
  script(path, ...replies) {
    this.scripts.set(path, replies);
  }

  requestsTo(path) {
    return this.received.filter((request) => request.path === path);
  }

  async waitFor(path, count = 1, timeoutMs = 5000) {
    await waitUntil(() => this.requestsTo(path).length >= count, `${count} request(s) to ${path}`, timeoutMs);
    return this.requestsTo(path);
  }

  /** Every request's signature verified; throws naming the bad ones otherwise. */
  assertAllSigned() {
    const bad = this.received.filter((request) => request.signatureError !== null);
    if (bad.length) {
      throw new Error(`unverifiable deliveries: ${bad.map((r) => `${r.path}: ${r.signatureError}`).join("; ")}`);
    }
    return this.received.length;
  }

  async handle(request, response) {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString("utf8");
    const path = request.url;
    let signatureError = null;
    try {
      await this.receiver.verify({
        signature: request.headers["upstash-signature"] ?? "",
        body,
        url: this.url(path),
        clockTolerance: 5,
      });
    } catch (error) {
      signatureError = String(error?.message ?? error);
    }
    this.received.push({
      method: request.method,
      path,
      headers: request.headers,
      body,
      at: Date.now(),
      signatureError,
    });
    const script = this.scripts.get(path) ?? [];
    const reply = script.shift() ?? { status: 200, body: "ok" };
    if (reply.delayMs) await sleep(reply.delayMs);
    response.writeHead(reply.status, reply.headers ?? {});
    response.end(reply.body ?? "");
  }
}
