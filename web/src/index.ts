export {
  createVidpipeClient,
  isTerminal,
  VidpipeApiError,
  type Cancellation,
  type MediaLinks,
  type ProcessingStatus,
  type QueueAccepted,
  type QueuePage,
  type QueueStatus,
  type SearchAnswer,
  type SearchMoment,
  type StepStatus,
  type Timeline,
  type TimelineEvent,
  type TokenSource,
  type VidpipeClient,
  type VidpipeConfig,
} from "./client";
export {
  useCancelVideoProcessing,
  useLectureSearch,
  useQueueEvents,
  useStartVideoProcessing,
  useTranscript,
  useVideoProcessingQueues,
  useVideoProcessingStatus,
  type QueuesParams,
  type SearchParams,
  type StatusOptions,
  type StatusTransport,
  type TranscriptFormat,
} from "./hooks";
export { vidpipeKeys } from "./keys";
export { useVidpipeClient, VidpipeProvider, type VidpipeProviderProps } from "./provider";
export { parseEventStream, type ServerSentEvent } from "./sse";
export { followQueueStream, type FollowOptions, type StreamOutcome } from "./stream";
export { startVideoProcessing, type StartInput, type StartOptions, type UploadProgress } from "./upload";
export type { components, paths } from "./schema";
export { STEP_LABELS, VideoProcessingProgress, type VideoProcessingProgressProps } from "./VideoProcessingProgress";
