/**
 * `VideoUpload`: the seed's upload dialog in a component: choose a video (or an audio recording), upload
 * it with a progress bar, then follow it with `VideoProcessingProgress`. A
 * labelled file input, a real submit button (keyboard: Tab, Enter), the upload's
 * own `<progress>` with a name, the API's refusal (413, 415, …) in
 * `role="alert"`. Unstyled by default (`vidpipe-upload*` classes).
 */
import { useId, useRef, useState, type FormEvent } from "react";

import type { QueueAccepted, QueueStatus } from "./client.js";
import { useStartVideoProcessing } from "./hooks.js";
import { VideoProcessingProgress } from "./VideoProcessingProgress.js";

export interface VideoUploadProps {
  /** Called with the API's answer once a queue exists for the upload. */
  onQueued?: (accepted: QueueAccepted) => void;
  /** Called when the followed queue reaches completed, failed or cancelled. */
  onFinished?: (status: QueueStatus) => void;
  /** Follow the queue here after the upload (default true). */
  showProgress?: boolean;
  /** `accept` of the file input (default `video/*,audio/*`: the API takes audio recordings too). */
  accept?: string;
  /** Polling period (ms) where streams are unavailable. */
  refetchInterval?: number | false;
  title?: string;
  className?: string;
}

export function VideoUpload({
  onQueued,
  onFinished,
  showProgress = true,
  accept = "video/*,audio/*",
  refetchInterval = 2000,
  title = "Upload a lecture video",
  className,
}: VideoUploadProps) {
  const id = useId();
  const input = useRef<HTMLInputElement>(null);
  const [chosen, setChosen] = useState(false);
  const [queueId, setQueueId] = useState<string | null>(null);
  const { mutate: startProcessing, isPending, error, uploadProgress, reset } = useStartVideoProcessing();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const file = input.current?.files?.[0];
    if (!file) return;
    startProcessing(file, {
      onSuccess: (accepted) => {
        setQueueId(accepted.queue_id);
        onQueued?.(accepted);
        if (input.current) input.current.value = "";
        setChosen(false);
      },
    });
  };
  const percent =
    uploadProgress && uploadProgress.total > 0 ? Math.round((100 * uploadProgress.loaded) / uploadProgress.total) : 0;
  return (
    <div className={["vidpipe-upload", className].filter(Boolean).join(" ")}>
      <form className="vidpipe-upload-form" onSubmit={submit} aria-labelledby={`${id}-title`}>
        <h2 id={`${id}-title`} className="vidpipe-upload-title">
          {title}
        </h2>
        <label htmlFor={`${id}-file`}>Video file</label>
        <input
          id={`${id}-file`}
          ref={input}
          type="file"
          accept={accept}
          onChange={(event) => {
            setChosen(Boolean(event.target.files?.length));
            reset();
          }}
        />
        <button type="submit" disabled={!chosen || isPending}>
          {isPending ? "Uploading…" : "Upload"}
        </button>
        <progress max={100} value={percent} aria-label="Upload progress" />
        {error ? (
          <p role="alert" className="vidpipe-error">
            Upload refused: {error.message}
          </p>
        ) : null}
      </form>
      {showProgress && queueId ? (
        <VideoProcessingProgress key={queueId} queueId={queueId} refetchInterval={refetchInterval} onFinished={onFinished} />
      ) : null}
    </div>
  );
}
