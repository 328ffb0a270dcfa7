// Contract: cron schedules through the official TypeScript client:
// schedules.create/get/list/pause/resume/delete. (Firing is covered by the Python
// tests, which can bring a cron slot forward; here the stored request is checked.)

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { QstashError } from "@upstash/qstash";
import { client, uniquePath } from "./support.mjs";

const qstash = client();

describe("schedules", () => {
  it("create, get, list, pause, resume, delete", async () => {
    const destination = `http://127.0.0.1:9${uniquePath("scheduled")}`;
    const { scheduleId } = await qstash.schedules.create({
      destination,
      cron: "*/10 * * * *",
      body: JSON.stringify({ job: "digest" }),
      headers: { "Content-Type": "application/json", "X-Tenant": "t1" },
      retries: 1,
    });
    const schedule = await qstash.schedules.get(scheduleId);
    assert.equal(schedule.scheduleId, scheduleId);
    assert.equal(schedule.cron, "*/10 * * * *");
    assert.equal(schedule.destination, destination);
    assert.equal(schedule.retries, 1);
    assert.equal(schedule.body, '{"job":"digest"}');
    assert.deepEqual(schedule.header["X-Tenant"], ["t1"]);
    assert.equal(schedule.isPaused, false);
    assert.ok(schedule.nextScheduleTime > Date.now() && schedule.nextScheduleTime % 600000 === 0);
    assert.ok((await qstash.schedules.list()).some((s) => s.scheduleId === scheduleId));
    await qstash.schedules.pause({ schedule: scheduleId });
    assert.equal((await qstash.schedules.get(scheduleId)).isPaused, true);
    await qstash.schedules.resume({ schedule: scheduleId });
    assert.equal((await qstash.schedules.get(scheduleId)).isPaused, false);
    await qstash.schedules.delete(scheduleId);
    await assert.rejects(qstash.schedules.get(scheduleId), (e) => e instanceof QstashError && e.status === 404);
  });

  it("a bad cron is 400 naming the problem", async () => {
    await assert.rejects(
      qstash.schedules.create({ destination: "http://127.0.0.1:9/x", cron: "every minute" }),
      (error) => error instanceof QstashError && error.status === 400 && /5 fields/.test(error.message),
    );
  });
});
