import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it } from "vitest";

import { createVidpipeClient, VideoUpload, VidpipeProvider, type QueueAccepted } from "../src";
import { FakeApi, json, QUEUE, status } from "./fake";

afterEach(cleanup);

function mount(api: FakeApi, onQueued?: (accepted: QueueAccepted) => void) {
  const client = createVidpipeClient({ baseUrl: "http://vidpipe.test", token: () => "tok", fetch: api.fetch });
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <VidpipeProvider client={client}>
        <VideoUpload onQueued={onQueued} refetchInterval={false} />
      </VidpipeProvider>
    </QueryClientProvider>,
  );
}

describe("VideoUpload", () => {
  it("uploads the chosen file from the keyboard and follows its queue", async () => {
    const api = new FakeApi()
      .on("POST", "/api/video-processing/upload", () =>
        json(202, { queue_id: QUEUE, status: "pending", attachment_id: "att-3", reused: false }),
      )
      .on("GET", `/api/video-processing/status/${QUEUE}/stream`, () => json(429, { error: "too many live streams" }))
      .on("GET", `/api/video-processing/status/${QUEUE}`, () =>
        json(200, status(2, "processing", 25, { filename: "lecture.mp4" })),
      );
    const queued: string[] = [];
    mount(api, (accepted) => queued.push(accepted.queue_id));
    const user = userEvent.setup();
    const button = screen.getByRole("button", { name: "Upload" }) as HTMLButtonElement;
    expect(button.disabled).toBe(true); // nothing chosen yet
    await user.upload(screen.getByLabelText("Video file"), new File([new Uint8Array(8)], "lecture.mp4", { type: "video/mp4" }));
    expect(button.disabled).toBe(false);
    button.focus();
    await user.keyboard("{Enter}");
    expect(await screen.findByRole("region", { name: "Processing lecture.mp4" })).toBeTruthy();
    expect(queued).toEqual([QUEUE]);
    const sent = api.callsTo("POST", "/api/video-processing/upload")[0]?.body as FormData;
    expect((sent.get("file") as File).name).toBe("lecture.mp4");
    expect(screen.getByRole("progressbar", { name: "Upload progress" })).toBeTruthy();
  });

  it("shows the API's refusal and starts nothing", async () => {
    const api = new FakeApi().on("POST", "/api/video-processing/upload", () =>
      json(415, { error: "notes.txt is not a video: no video stream found" }),
    );
    mount(api);
    const user = userEvent.setup();
    await user.upload(screen.getByLabelText("Video file"), new File(["hello"], "notes.txt", { type: "video/mp4" }));
    await user.click(screen.getByRole("button", { name: "Upload" }));
    expect((await screen.findByRole("alert")).textContent).toBe("Upload refused: notes.txt is not a video: no video stream found");
    await waitFor(() => expect(screen.queryByRole("region")).toBeNull());
  });
  it("takes an audio recording as well as a video", async () => {
    const api = new FakeApi()
      .on("POST", "/api/video-processing/upload", () =>
        json(202, { queue_id: QUEUE, status: "pending", attachment_id: "att-4", reused: false }),
      )
      .on("GET", `/api/video-processing/status/${QUEUE}/stream`, () => json(429, { error: "too many live streams" }))
      .on("GET", `/api/video-processing/status/${QUEUE}`, () =>
        json(200, status(1, "processing", 10, { filename: "talk.mp3" })),
      );
    const queued: string[] = [];
    mount(api, (accepted) => queued.push(accepted.queue_id));
    const user = userEvent.setup(); // applies the input's accept, as a browser's file picker does
    const button = screen.getByRole("button", { name: "Upload" }) as HTMLButtonElement;
    await user.upload(screen.getByLabelText("Video file"), new File([new Uint8Array(8)], "talk.mp3", { type: "audio/mpeg" }));
    expect(button.disabled).toBe(false);
    await user.click(button);
    expect(await screen.findByRole("region", { name: "Processing talk.mp3" })).toBeTruthy();
    expect(queued).toEqual([QUEUE]);
    expect(((api.callsTo("POST", "/api/video-processing/upload")[0]?.body as FormData).get("file") as File).name).toBe("talk.mp3");
  });
});
