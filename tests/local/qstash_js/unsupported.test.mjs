// Contract: official TypeScript client calls this server does not implement answer
// 501 naming the feature (never 404/405, never another effect).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { QstashError, upstash } from "@upstash/qstash";
import { client } from "./support.mjs";

const qstash = client();

const calls = {
  "Upstash API": () =>
    qstash.publishJSON({
      api: { name: "llm", provider: upstash() },
      body: { model: "m", messages: [] },
      callback: "http://127.0.0.1:9/callback",
    }),
};

describe("unsupported official calls", () => {
  for (const [feature, call] of Object.entries(calls)) {
    it(`${feature} → 501 naming the feature`, async () => {
      await assert.rejects(call(), (error) => {
        assert.ok(error instanceof QstashError, String(error));
        assert.equal(error.status, 501);
        assert.match(error.message, /not supported by the local QStash server/);
        assert.match(error.message, new RegExp(feature.split(" (")[0], "i"));
        return true;
      });
    });
  }
});
