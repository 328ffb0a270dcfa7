// Contract: FIFO queues (queue(...).upsert/get/list/pause/resume/delete, enqueueJSON)
// and flow control (publishJSON({flowControl}), flowControl.get) through the official
// TypeScript client. Deliveries verified by the SDK's Receiver.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { QstashError } from "@upstash/qstash";
import { Destination, client, sleep, uniquePath, waitUntil } from "./support.mjs";

const qstash = client();
let destination;

before(async () => {
  destination = await new Destination().start();
});

after(async () => {
  destination.assertAllSigned();
  await destination.close();
});

const order = (requests) => requests.map((request) => JSON.parse(request.body).n);

describe("queues", () => {
  it("enqueueJSON delivers in FIFO order, the next waiting for the previous one's retries", async () => {
    const path = uniquePath("fifo");
    const queue = qstash.queue({ queueName: path.slice(1) });
    destination.script(path, { status: 500 }, { status: 200, delayMs: 150 });
    for (let n = 0; n < 3; n++) {
      await queue.enqueueJSON({ url: destination.url(path), body: { n }, retries: 1, retryDelay: "50" });
    }
    assert.deepEqual(order(await destination.waitFor(path, 4)), [0, 0, 1, 2]);
    const info = await queue.get();
    assert.equal(info.parallelism, 1);
    assert.equal(info.paused, false);
  });

  it("upsert({parallelism, paused}), get, list, resume, delete", async () => {
    const path = uniquePath("paused");
    const name = path.slice(1);
    const queue = qstash.queue({ queueName: name });
    await queue.upsert({ parallelism: 2, paused: true });
    for (let n = 0; n < 2; n++) await queue.enqueueJSON({ url: destination.url(path), body: { n } });
    await sleep(300);
    assert.equal(destination.requestsTo(path).length, 0);
    const held = await queue.get();
    assert.deepEqual([held.parallelism, held.paused, held.lag], [2, true, 2]);
    assert.ok((await qstash.queue().list()).some((q) => q.name === name));
    await queue.resume();
    assert.deepEqual(new Set(order(await destination.waitFor(path, 2))), new Set([0, 1]));
    await waitUntil(async () => (await queue.get()).lag === 0, "the queue to drain");
    await queue.delete();
    await assert.rejects(queue.get(), (error) => error instanceof QstashError && error.status === 404);
  });
});

describe("flow control", () => {
  it("publishJSON({flowControl: {key, parallelism: 1}}) delivers the key's messages one at a time", async () => {
    const path = uniquePath("flow");
    const key = path.slice(1);
    destination.script(path, ...Array.from({ length: 3 }, () => ({ status: 200, delayMs: 200 })));
    for (let n = 0; n < 3; n++) {
      await qstash.publishJSON({ url: destination.url(path), body: { n }, flowControl: { key, parallelism: 1 } });
    }
    const info = await qstash.flowControl.get(key);
    assert.equal(info.flowControlKey, key);
    assert.equal(info.parallelismMax, 1);
    const starts = (await destination.waitFor(path, 3)).map((r) => r.at).sort((a, b) => a - b);
    assert.ok(starts[1] - starts[0] >= 190, `second started ${starts[1] - starts[0]} ms after the first`);
    assert.ok(starts[2] - starts[1] >= 190, `third started ${starts[2] - starts[1]} ms after the second`);
  });

  it("flowControl.pause/resume/pin/unpin/resetRate and getGlobalParallelism", async () => {
    const path = uniquePath("managed");
    const key = path.slice(1);
    await qstash.publishJSON({ url: destination.url(path), body: { n: 0 }, flowControl: { key, parallelism: 1 } });
    await destination.waitFor(path);
    await qstash.flowControl.pause(key);
    await qstash.publishJSON({ url: destination.url(path), body: { n: 1 }, flowControl: { key, parallelism: 1 } });
    await sleep(300);
    assert.equal(destination.requestsTo(path).length, 1);
    const paused = await qstash.flowControl.get(key);
    assert.equal(paused.isPaused, true);
    assert.equal(paused.waitListSize, 1);
    await qstash.flowControl.resume(key);
    await destination.waitFor(path, 2);
    await qstash.flowControl.pin(key, { parallelism: 4, rate: 9, period: 30 });
    const pinned = await qstash.flowControl.get(key);
    assert.deepEqual([pinned.parallelismMax, pinned.rateMax, pinned.ratePeriod], [4, 9, 30]);
    await qstash.flowControl.resetRate(key);
    assert.equal((await qstash.flowControl.get(key)).rateCount, 0);
    await qstash.flowControl.unpin(key, { parallelism: true, rate: true });
    assert.equal((await qstash.flowControl.get(key)).parallelismMax, 1);
    const global = await qstash.flowControl.getGlobalParallelism();
    assert.ok(global.parallelismMax >= 1);
  });
});
