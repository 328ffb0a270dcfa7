// Contract: publishing and message management through the official TypeScript client.
// Every delivery is verified by the SDK's Receiver (Destination.assertAllSigned).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { QstashError } from "@upstash/qstash";
import { Destination, client, raw, sleep, uniquePath, waitUntil } from "./support.mjs";

const qstash = client();
let destination;

before(async () => {
  destination = await new Destination().start();
});

after(async () => {
  destination.assertAllSigned();
  await destination.close();
});

/** Pending messages shaped like vidpipe's step messages (delayed an hour, so they stay pending). */
async function vidpipeStepMessages(prefix) {
  const ids = [];
  for (const step of ["compress", "transcribe"]) {
    const { messageId } = await qstash.publishJSON({
      url: destination.url(`${prefix}/api/video-processing/steps/${step}`),
      body: { queue_id: "q-1", step, attempt: 0 },
      delay: "1h",
      deduplicationId: `${prefix}:q-1:${step}:0`,
    });
    ids.push(messageId);
  }
  return ids;
}

async function stillPending(ids) {
  return Promise.all(ids.map(async (id) => (await qstash.messages.get(id)).messageId));
}

async function rejectsWithStatus(promise, status) {
  await assert.rejects(promise, (error) => error instanceof QstashError && error.status === status);
}

describe("publish (POST /v2/publish)", () => {
  it("publishJSON delivers the body, signed, with QStash's headers", async () => {
    const path = uniquePath("publish");
    const { messageId } = await qstash.publishJSON({
      url: destination.url(path),
      body: { video: "v1", n: [1, 2] },
      headers: { "X-Queue-Id": "q-42" },
    });
    assert.match(messageId, /^msg_/);
    const [received] = await destination.waitFor(path);
    assert.equal(received.signatureError, null);
    assert.deepEqual(JSON.parse(received.body), { video: "v1", n: [1, 2] });
    assert.equal(received.headers["upstash-message-id"], messageId);
    assert.equal(received.headers["upstash-retried"], "0");
    assert.equal(received.headers["x-queue-id"], "q-42");
    assert.equal(received.headers["content-type"], "application/json");
  });

  it("retries with the retryDelay expression, then a success callback", async () => {
    const path = uniquePath("flaky");
    const callback = uniquePath("callback");
    destination.script(path, { status: 500 }, { status: 503 });
    const { messageId } = await qstash.publishJSON({
      url: destination.url(path),
      body: {},
      retries: 2,
      retryDelay: "50",
      callback: destination.url(callback),
    });
    const attempts = await destination.waitFor(path, 3);
    assert.deepEqual(attempts.map((a) => a.headers["upstash-retried"]), ["0", "1", "2"]);
    const [report] = await destination.waitFor(callback);
    const payload = JSON.parse(report.body);
    assert.equal(payload.sourceMessageId, messageId);
    assert.equal(payload.status, 200);
  });

  it("deduplicationId answers the first message's id", async () => {
    const path = uniquePath("dedup");
    const first = await qstash.publishJSON({ url: destination.url(path), body: {}, deduplicationId: path });
    const again = await qstash.publishJSON({ url: destination.url(path), body: {}, deduplicationId: path });
    assert.equal(again.messageId, first.messageId);
    assert.equal(again.deduplicated, true);
  });

  it("contentBasedDeduplication answers the first message's id for the same content only", async () => {
    const path = uniquePath("content");
    const first = await qstash.publishJSON({ url: destination.url(path), body: { n: 1 }, contentBasedDeduplication: true });
    const again = await qstash.publishJSON({ url: destination.url(path), body: { n: 1 }, contentBasedDeduplication: true });
    const other = await qstash.publishJSON({ url: destination.url(path), body: { n: 2 }, contentBasedDeduplication: true });
    assert.equal(again.messageId, first.messageId);
    assert.notEqual(other.messageId, first.messageId);
  });

  it("redact hides the body and named headers in messages.get, delivers the originals", async () => {
    const path = uniquePath("private");
    const { messageId } = await qstash.publishJSON({
      url: destination.url(path),
      body: { ssn: "123" },
      headers: { Authorization: "Bearer secret" },
      redact: { body: true, header: ["Authorization"] },
      delay: 1,
    });
    const shown = await qstash.messages.get(messageId);
    assert.match(shown.body, /^REDACTED:[0-9a-f]{64}$/);
    assert.match(shown.header.Authorization[0], /^REDACTED:[0-9a-f]{64}$/);
    const [received] = await destination.waitFor(path, 1, 5000);
    assert.deepEqual(JSON.parse(received.body), { ssn: "123" });
    assert.equal(received.headers.authorization, "Bearer secret");
  });

  it("batchJSON (POST /v2/batch) publishes each entry with its own options", async () => {
    const one = uniquePath("batch-one");
    const two = uniquePath("batch-two");
    const results = await qstash.batchJSON([
      { url: destination.url(one), body: { n: 1 } },
      { url: destination.url(two), body: { n: 2 }, method: "PUT", headers: { "X-Step": "embed" } },
    ]);
    assert.equal(results.length, 2);
    const [first] = await destination.waitFor(one);
    const [second] = await destination.waitFor(two);
    assert.equal(first.headers["upstash-message-id"], results[0].messageId);
    assert.equal(second.headers["upstash-message-id"], results[1].messageId);
    assert.equal(second.method, "PUT");
    assert.equal(second.headers["x-step"], "embed");
    assert.deepEqual(JSON.parse(second.body), { n: 2 });
  });
});

describe("cancel (DELETE /v2/messages)", () => {
  it("cancel(['msg_does_not_exist']) cancels nothing: vidpipe's pending step messages stay (issue 15, item 4)", async () => {
    const steps = await vidpipeStepMessages(uniquePath("vidpipe"));
    const result = await qstash.messages.cancel(["msg_does_not_exist"]);
    assert.deepEqual(result, { cancelled: 0 });
    assert.deepEqual(await stillPending(steps), steps);
    await qstash.messages.cancel(steps);
  });

  it("cancel([A, B]) (?messageIds=A&messageIds=B) cancels exactly A and B", async () => {
    const prefix = uniquePath("exact");
    const steps = await vidpipeStepMessages(prefix);
    const doomed = [];
    for (const name of ["a", "b"]) {
      doomed.push((await qstash.publishJSON({ url: destination.url(`${prefix}/${name}`), body: {}, delay: "1h" })).messageId);
    }
    const result = await qstash.messages.cancel([...doomed, "msg_does_not_exist"]);
    assert.deepEqual(result, { cancelled: 2 });
    assert.deepEqual(await stillPending(steps), steps);
    for (const id of doomed) await rejectsWithStatus(qstash.messages.get(id), 404);
    await qstash.messages.cancel(steps);
  });

  it("cancel(id) answers JSON {cancelled: 1}; a second cancel is 404", async () => {
    const { messageId } = await qstash.publishJSON({ url: destination.url(uniquePath("one")), body: {}, delay: "1h" });
    assert.deepEqual(await qstash.messages.cancel(messageId), { cancelled: 1 });
    await rejectsWithStatus(qstash.messages.cancel(messageId), 404);
  });

  it("cancel({filter: {label}}) cancels the matches only", async () => {
    const prefix = uniquePath("filter");
    const label = prefix.slice(1);
    const keep = (await qstash.publishJSON({ url: destination.url(`${prefix}/keep`), body: {}, delay: "1h" })).messageId;
    await qstash.publishJSON({ url: destination.url(`${prefix}/drop`), body: {}, delay: "1h", label });
    assert.deepEqual(await qstash.messages.cancel({ filter: { label } }), { cancelled: 1 });
    assert.deepEqual(await stillPending([keep]), [keep]);
    await qstash.messages.cancel(keep);
  });

  it("cancel({all: true}) (no ids, no filter) cancels every pending message, count at a time", async () => {
    const path = uniquePath("all");
    for (let i = 0; i < 3; i++) await qstash.publishJSON({ url: destination.url(path), body: {}, delay: "1h" });
    let total = 0;
    for (;;) {
      const { cancelled } = await qstash.messages.cancel({ all: true, count: 2 });
      assert.ok(cancelled <= 2);
      if (cancelled === 0) break;
      total += cancelled;
    }
    assert.ok(total >= 3);
    await sleep(100);
    assert.equal(destination.requestsTo(path).length, 0);
  });

  it("a raw bulk cancel with an unknown filter is refused and cancels nothing", async () => {
    const steps = await vidpipeStepMessages(uniquePath("unknown-filter"));
    const response = await raw("DELETE", "/v2/messages?stepName=compress");
    assert.equal(response.status, 400);
    assert.deepEqual(await stillPending(steps), steps);
    await qstash.messages.cancel(steps);
  });
});

describe("events log (GET /v2/events)", () => {
  it("logs({filter: {messageId}}) lists the message's state changes, newest first", async () => {
    const path = uniquePath("logged");
    destination.script(path, { status: 500 });
    const { messageId } = await qstash.publishJSON({ url: destination.url(path), body: {}, retries: 1, retryDelay: "20" });
    await destination.waitFor(path, 2);
    const states = async () => (await qstash.logs({ filter: { messageId } })).logs.map((log) => log.state).reverse();
    await waitUntil(async () => (await states()).at(-1) === "DELIVERED", "DELIVERED");
    assert.deepEqual(await states(), ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]);
    const { logs } = await qstash.logs({ filter: { messageId, state: "RETRY" } });
    assert.equal(logs.length, 1);
    assert.ok(logs[0].nextDeliveryTime >= logs[0].time);
    assert.equal(logs[0].url, destination.url(path));
  });
});
