/**
 * `VideoProcessingProgress`: a queue's live progress with cancellation, as the
 * seed's upload dialog shows it: the overall bar, each step with its progress,
 * its retries and the reason of the last one, the failure reason, and a cancel
 * button. Unstyled by default (class names only, `vidpipe-*`); import
 * `@vidpipe/react/styles.css` for a small default look.
 *
 * Accessibility: every `<progress>` has a label, the cancel button is a real
 * button (keyboard: Tab, Enter/Space), status changes are announced through one
 * polite live region and errors through `role="alert"`.
 */
import { useEffect, useId, useRef, useState } from "react";

import { isTerminal, type QueueStatus, type StepStatus } from "./client.js";
import { useCancelVideoProcessing, useVideoProcessingStatus } from "./hooks.js";

/** The step names vidpipe runs, as a person reads them; an unknown step shows its own name. */
export const STEP_LABELS: Record<string, string> = {
  compress: "Compress video",
  "audio-convert": "Extract audio",
  transcribe: "Transcribe",
  embed: "Embeddings",
};

export interface VideoProcessingProgressProps {
  queueId: string;
  /** Polling period (ms) where streams are unavailable; as `useVideoProcessingStatus`. */
  refetchInterval?: number | false;
  /** Hide the cancel button (default shown while the queue can still be cancelled). */
  cancellable?: boolean;
  /** Called once when the queue reaches completed, failed or cancelled. */
  onFinished?: (status: QueueStatus) => void;
  /** Extra class on the root element. */
  className?: string;
  /** Step labels over the defaults (STEP_LABELS). */
  labels?: Record<string, string>;
}

export function VideoProcessingProgress({
  queueId,
  refetchInterval = 2000,
  cancellable = true,
  onFinished,
  className,
  labels,
}: VideoProcessingProgressProps) {
  const id = useId();
  const { data: status, error } = useVideoProcessingStatus(queueId, { refetchInterval });
  const cancel = useCancelVideoProcessing();
  const announcement = useAnnouncement(status, { ...STEP_LABELS, ...labels });
  const finished = useRef<string | null>(null);
  useEffect(() => {
    if (status && isTerminal(status.status) && finished.current !== status.queue_id) {
      finished.current = status.queue_id;
      onFinished?.(status);
    }
  }, [status, onFinished]);

  const name = (step: string) => labels?.[step] ?? STEP_LABELS[step] ?? step;
  const percent = Math.round(status?.progress_percentage ?? 0);
  const titleId = `${id}-title`;
  return (
    <section
      className={["vidpipe-progress", className].filter(Boolean).join(" ")}
      aria-labelledby={titleId}
      data-status={status?.status ?? "loading"}
    >
      <h3 id={titleId} className="vidpipe-progress-title">
        {status?.filename ? `Processing ${status.filename}` : "Processing video"}
      </h3>
      <p className="vidpipe-progress-summary">
        <span className="vidpipe-badge" data-status={status?.status ?? "loading"}>
          {status ? status.status : "loading"}
        </span>{" "}
        {status?.current_step && !isTerminal(status.status) ? <span>{name(status.current_step)}</span> : null}
      </p>
      <div className="vidpipe-meter">
        <progress id={`${id}-overall`} max={100} value={percent} aria-label="Overall progress" />
        <span className="vidpipe-percent" aria-hidden="true">
          {percent}%
        </span>
      </div>
      {status ? (
        <ol className="vidpipe-steps" aria-label="Steps">
          {[...status.steps]
            .sort((a, b) => a.position - b.position)
            .map((step) => (
              <Step key={step.step} step={step} label={name(step.step)} current={status.current_step === step.step} />
            ))}
        </ol>
      ) : null}
      {status?.status === "failed" ? (
        <p role="alert" className="vidpipe-error">
          Failed{status.error ? `: ${status.error}` : ""}
        </p>
      ) : null}
      {error ? (
        <p role="alert" className="vidpipe-error">
          {error.message}
        </p>
      ) : null}
      {cancel.error ? (
        <p role="alert" className="vidpipe-error">
          Could not cancel: {cancel.error.message}
        </p>
      ) : null}
      {cancellable && status && !isTerminal(status.status) ? (
        <button
          type="button"
          className="vidpipe-cancel"
          onClick={() => cancel.mutate(queueId)}
          disabled={cancel.isPending}
          aria-describedby={titleId}
        >
          {cancel.isPending ? "Cancelling…" : "Cancel processing"}
        </button>
      ) : null}
      <p className="vidpipe-sr-only" role="status" aria-live="polite" aria-atomic="true">
        {announcement}
      </p>
    </section>
  );
}

function Step({ step, label, current }: { step: StepStatus; label: string; current: boolean }) {
  const id = useId();
  const progress = Math.round(step.progress);
  return (
    <li className="vidpipe-step" data-status={step.status} aria-current={current ? "step" : undefined}>
      <div className="vidpipe-step-head">
        <span className="vidpipe-step-name" id={`${id}-name`}>
          {label}
        </span>{" "}
        <span className="vidpipe-badge" data-status={step.status}>
          {step.status}
        </span>
      </div>
      <div className="vidpipe-meter">
        <progress max={100} value={progress} aria-label={`${label} progress`} />
        <span className="vidpipe-percent" aria-hidden="true">
          {progress}%
        </span>
      </div>
      {step.retries > 0 ? (
        <p className="vidpipe-step-retries">
          {step.retries === 1 ? "1 retry" : `${step.retries} retries`}
          {step.last_error ? ` — ${step.status === "retrying" ? "retrying after" : "last error"}: ${step.last_error}` : ""}
        </p>
      ) : step.last_error ? (
        <p className="vidpipe-step-retries">Last error: {step.last_error}</p>
      ) : null}
    </li>
  );
}

const QUEUE_NEWS: Record<QueueStatus["status"], (status: QueueStatus) => string> = {
  pending: () => "Waiting to start",
  processing: () => "Processing started",
  completed: () => "Processing completed",
  failed: (status) => (status.error ? `Processing failed: ${status.error}` : "Processing failed"),
  cancelled: () => "Processing cancelled",
};

/** One sentence for the live region whenever the queue or one of its steps changes state. */
function useAnnouncement(status: QueueStatus | undefined, labels: Record<string, string>): string {
  const [text, setText] = useState("");
  const seen = useRef(new Map<string, string>());
  useEffect(() => {
    if (!status) {
      return;
    }
    const news: string[] = [];
    const before = seen.current;
    for (const step of status.steps) {
      const key = `${step.status}/${step.retries}`;
      if (before.has(step.step) && before.get(step.step) !== key) {
        const label = labels[step.step] ?? step.step;
        news.push(
          step.status === "retrying"
            ? `${label}: retry ${step.retries} scheduled${step.last_error ? ` — ${step.last_error}` : ""}`
            : `${label}: ${step.status}`,
        );
      }
      before.set(step.step, key);
    }
    const queueKey = `queue:${status.queue_id}`;
    if (before.get(queueKey) !== status.status) {
      if (before.has(queueKey) || isTerminal(status.status)) {
        news.push(QUEUE_NEWS[status.status](status));
      }
      before.set(queueKey, status.status);
    }
    if (news.length > 0) {
      setText(news.join(". "));
    }
    // labels is rebuilt on each render; its content is what matters
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [status]);
  return text;
}
