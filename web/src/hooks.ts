/**
 * The seed frontend's hooks, with its names and call shapes, on TanStack Query v5:
 * `useStartVideoProcessing`, `useVideoProcessingStatus`, `useCancelVideoProcessing`,
 * `useVideoProcessingQueues`, plus `useQueueEvents`, `useTranscript`, `useLectureSearch`.
 */
import {
  useMutation,
  useQuery,
  useQueryClient,
  type QueryClient,
  type UseMutationResult,
  type UseQueryResult,
} from "@tanstack/react-query";
import { useEffect, useState } from "react";

import {
  isTerminal,
  unwrap,
  type Cancellation,
  type ProcessingStatus,
  type QueueAccepted,
  type QueuePage,
  type QueueStatus,
  type SearchAnswer,
  type Timeline,
  type TimelineEvent,
  type VidpipeApiError,
} from "./client.js";
import { vidpipeKeys } from "./keys.js";
import { useVidpipeClient } from "./provider.js";
import { followQueueStream } from "./stream.js";
import { startVideoProcessing, type StartInput, type UploadProgress } from "./upload.js";

/** `mutate(attachmentId | File, { onSuccess: (data) => data.queue_id })`; `uploadProgress` while a file goes up. */
export function useStartVideoProcessing(): UseMutationResult<QueueAccepted, VidpipeApiError, StartInput> & {
  uploadProgress: UploadProgress | null;
} {
  const client = useVidpipeClient();
  const queryClient = useQueryClient();
  const [uploadProgress, setUploadProgress] = useState<UploadProgress | null>(null);
  const mutation = useMutation<QueueAccepted, VidpipeApiError, StartInput>({
    mutationFn: (input) => {
      setUploadProgress(null);
      return startVideoProcessing(client, input, { onUploadProgress: setUploadProgress });
    },
    onSuccess: () => queryClient.invalidateQueries({ queryKey: vidpipeKeys.queues() }),
  });
  return { ...mutation, uploadProgress };
}

export interface StatusOptions {
  /** Polling period (ms) when streams are unavailable; the seed's option, unchanged. Default 2000. */
  refetchInterval?: number | false;
  /** Follow the server-sent events (default true); false polls only. */
  stream?: boolean;
  enabled?: boolean;
  /** Pause before reopening a dropped stream (ms, default 1000). */
  streamRetryDelayMs?: number;
}

/** How the status is being kept fresh now. */
export type StatusTransport = "stream" | "polling" | "idle";

/**
 * The queue's status view, kept live: by its server-sent events (each written into
 * the query cache, and each timeline event into `useQueueEvents`' cache) or, where
 * streams are unavailable, by polling every `refetchInterval`; neither once the
 * status is completed, failed or cancelled.
 */
export function useVideoProcessingStatus(
  queueId: string | null | undefined,
  options: StatusOptions = {},
): UseQueryResult<QueueStatus, VidpipeApiError> & { transport: StatusTransport } {
  const { refetchInterval = 2000, stream = true, enabled = true, streamRetryDelayMs } = options;
  const client = useVidpipeClient();
  const queryClient = useQueryClient();
  const active = Boolean(queueId) && enabled;
  const [streamState, setStreamState] = useState<{ queueId: string; state: "open" | "ended" | "unavailable" } | null>(
    null,
  );
  const streamDone = streamState !== null && streamState.queueId === queueId && streamState.state !== "open";
  const streaming = active && stream && !streamDone;

  useEffect(() => {
    if (!queueId || !active || !stream) {
      return;
    }
    const controller = new AbortController();
    setStreamState({ queueId, state: "open" });
    void followQueueStream(client, queueId, {
      signal: controller.signal,
      retryDelayMs: streamRetryDelayMs,
      lastEventId: undefined,
      onStatus: (status) => writeStatus(queryClient, status),
      onTimeline: (event) => appendEvent(queryClient, queueId, event),
    }).then((outcome) => {
      if (outcome === "aborted") {
        return;
      }
      setStreamState({ queueId, state: outcome });
      if (outcome === "ended") {
        // a 204 carries no status: make sure the cache holds the final one
        const cached = queryClient.getQueryData<QueueStatus>(vidpipeKeys.status(queueId));
        if (!isTerminal(cached?.status)) {
          void queryClient.invalidateQueries({ queryKey: vidpipeKeys.status(queueId) });
        }
      }
    });
    return () => controller.abort();
  }, [client, queryClient, queueId, active, stream, streamRetryDelayMs]);

  const query = useQuery<QueueStatus, VidpipeApiError>({
    queryKey: vidpipeKeys.status(queueId ?? ""),
    enabled: active,
    queryFn: async ({ signal }) => {
      const fresh = unwrap(
        await client.api.GET("/api/video-processing/status/{queueId}", {
          params: { path: { queueId: queueId ?? "" } },
          signal,
        }),
      );
      // an answer that left before the stream's latest event must not undo it
      const cached = queryClient.getQueryData<QueueStatus>(vidpipeKeys.status(fresh.queue_id));
      return cached && cached.version > fresh.version ? cached : fresh;
    },
    refetchInterval: (q) => (isTerminal(q.state.data?.status) || streaming ? false : refetchInterval),
  });
  const transport: StatusTransport = !active || isTerminal(query.data?.status) ? "idle" : streaming ? "stream" : "polling";
  return { ...query, transport };
}

/** A status replaces the cached one unless the cached one is newer (a late poll never undoes the stream). */
function writeStatus(queryClient: QueryClient, status: QueueStatus): void {
  queryClient.setQueryData<QueueStatus>(vidpipeKeys.status(status.queue_id), (previous) =>
    previous && previous.version > status.version ? previous : status,
  );
}

function appendEvent(queryClient: QueryClient, queueId: string, event: TimelineEvent): void {
  queryClient.setQueryData<Timeline>(vidpipeKeys.events(queueId), (previous) => {
    const events = previous?.events ?? [];
    if (events.some((known) => known.position === event.position)) {
      return previous;
    }
    return { queue_id: queueId, events: [...events, event].sort((a, b) => a.position - b.position) };
  });
}

/** `mutate(queueId, { onSuccess })`: cancels, then refetches that queue's status and the queue list. */
export function useCancelVideoProcessing(): UseMutationResult<Cancellation, VidpipeApiError, string> {
  const client = useVidpipeClient();
  const queryClient = useQueryClient();
  return useMutation<Cancellation, VidpipeApiError, string>({
    mutationFn: async (queueId) =>
      unwrap(
        await client.api.DELETE("/api/video-processing/status/{queueId}", {
          params: { path: { queueId } },
        }),
      ),
    onSuccess: async (_data, queueId) => {
      await Promise.all([
        queryClient.invalidateQueries({ queryKey: vidpipeKeys.status(queueId) }),
        queryClient.invalidateQueries({ queryKey: vidpipeKeys.queues() }),
      ]);
    },
  });
}

export interface QueuesParams {
  status?: ProcessingStatus;
  limit?: number;
  offset?: number;
}

/** The caller's queues, newest first. */
export function useVideoProcessingQueues(
  params: QueuesParams = {},
  options: { refetchInterval?: number | false; enabled?: boolean } = {},
): UseQueryResult<QueuePage, VidpipeApiError> {
  const client = useVidpipeClient();
  return useQuery<QueuePage, VidpipeApiError>({
    queryKey: vidpipeKeys.queues(params),
    enabled: options.enabled ?? true,
    refetchInterval: options.refetchInterval ?? false,
    queryFn: async ({ signal }) =>
      unwrap(await client.api.GET("/api/video-processing/queue", { params: { query: params }, signal })),
  });
}

/** The queue's audit trail; `useVideoProcessingStatus`' stream appends to it as events happen. */
export function useQueueEvents(
  queueId: string | null | undefined,
  options: { enabled?: boolean } = {},
): UseQueryResult<Timeline, VidpipeApiError> {
  const client = useVidpipeClient();
  return useQuery<Timeline, VidpipeApiError>({
    queryKey: vidpipeKeys.events(queueId ?? ""),
    enabled: Boolean(queueId) && (options.enabled ?? true),
    queryFn: async ({ signal }) =>
      unwrap(
        await client.api.GET("/api/video-processing/status/{queueId}/events", {
          params: { path: { queueId: queueId ?? "" } },
          signal,
        }),
      ),
  });
}

export type TranscriptFormat = "json" | "srt" | "vtt" | "txt";

/**
 * The transcript: parsed JSON for `json` (the default), the file's text for `srt`, `vtt`, `txt`.
 *
 * `live: true` (JSON only) asks for the transcript as it grows (`?partial=true`): while the transcribe step
 * runs, the segments heard so far with `complete: false`, read again every `liveIntervalMs` (3 s) until the
 * answer says `complete: true` (the final transcript); before the step starts it is a 404 error.
 */
export function useTranscript(
  queueId: string | null | undefined,
  options: { format?: TranscriptFormat; enabled?: boolean; live?: boolean; liveIntervalMs?: number } = {},
): UseQueryResult<unknown, VidpipeApiError> {
  const { format = "json", enabled = true, liveIntervalMs = 3000 } = options;
  const live = Boolean(options.live) && format === "json";
  const client = useVidpipeClient();
  const key = vidpipeKeys.transcript(queueId ?? "", format);
  return useQuery<unknown, VidpipeApiError>({
    queryKey: live ? [...key, "live"] : key,
    enabled: Boolean(queueId) && enabled,
    refetchInterval: live
      ? (query) => ((query.state.data as { complete?: boolean } | undefined)?.complete === true ? false : liveIntervalMs)
      : false,
    queryFn: async ({ signal }) => {
      const request = {
        params: { path: { queueId: queueId ?? "" }, query: live ? { format, partial: true } : { format } },
        signal,
      };
      return format === "json"
        ? unwrap(await client.api.GET("/api/video-processing/status/{queueId}/transcript", request))
        : unwrap(
            await client.api.GET("/api/video-processing/status/{queueId}/transcript", { ...request, parseAs: "text" }),
          );
    },
  });
}

export interface SearchParams {
  limit?: number;
  queueId?: string;
  mode?: "hybrid" | "keyword" | "semantic";
}

/** The moments of the caller's completed lectures that answer `q`, best first; idle while `q` is blank. */
export function useLectureSearch(
  q: string,
  params: SearchParams = {},
  options: { enabled?: boolean } = {},
): UseQueryResult<SearchAnswer, VidpipeApiError> {
  const client = useVidpipeClient();
  const question = q.trim();
  return useQuery<SearchAnswer, VidpipeApiError>({
    queryKey: vidpipeKeys.search({ q: question, ...params }),
    enabled: question.length > 0 && (options.enabled ?? true),
    queryFn: async ({ signal }) =>
      // openapi-fetch's response type widens the `[start, end]` tuples of `highlights` to number[]
      unwrap(
        await client.api.GET("/api/search", {
          params: { query: { q: question, limit: params.limit, queue_id: params.queueId, mode: params.mode } },
          signal,
        }),
      ) as SearchAnswer,
  });
}
