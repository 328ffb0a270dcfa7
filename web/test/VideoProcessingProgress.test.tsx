import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, cleanup, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import { createVidpipeClient, VideoProcessingProgress, VidpipeProvider, type QueueStatus } from "../src";
import { EventStream, FakeApi, json, QUEUE, status } from "./fake";

const STATUS = `/api/video-processing/status/${QUEUE}`;
const STREAM = `${STATUS}/stream`;

let queryClient: QueryClient;
afterEach(() => {
  cleanup();
  queryClient?.clear();
});

function mount(api: FakeApi, ui: ReactNode) {
  queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const client = createVidpipeClient({ baseUrl: "http://vidpipe.test", token: () => "tok", fetch: api.fetch });
  return render(
    <QueryClientProvider client={queryClient}>
      <VidpipeProvider client={client}>{ui}</VidpipeProvider>
    </QueryClientProvider>,
  );
}

function running(version: number): QueueStatus {
  const row = status(version, "processing", 45, { filename: "lecture.mp4", current_step: "transcribe" });
  row.steps = row.steps.map((step) =>
    step.step === "compress" || step.step === "audio-convert"
      ? { ...step, status: "completed", progress: 100, attempts: 1 }
      : step.step === "transcribe"
        ? { ...step, status: "retrying", progress: 30, attempts: 2, retries: 1, last_error: "whisper server answered 503" }
        : step,
  );
  return row;
}

describe("VideoProcessingProgress", () => {
  it("shows every step with a labelled bar, retries with their reason, and announces changes politely", async () => {
    const stream = new EventStream();
    const api = new FakeApi().on("GET", STREAM, () => stream.response).on("GET", STATUS, () => json(200, running(6)));
    mount(api, <VideoProcessingProgress queueId={QUEUE} />);

    expect(await screen.findByRole("heading", { name: "Processing lecture.mp4" })).toBeTruthy();
    const region = screen.getByRole("region", { name: "Processing lecture.mp4" });
    expect((within(region).getByRole("progressbar", { name: "Overall progress" }) as HTMLProgressElement).value).toBe(45);
    expect((screen.getByRole("progressbar", { name: "Compress video progress" }) as HTMLProgressElement).value).toBe(100);
    expect((screen.getByRole("progressbar", { name: "Transcribe progress" }) as HTMLProgressElement).value).toBe(30);
    const steps = within(screen.getByRole("list", { name: "Steps" })).getAllByRole("listitem");
    expect(steps.map((item) => item.querySelector(".vidpipe-step-name")?.textContent)).toEqual([
      "Compress video",
      "Extract audio",
      "Transcribe",
      "Embeddings",
    ]);
    expect(steps[2]?.getAttribute("aria-current")).toBe("step");
    expect(steps[2]?.textContent).toContain("1 retry — retrying after: whisper server answered 503");

    const live = screen.getByRole("status");
    expect(live.getAttribute("aria-live")).toBe("polite");
    const next = running(7);
    next.steps = next.steps.map((step) => (step.step === "transcribe" ? { ...step, status: "running", progress: 60 } : step));
    await act(async () => stream.send("status", 7, next));
    await waitFor(() => expect(live.textContent).toBe("Transcribe: running"));
    expect((screen.getByRole("progressbar", { name: "Transcribe progress" }) as HTMLProgressElement).value).toBe(60);
  });

  it("says why a queue failed in an alert and offers no cancel", async () => {
    const failed = status(9, "failed", 50, { error: "transcribe failed after 3 retries: whisper server answered 503" });
    const api = new FakeApi().on("GET", STREAM, () => new Response(null, { status: 204 })).on("GET", STATUS, () => json(200, failed));
    mount(api, <VideoProcessingProgress queueId={QUEUE} />);
    expect((await screen.findByRole("alert")).textContent).toBe(
      "Failed: transcribe failed after 3 retries: whisper server answered 503",
    );
    expect(screen.queryByRole("button")).toBeNull();
  });

  it("cancels from the keyboard and reports the end once", async () => {
    let cancelled = false;
    const api = new FakeApi()
      .on("GET", STREAM, () => json(429, { error: "too many live streams" }))
      .on("GET", STATUS, () => json(200, cancelled ? status(8, "cancelled", 45) : running(6)))
      .on("DELETE", STATUS, () => {
        cancelled = true;
        return json(200, { queue_id: QUEUE, status: "cancelled" });
      });
    const finished: string[] = [];
    mount(api, <VideoProcessingProgress queueId={QUEUE} refetchInterval={false} onFinished={(s) => finished.push(s.status)} />);
    const button = await screen.findByRole("button", { name: "Cancel processing" });
    const user = userEvent.setup();
    await user.tab();
    expect(document.activeElement).toBe(button);
    await user.keyboard("{Enter}");
    await waitFor(() => expect(screen.queryByRole("button")).toBeNull());
    expect(api.callsTo("DELETE", STATUS).length).toBe(1);
    expect(screen.getByRole("region").getAttribute("data-status")).toBe("cancelled");
    await waitFor(() => expect(finished).toEqual(["cancelled"]));
  });

  it("shows why a cancel was refused", async () => {
    const api = new FakeApi()
      .on("GET", STREAM, () => json(429, { error: "too many live streams" }))
      .on("GET", STATUS, () => json(200, running(6)))
      .on("DELETE", STATUS, () => json(409, { error: "queue already completed" }));
    mount(api, <VideoProcessingProgress queueId={QUEUE} refetchInterval={false} />);
    await userEvent.setup().click(await screen.findByRole("button", { name: "Cancel processing" }));
    expect((await screen.findByRole("alert")).textContent).toBe("Could not cancel: queue already completed");
  });
});
