/**
 * Server-sent events over fetch, not EventSource: a browser's EventSource cannot
 * send `Authorization: Bearer`, and vidpipe's stream needs it. The parser follows
 * the HTML spec's event-stream rules (fields `event`, `data`, `id`; comment lines,
 * which vidpipe's pings are; CRLF, CR or LF line ends; an event ends at a blank line).
 */

export interface ServerSentEvent {
  /** `message` when the event named none. */
  event: string;
  data: string;
  /** The last `id` seen on the stream so far (what `Last-Event-ID` resumes from). */
  id: string | undefined;
}

/** The events of an event-stream body, in order, as they arrive. */
export async function* parseEventStream(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let lastId: string | undefined;
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return; // an event not ended by a blank line is dropped, as the spec says
      }
      buffer += decoder.decode(value, { stream: true });
      let end: RegExpExecArray | null;
      const lineEnd = /\r\n|\r|\n/g;
      let start = 0;
      while ((end = lineEnd.exec(buffer)) !== null) {
        // a CR at the very end may be the first half of a CRLF: wait for the next chunk
        if (end[0] === "\r" && end.index === buffer.length - 1) {
          break;
        }
        const line = buffer.slice(start, end.index);
        start = end.index + end[0].length;
        if (line === "") {
          if (data.length > 0) {
            yield { event: event || "message", data: data.join("\n"), id: lastId };
          }
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) {
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) {
          value = value.slice(1);
        }
        if (field === "event") {
          event = value;
        } else if (field === "data") {
          data.push(value);
        } else if (field === "id" && !value.includes("\0")) {
          lastId = value;
        }
      }
      buffer = buffer.slice(start);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}
