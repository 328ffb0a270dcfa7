/**
 * A File through XMLHttpRequest (the only browser API that reports upload progress),
 * with a stand-in XMLHttpRequest that records what is sent and plays the events back.
 */
import { afterEach, describe, expect, it, vi } from "vitest";

import { createVidpipeClient, startVideoProcessing, VidpipeApiError, type UploadProgress } from "../src";
import { QUEUE } from "./fake";

class FakeXhr {
  static last: FakeXhr | undefined;
  static answer: { status: number; body: string } = { status: 202, body: "{}" };
  method = "";
  url = "";
  headers: Record<string, string> = {};
  body: unknown;
  status = 0;
  responseText = "";
  responseType = "";
  upload: { onprogress: ((event: { loaded: number; total: number; lengthComputable: boolean }) => void) | null } = {
    onprogress: null,
  };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;

  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name] = value;
  }
  abort() {
    this.onabort?.();
  }
  send(body: unknown) {
    FakeXhr.last = this;
    this.body = body;
    queueMicrotask(() => {
      this.upload.onprogress?.({ loaded: 2, total: 4, lengthComputable: true });
      this.upload.onprogress?.({ loaded: 4, total: 4, lengthComputable: true });
      this.status = FakeXhr.answer.status;
      this.responseText = FakeXhr.answer.body;
      this.onload?.();
    });
  }
}

afterEach(() => {
  vi.unstubAllGlobals();
  FakeXhr.last = undefined;
});

describe("startVideoProcessing with a File", () => {
  it("uploads through XMLHttpRequest with the token and reports the progress", async () => {
    vi.stubGlobal("XMLHttpRequest", FakeXhr);
    FakeXhr.answer = { status: 202, body: JSON.stringify({ queue_id: QUEUE, status: "pending", attachment_id: "a", reused: false }) };
    const client = createVidpipeClient({ baseUrl: "http://vidpipe.test", token: async () => "tok-9" });
    const progress: UploadProgress[] = [];
    const file = new File([new Uint8Array([1, 2, 3, 4])], "jfk.mp4", { type: "video/mp4" });
    const accepted = await startVideoProcessing(client, file, { onUploadProgress: (p) => progress.push(p), idempotencyKey: "k1" });
    expect(accepted.queue_id).toBe(QUEUE);
    expect(progress).toEqual([{ loaded: 2, total: 4 }, { loaded: 4, total: 4 }]);
    const sent = FakeXhr.last!;
    expect([sent.method, sent.url]).toEqual(["POST", "http://vidpipe.test/api/video-processing/upload"]);
    expect(sent.headers).toEqual({ Authorization: "Bearer tok-9", "Idempotency-Key": "k1" });
    expect(((sent.body as FormData).get("file") as File).name).toBe("jfk.mp4");
  });

  it("rejects with the API's message, e.g. 415 for what is not a video", async () => {
    vi.stubGlobal("XMLHttpRequest", FakeXhr);
    FakeXhr.answer = { status: 415, body: JSON.stringify({ error: "notes.txt is not a video" }) };
    const client = createVidpipeClient({ baseUrl: "http://vidpipe.test" });
    const error = await startVideoProcessing(client, new File(["x"], "notes.txt")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VidpipeApiError);
    expect((error as VidpipeApiError).status).toBe(415);
    expect((error as VidpipeApiError).message).toBe("notes.txt is not a video");
    expect(FakeXhr.last?.headers).toEqual({});
  });
});
