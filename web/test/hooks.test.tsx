import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, cleanup, renderHook, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import {
  createVidpipeClient,
  useCancelVideoProcessing,
  useLectureSearch,
  useQueueEvents,
  useTranscript,
  useStartVideoProcessing,
  useVideoProcessingQueues,
  useVideoProcessingStatus,
  vidpipeKeys,
  VidpipeApiError,
  VidpipeProvider,
} from "../src";
import { EventStream, FakeApi, json, QUEUE, status, timeline } from "./fake";

const STATUS = `/api/video-processing/status/${QUEUE}`;
const STREAM = `${STATUS}/stream`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let queryClient: QueryClient;

function setup(api: FakeApi, token: () => string | Promise<string> = async () => "tok-1") {
  queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const client = createVidpipeClient({ baseUrl: "http://vidpipe.test/", token, fetch: api.fetch });
  const wrapper = ({ children }: { children: ReactNode }) => (
    <QueryClientProvider client={queryClient}>
      <VidpipeProvider client={client}>{children}</VidpipeProvider>
    </QueryClientProvider>
  );
  return { wrapper, client };
}

afterEach(() => {
  cleanup();
  queryClient?.clear();
});

describe("useVideoProcessingStatus", () => {
  it("polls at refetchInterval when streams are refused, and stops at a terminal status", async () => {
    let version = 0;
    let finished = false;
    const api = new FakeApi()
      .on("GET", STREAM, () => json(429, { error: "too many live streams" }))
      .on("GET", STATUS, () => {
        version += 1;
        return json(200, finished ? status(version, "completed", 100) : status(version, "processing", 10 * version));
      });
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useVideoProcessingStatus(QUEUE, { refetchInterval: 20 }), { wrapper });

    await waitFor(() => expect(result.current.transport).toBe("polling"));
    await waitFor(() => expect(api.callsTo("GET", STATUS).length).toBeGreaterThanOrEqual(3));
    expect(result.current.data?.status).toBe("processing");
    finished = true;
    await waitFor(() => expect(result.current.data?.status).toBe("completed"));
    const polls = api.callsTo("GET", STATUS).length;
    await sleep(150);
    expect(api.callsTo("GET", STATUS).length).toBe(polls);
    expect(result.current.transport).toBe("idle");
    expect(result.current.data?.progress_percentage).toBe(100);
    expect(api.callsTo("GET", STREAM).length).toBe(1);
  });

  it("writes each server-sent event into the cache in order and does not poll while streaming", async () => {
    const stream = new EventStream();
    let answer: (response: Response) => void = () => undefined;
    const slowFirstAnswer = new Promise<Response>((resolve) => (answer = resolve));
    const api = new FakeApi()
      .on("GET", STREAM, () => stream.response)
      .on("GET", STATUS, () => slowFirstAnswer)
      .on("GET", `${STATUS}/events`, () => json(200, { queue_id: QUEUE, events: [] }));
    const { wrapper } = setup(api);
    const seen: number[] = [];
    const { result } = renderHook(
      () => {
        const live = useVideoProcessingStatus(QUEUE, { refetchInterval: 20 });
        const events = useQueueEvents(QUEUE);
        if (live.data && seen.at(-1) !== live.data.version) seen.push(live.data.version);
        return { live, events };
      },
      { wrapper },
    );
    await waitFor(() => expect(result.current.events.isSuccess).toBe(true));
    await waitFor(() => expect(api.callsTo("GET", STREAM).length).toBe(1));
    expect(result.current.live.transport).toBe("stream");

    await act(async () => {
      stream.send("timeline", 1, timeline(1, "QueueCreated"));
      stream.send("status", 1, status(1, "processing", 10));
    });
    await waitFor(() => expect(result.current.live.data?.progress_percentage).toBe(10));
    await act(async () => {
      stream.send("timeline", 2, timeline(2, "StepStarted", "compress"));
      stream.send("timeline", 3, timeline(3, "StepCompleted", "compress"));
      stream.send("status", 3, status(3, "processing", 40));
    });
    await waitFor(() => expect(result.current.live.data?.progress_percentage).toBe(40));
    await waitFor(() => expect(result.current.events.data?.events.map((event) => event.position)).toEqual([1, 2, 3]));
    // the first GET, sent before the stream's events, answers late with version 0: it must not undo them
    await act(async () => answer(json(200, status(0, "pending"))));
    await sleep(50);
    expect(result.current.live.data?.version).toBe(3);
    await act(async () => stream.send("status", 4, status(4, "completed", 100)));
    await waitFor(() => expect(result.current.live.data?.status).toBe("completed"));
    expect(seen).toEqual([1, 3, 4]);
    expect(api.callsTo("GET", STATUS).length).toBe(1);
    expect(api.callsTo("GET", STREAM)[0]?.headers.get("authorization")).toBe("Bearer tok-1");
    expect(api.callsTo("GET", STREAM)[0]?.headers.get("last-event-id")).toBeNull();
    expect(result.current.live.transport).toBe("idle");
  });

  it("reopens a dropped stream with Last-Event-ID and carries on from there", async () => {
    const first = new EventStream();
    const second = new EventStream();
    const streams = [first, second];
    const api = new FakeApi()
      .on("GET", STREAM, () => streams.shift()?.response ?? json(500, { error: "fake: a third stream" }))
      .on("GET", STATUS, () => json(200, status(0, "pending")));
    const { wrapper } = setup(api);
    const { result } = renderHook(
      () => useVideoProcessingStatus(QUEUE, { refetchInterval: false, streamRetryDelayMs: 10 }),
      { wrapper },
    );
    await waitFor(() => expect(api.callsTo("GET", STREAM).length).toBe(1));
    await act(async () => {
      first.send("timeline", 1, timeline(1, "QueueCreated"));
      first.send("timeline", 2, timeline(2, "StepStarted", "validate"));
      first.send("status", 2, status(2, "processing", 5));
      await sleep(20);
      first.cut();
    });
    await waitFor(() => expect(api.callsTo("GET", STREAM).length).toBe(2));
    expect(api.callsTo("GET", STREAM)[1]?.headers.get("last-event-id")).toBe("2");
    expect(result.current.data?.progress_percentage).toBe(5);
    await act(async () => {
      second.send("timeline", 3, timeline(3, "QueueCompleted"));
      second.send("status", 3, status(3, "completed", 100));
    });
    await waitFor(() => expect(result.current.data?.status).toBe("completed"));
    expect(queryClient.getQueryData<{ events: { position: number }[] }>(vidpipeKeys.events(QUEUE))?.events.map((e) => e.position)).toEqual([1, 2, 3]);
    await sleep(50);
    expect(api.callsTo("GET", STREAM).length).toBe(2);
  });

  it("keeps a newer status than a late stream event carries", async () => {
    const stream = new EventStream();
    const api = new FakeApi()
      .on("GET", STREAM, () => stream.response)
      .on("GET", STATUS, () => json(200, status(5, "processing", 50)));
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useVideoProcessingStatus(QUEUE, { refetchInterval: false }), { wrapper });
    await waitFor(() => expect(result.current.data?.version).toBe(5));
    await act(async () => stream.send("status", 4, status(4, "processing", 40)));
    await sleep(50);
    expect(result.current.data?.progress_percentage).toBe(50);
    await act(async () => stream.send("status", 6, status(6, "processing", 60)));
    await waitFor(() => expect(result.current.data?.progress_percentage).toBe(60));
  });

  it("falls back to polling when the stream cannot be reached again and again", async () => {
    let polls = 0;
    const api = new FakeApi()
      .on("GET", STREAM, () => Promise.reject(new TypeError("Failed to fetch")))
      .on("GET", STATUS, () => json(200, status(++polls, "processing", polls)));
    const { wrapper } = setup(api);
    const { result } = renderHook(
      () => useVideoProcessingStatus(QUEUE, { refetchInterval: 20, streamRetryDelayMs: 5 }),
      { wrapper },
    );
    expect(result.current.transport).toBe("stream");
    await waitFor(() => expect(result.current.transport).toBe("polling"));
    expect(api.callsTo("GET", STREAM).length).toBe(4); // the first attempt and three reopenings
    await waitFor(() => expect(polls).toBeGreaterThanOrEqual(3));
  });

  it("ends at 204 and fetches the final status once", async () => {
    const answers = [status(5, "processing", 90), status(6, "completed", 100)];
    const api = new FakeApi()
      .on("GET", STREAM, () => new Response(null, { status: 204 }))
      .on("GET", STATUS, () => json(200, answers.shift() ?? status(6, "completed", 100)));
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useVideoProcessingStatus(QUEUE, { refetchInterval: 20 }), { wrapper });
    await waitFor(() => expect(result.current.data?.status).toBe("completed"));
    await sleep(100);
    expect(api.callsTo("GET", STATUS).length).toBe(2);
    expect(api.callsTo("GET", STREAM).length).toBe(1);
  });

  it("surfaces the API's error message", async () => {
    const api = new FakeApi()
      .on("GET", STREAM, () => json(404, { error: "no queue x" }))
      .on("GET", STATUS, () => json(404, { error: "no queue 3f6c1a52" }));
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useVideoProcessingStatus(QUEUE), { wrapper });
    await waitFor(() => expect(result.current.isError).toBe(true));
    expect(result.current.error).toBeInstanceOf(VidpipeApiError);
    expect(result.current.error?.status).toBe(404);
    expect(result.current.error?.message).toBe("no queue 3f6c1a52");
  });
});

describe("useCancelVideoProcessing", () => {
  it("cancels, then refetches the status so the page shows cancelled", async () => {
    let cancelled = false;
    const api = new FakeApi()
      .on("GET", STATUS, () => json(200, cancelled ? status(4, "cancelled", 40) : status(3, "processing", 40)))
      .on("DELETE", STATUS, () => {
        cancelled = true;
        return json(200, { queue_id: QUEUE, status: "cancelled" });
      });
    const { wrapper } = setup(api);
    const { result } = renderHook(
      () => ({ live: useVideoProcessingStatus(QUEUE, { stream: false, refetchInterval: false }), cancel: useCancelVideoProcessing() }),
      { wrapper },
    );
    await waitFor(() => expect(result.current.live.data?.status).toBe("processing"));
    let confirmed = false;
    act(() => result.current.cancel.mutate(QUEUE, { onSuccess: () => { confirmed = true; } }));
    await waitFor(() => expect(result.current.live.data?.status).toBe("cancelled"));
    expect(confirmed).toBe(true);
    expect(api.callsTo("DELETE", STATUS)[0]?.headers.get("authorization")).toBe("Bearer tok-1");
    expect(api.callsTo("GET", STATUS).length).toBe(2);
  });

  it("reports 409 for a finished queue with the API's words", async () => {
    const api = new FakeApi().on("DELETE", STATUS, () => json(409, { error: "queue is completed; nothing to cancel" }));
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useCancelVideoProcessing(), { wrapper });
    act(() => result.current.mutate(QUEUE));
    await waitFor(() => expect(result.current.isError).toBe(true));
    expect(result.current.error?.status).toBe(409);
    expect(result.current.error?.message).toBe("queue is completed; nothing to cancel");
  });
});

describe("useStartVideoProcessing", () => {
  it("starts from an attachment id as the seed does, with the token from an async source", async () => {
    const api = new FakeApi().on("POST", "/api/video-processing/upload", () =>
      json(202, { queue_id: QUEUE, status: "pending", attachment_id: "att-1", reused: false }),
    );
    let calls = 0;
    const { wrapper } = setup(api, async () => `tok-${++calls}`);
    const { result } = renderHook(() => useStartVideoProcessing(), { wrapper });
    let queueId: string | undefined;
    act(() => result.current.mutate("att-1", { onSuccess: (data) => { queueId = data.queue_id; } }));
    await waitFor(() => expect(queueId).toBe(QUEUE));
    const [call] = api.callsTo("POST", "/api/video-processing/upload");
    expect(call?.body).toEqual({ attachment_id: "att-1" });
    expect(call?.headers.get("authorization")).toBe("Bearer tok-1");
  });

  it("sends a File as multipart with its name and the Idempotency-Key", async () => {
    const api = new FakeApi().on("POST", "/api/video-processing/upload", () =>
      json(202, { queue_id: QUEUE, status: "pending", attachment_id: "att-2", reused: false }),
    );
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useStartVideoProcessing(), { wrapper });
    const file = new File([new Uint8Array([1, 2, 3, 4])], "lecture.mp4", { type: "video/mp4" });
    act(() => result.current.mutate({ file, idempotencyKey: "key-1" }));
    await waitFor(() => expect(result.current.data?.queue_id).toBe(QUEUE));
    const [call] = api.callsTo("POST", "/api/video-processing/upload");
    const sent = (call?.body as FormData).get("file") as File;
    expect(sent.name).toBe("lecture.mp4");
    expect(new Uint8Array(await sent.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(call?.headers.get("idempotency-key")).toBe("key-1");
  });

  it("refuses an empty attachment id without a request", async () => {
    const api = new FakeApi();
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useStartVideoProcessing(), { wrapper });
    act(() => result.current.mutate(""));
    await waitFor(() => expect(result.current.isError).toBe(true));
    expect(result.current.error?.message).toMatch(/empty attachment id/);
    expect(api.calls).toEqual([]);
  });
});

describe("useVideoProcessingQueues", () => {
  it("lists the caller's queues with the filters as query parameters", async () => {
    const api = new FakeApi().on("GET", "/api/video-processing/queue", () =>
      json(200, { items: [status(2, "processing", 30)], limit: 5, offset: 0, has_more: false }),
    );
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useVideoProcessingQueues({ status: "processing", limit: 5 }), { wrapper });
    await waitFor(() => expect(result.current.data?.items.length).toBe(1));
    const params = new URLSearchParams(api.calls[0]?.search);
    expect(params.get("status")).toBe("processing");
    expect(params.get("limit")).toBe("5");
  });
});

describe("useTranscript and useLectureSearch", () => {
  it("reads a transcript as JSON by default and as text in another format", async () => {
    const api = new FakeApi().on("GET", `${STATUS}/transcript`, (request) =>
      new URL(request.url).searchParams.get("format") === "vtt"
        ? new Response("WEBVTT\n\n00:00.000 --> 00:02.000\nask not", { headers: { "content-type": "text/vtt" } })
        : json(200, { segments: [{ start: 0, end: 2, text: "ask not" }] }),
    );
    const { wrapper } = setup(api);
    const { result } = renderHook(
      () => ({ json: useTranscript(QUEUE), vtt: useTranscript(QUEUE, { format: "vtt" }) }),
      { wrapper },
    );
    await waitFor(() => expect(result.current.vtt.data).toBe("WEBVTT\n\n00:00.000 --> 00:02.000\nask not"));
    await waitFor(() => expect(result.current.json.data).toEqual({ segments: [{ start: 0, end: 2, text: "ask not" }] }));
  });

  it("with live, reads the transcript so far until it is complete, then stops", async () => {
    const answers = [
      { complete: false, segments: [{ start: 0, end: 2, text: "ask not" }] },
      { complete: false, segments: [{ start: 0, end: 2, text: "ask not" }, { start: 2, end: 4, text: "what your" }] },
      { complete: true, segments: [{ start: 0, end: 2, text: "ask not" }, { start: 2, end: 4, text: "what your" },
                                   { start: 4, end: 6, text: "country can do" }] },
    ];
    let read = 0;
    const api = new FakeApi().on("GET", `${STATUS}/transcript`, () => json(200, answers[Math.min(read++, 2)]));
    const { wrapper } = setup(api);
    const { result } = renderHook(() => useTranscript(QUEUE, { live: true, liveIntervalMs: 20 }), { wrapper });
    await waitFor(() => expect((result.current.data as { complete?: boolean } | undefined)?.complete).toBe(true));
    expect((result.current.data as { segments: unknown[] }).segments).toHaveLength(3);
    const calls = api.callsTo("GET", `${STATUS}/transcript`);
    expect(calls).toHaveLength(3);
    expect(calls.every((call) => new URLSearchParams(call.search).get("partial") === "true")).toBe(true);
    await sleep(100);
    expect(api.callsTo("GET", `${STATUS}/transcript`)).toHaveLength(3); // complete: no more reads
  });

  it("asks nothing for a blank question and passes the filters for a real one", async () => {
    const api = new FakeApi().on("GET", "/api/search", () =>
      json(200, { query: "country", mode: "keyword", notice: null, moments: [] }),
    );
    const { wrapper } = setup(api);
    const { result, rerender } = renderHook(({ q }) => useLectureSearch(q, { limit: 3, queueId: QUEUE, mode: "keyword" }), {
      wrapper,
      initialProps: { q: "   " },
    });
    await sleep(30);
    expect(api.calls).toEqual([]);
    expect(result.current.fetchStatus).toBe("idle");
    rerender({ q: " country " });
    await waitFor(() => expect(result.current.data?.mode).toBe("keyword"));
    const params = new URLSearchParams(api.calls[0]?.search);
    expect([params.get("q"), params.get("limit"), params.get("queue_id"), params.get("mode")]).toEqual([
      "country",
      "3",
      QUEUE,
      "keyword",
    ]);
  });
});
