import { describe, expect, it } from "vitest";

import { parseEventStream, type ServerSentEvent } from "../src/sse";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

async function collect(chunks: string[]): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  for await (const event of parseEventStream(streamOf(chunks))) events.push(event);
  return events;
}

describe("parseEventStream", () => {
  it("reads events split anywhere across chunks, CRLF included, skipping ping comments", async () => {
    const text = ": ping\r\n\r\nevent: timeline\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\nevent: status\r\nid: 2\r\ndata: {\"b\":2}\r\n\r\n";
    for (let cut = 1; cut < text.length; cut += 7) {
      const events = await collect([text.slice(0, cut), text.slice(cut)]);
      expect(events).toEqual([
        { event: "timeline", id: "1", data: '{"a":1}' },
        { event: "status", id: "2", data: '{"b":2}' },
      ]);
    }
  });

  it("joins multi-line data, defaults the event name, keeps the last id and drops an unfinished event", async () => {
    const events = await collect(["id: 7\ndata: one\ndata:two\n\n", "data: three\n\n", "event: status\ndata: cut off"]);
    expect(events).toEqual([
      { event: "message", id: "7", data: "one\ntwo" },
      { event: "message", id: "7", data: "three" },
    ]);
  });
});
