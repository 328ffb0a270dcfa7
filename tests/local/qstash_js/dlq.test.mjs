// Contract: the dead-letter queue through the official TypeScript client:
// listMessages, delete (single, ids, all), retry (ids, all). Deliveries verified by Receiver.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { QstashError } from "@upstash/qstash";
import { Destination, client, uniquePath, waitUntil } from "./support.mjs";

const qstash = client();
let destination;

before(async () => {
  destination = await new Destination().start();
});

beforeEach(async () => {
  await qstash.dlq.delete({ all: true, count: 1000 });
});

after(async () => {
  destination.assertAllSigned();
  await destination.close();
});

/** `count` messages that fail at once (retries: 0) and so land in the DLQ; their dlqIds. */
async function deadLetters(path, count) {
  destination.script(path, ...Array.from({ length: count }, () => ({ status: 500, body: "nope" })));
  const ids = [];
  for (let i = 0; i < count; i++) {
    ids.push((await qstash.publishJSON({ url: destination.url(path), body: { i }, retries: 0 })).messageId);
  }
  const letters = await waitUntil(async () => {
    const { messages } = await qstash.dlq.listMessages();
    return messages.length === count && messages;
  }, `${count} dead letters`);
  assert.deepEqual(new Set(letters.map((l) => l.messageId)), new Set(ids));
  return letters.map((letter) => letter.dlqId);
}

describe("dlq", () => {
  it("listMessages shows the last response; filter and paging with count/cursor", async () => {
    const path = uniquePath("dead");
    await deadLetters(path, 2);
    const { messages } = await qstash.dlq.listMessages();
    assert.equal(messages[0].responseStatus, 500);
    assert.equal(messages[0].responseBody, "nope");
    assert.equal(messages[0].url, destination.url(path));
    const page = await qstash.dlq.listMessages({ count: 1 });
    assert.equal(page.messages.length, 1);
    assert.ok(page.cursor);
    const next = await qstash.dlq.listMessages({ count: 1, cursor: page.cursor });
    assert.equal(next.messages.length, 1);
    assert.notEqual(next.messages[0].dlqId, page.messages[0].dlqId);
    const filtered = await qstash.dlq.listMessages({ filter: { url: destination.url(path) } });
    assert.equal(filtered.messages.length, 2);
  });

  it("delete(id), delete([ids]) (?dlqIds=) and delete({all}) remove exactly what they name", async () => {
    const ids = await deadLetters(uniquePath("del"), 4);
    assert.deepEqual(await qstash.dlq.delete(ids[0]), { deleted: 1 });
    await assert.rejects(qstash.dlq.delete(ids[0]), (error) => error instanceof QstashError && error.status === 404);
    assert.deepEqual(await qstash.dlq.delete([ids[1], "dlq_does_not_exist"]), { deleted: 1 });
    const left = (await qstash.dlq.listMessages()).messages.map((l) => l.dlqId);
    assert.deepEqual(new Set(left), new Set(ids.slice(2)));
    const firstPage = await qstash.dlq.delete({ all: true, count: 1 });
    assert.equal(firstPage.deleted, 1);
    assert.ok(firstPage.cursor, "a cursor while more remain");
    const rest = await qstash.dlq.delete({ all: true, count: 1, cursor: firstPage.cursor });
    assert.equal(rest.deleted, 1);
    assert.deepEqual((await qstash.dlq.listMessages()).messages, []);
  });

  it("retry([ids]) (POST /v2/dlq/retry?dlqIds=) publishes them again as new messages", async () => {
    const path = uniquePath("retry");
    const ids = await deadLetters(path, 2);
    const { responses } = await qstash.dlq.retry([ids[0]]);
    assert.equal(responses.length, 1);
    const attempts = await destination.waitFor(path, 3);
    assert.equal(attempts[2].headers["upstash-message-id"], responses[0].messageId);
    const left = (await qstash.dlq.listMessages()).messages.map((l) => l.dlqId);
    assert.deepEqual(left, [ids[1]]);
    const all = await qstash.dlq.retry({ all: true });
    assert.equal(all.responses.length, 1);
    await destination.waitFor(path, 4);
  });
});
