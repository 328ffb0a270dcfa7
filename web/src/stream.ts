/**
 * Following one queue's server-sent events (`GET .../status/{id}/stream`) with
 * resumption: a dropped connection is opened again with `Last-Event-ID` set to
 * the last event seen, so nothing is missed or repeated; `204` (the queue ended
 * and that was its last event) and a terminal status end the follow.
 */
import { isTerminal, type QueueStatus, type TimelineEvent, type VidpipeClient } from "./client.js";
import { parseEventStream } from "./sse.js";

export type StreamOutcome =
  /** The queue reached completed, failed or cancelled (or the server said 204). */
  | "ended"
  /** Streams cannot be used here (refused, 429, no readable body, or dropped too often): poll instead. */
  | "unavailable"
  /** The signal was aborted (the component unmounted, the queue id changed). */
  | "aborted";

export interface FollowOptions {
  signal: AbortSignal;
  onStatus(status: QueueStatus): void;
  onTimeline(event: TimelineEvent): void;
  /** Resume after this event id (a queue version) instead of from the start. */
  lastEventId?: string;
  /** Pause before reopening a dropped stream (ms, default 1000). */
  retryDelayMs?: number;
  /** Consecutive reopenings without a single event before giving up on streams (default 3). */
  maxRetries?: number;
}

export async function followQueueStream(
  client: VidpipeClient,
  queueId: string,
  options: FollowOptions,
): Promise<StreamOutcome> {
  const { signal, retryDelayMs = 1000, maxRetries = 3 } = options;
  const url = client.url(`/api/video-processing/status/${encodeURIComponent(queueId)}/stream`);
  let lastEventId = options.lastEventId;
  let failures = 0;
  while (!signal.aborted) {
    let response: Response;
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream", ...(await client.authHeaders()) };
      if (lastEventId !== undefined) {
        headers["Last-Event-ID"] = lastEventId;
      }
      response = await client.fetch(url, { headers, signal, cache: "no-store" });
    } catch {
      if (signal.aborted) {
        return "aborted";
      }
      if (++failures > maxRetries) {
        return "unavailable";
      }
      await pause(retryDelayMs, signal);
      continue;
    }
    if (response.status === 204) {
      return "ended";
    }
    const type = response.headers.get("content-type") ?? "";
    if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
      await response.body?.cancel().catch(() => undefined);
      return "unavailable";
    }
    try {
      for await (const event of parseEventStream(response.body, signal)) {
        failures = 0;
        lastEventId = event.id ?? lastEventId;
        if (event.event === "timeline") {
          options.onTimeline(JSON.parse(event.data) as TimelineEvent);
        } else if (event.event === "status") {
          const status = JSON.parse(event.data) as QueueStatus;
          options.onStatus(status);
          if (isTerminal(status.status)) {
            return "ended";
          }
        }
      }
    } catch {
      // a connection cut mid-stream: reopened below, from lastEventId
    }
    if (signal.aborted) {
      return "aborted";
    }
    if (++failures > maxRetries) {
      return "unavailable";
    }
    await pause(retryDelayMs, signal);
  }
  return "aborted";
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
