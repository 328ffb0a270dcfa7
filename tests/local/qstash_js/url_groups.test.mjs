// Contract: URL groups through the official TypeScript client: urlGroups.addEndpoints /
// get / list / removeEndpoints / delete, and publishJSON({urlGroup}) fanning out to every
// endpoint, each delivery verified by the SDK's Receiver for its own URL.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { QstashError } from "@upstash/qstash";
import { Destination, client, uniquePath } from "./support.mjs";

const qstash = client();
let destination;

before(async () => {
  destination = await new Destination().start();
});

after(async () => {
  destination.assertAllSigned();
  await destination.close();
});

describe("URL groups", () => {
  it("addEndpoints, get, list, publishJSON({urlGroup}) fan-out, removeEndpoints, delete", async () => {
    const prefix = uniquePath("group");
    const name = prefix.slice(1);
    await qstash.urlGroups.addEndpoints({
      name,
      endpoints: [{ url: destination.url(`${prefix}/a`), name: "a" }, { url: destination.url(`${prefix}/b`) }],
    });
    const group = await qstash.urlGroups.get(name);
    assert.equal(group.name, name);
    assert.deepEqual(group.endpoints.map((e) => e.url), [destination.url(`${prefix}/a`), destination.url(`${prefix}/b`)]);
    assert.ok((await qstash.urlGroups.list()).some((g) => g.name === name));

    const results = await qstash.publishJSON({ urlGroup: name, body: { lecture: 7 } });
    assert.equal(results.length, 2);
    const [a] = await destination.waitFor(`${prefix}/a`);
    const [b] = await destination.waitFor(`${prefix}/b`);
    assert.deepEqual(JSON.parse(a.body), { lecture: 7 });
    assert.deepEqual(
      new Set([a.headers["upstash-message-id"], b.headers["upstash-message-id"]]),
      new Set(results.map((r) => r.messageId)),
    );

    await qstash.urlGroups.removeEndpoints({ name, endpoints: [{ name: "a" }] });
    assert.equal((await qstash.urlGroups.get(name)).endpoints.length, 1);
    await qstash.urlGroups.delete(name);
    await assert.rejects(qstash.urlGroups.get(name), (e) => e instanceof QstashError && e.status === 404);
  });
});
