/**
 * The seed frontend's usage example, unchanged (the six lines between the markers),
 * inside the components a page would hold them in, against the fake API.
 */
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { ReactNode } from "react";
import { afterEach, expect, it } from "vitest";

import {
  useCancelVideoProcessing,
  useStartVideoProcessing,
  useVideoProcessingStatus,
  VidpipeProvider,
} from "../src";
import { FakeApi, json, QUEUE, status } from "./fake";

afterEach(cleanup);

function Upload({ attachmentId }: { attachmentId: string }) {
  // --- seed, unchanged
  const { mutate: startProcessing } = useStartVideoProcessing();
  // ---
  return (
    <button
      type="button"
      onClick={() => {
        // --- seed, unchanged
        startProcessing(attachmentId, { onSuccess: (data) => console.log(data.queue_id) });
        // ---
      }}
    >
      Process
    </button>
  );
}

function Progress({ queueId }: { queueId: string }) {
  // --- seed, unchanged
  const { data: status } = useVideoProcessingStatus(queueId, { refetchInterval: 2000 });
  const { mutate: cancelProcessing } = useCancelVideoProcessing();
  // ---
  if (!status) return <p>loading</p>;
  return (
    <div>
      <p>
        {status.progress_percentage}% {status.current_step} {status.status}
      </p>
      <button type="button" onClick={() => cancelProcessing(queueId, { onSuccess: () => {} })}>
        Cancel
      </button>
    </div>
  );
}

/** The page: the upload button until the seed's callback has logged the queue id, then the progress. */
function Page({ queueId }: { queueId: string | null }) {
  return queueId ? <Progress queueId={queueId} /> : <Upload attachmentId="att-1" />;
}

it("runs the seed's usage example unchanged: start, follow, cancel", async () => {
  let cancelled = false;
  const api = new FakeApi()
    .on("POST", "/api/video-processing/upload", () => json(202, { queue_id: QUEUE, status: "pending", attachment_id: "att-1", reused: false }))
    .on("GET", `/api/video-processing/status/${QUEUE}/stream`, () => json(429, { error: "too many live streams" }))
    .on("GET", `/api/video-processing/status/${QUEUE}`, () =>
      json(200, cancelled ? status(5, "cancelled", 40) : status(4, "processing", 40)),
    )
    .on("DELETE", `/api/video-processing/status/${QUEUE}`, () => {
      cancelled = true;
      return json(200, { queue_id: QUEUE, status: "cancelled" });
    });
  const log = console.log;
  const logged: unknown[] = [];
  console.log = (...args: unknown[]) => void logged.push(...args);
  try {
    const queryClient = new QueryClient();
    const app = (page: ReactNode) => (
      <QueryClientProvider client={queryClient}>
        <VidpipeProvider baseUrl="http://vidpipe.test" token={() => "tok"} fetch={api.fetch}>
          {page}
        </VidpipeProvider>
      </QueryClientProvider>
    );
    const { rerender } = render(app(<Page queueId={null} />));
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Process" }));
    await waitFor(() => expect(logged).toEqual([QUEUE]));
    rerender(app(<Page queueId={logged[0] as string} />));
    expect((await screen.findByText(/40%/)).textContent).toBe("40% compress processing");
    await user.click(screen.getByRole("button", { name: "Cancel" }));
    await waitFor(() => expect(screen.getByText(/40%/).textContent).toBe("40%  cancelled"));
    expect(api.callsTo("POST", "/api/video-processing/upload")[0]?.body).toEqual({ attachment_id: "att-1" });
  } finally {
    console.log = log;
  }
});
