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
} from "./client.js";
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
} from "./hooks.js";
export { vidpipeKeys } from "./keys.js";
export { useVidpipeClient, VidpipeProvider, type VidpipeProviderProps } from "./provider.js";
export { parseEventStream, type ServerSentEvent } from "./sse.js";
export { followQueueStream, type FollowOptions, type StreamOutcome } from "./stream.js";
export { startVideoProcessing, type StartInput, type StartOptions, type UploadProgress } from "./upload.js";
export type { components, paths } from "./schema.js";
export { STEP_LABELS, VideoProcessingProgress, type VideoProcessingProgressProps } from "./VideoProcessingProgress.js";
export { VideoUpload, type VideoUploadProps } from "./VideoUpload.js";
