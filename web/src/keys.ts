/** The TanStack Query keys of vidpipe's data, so that an app can read or invalidate them. */
export const vidpipeKeys = {
  all: ["vidpipe"] as const,
  status: (queueId: string) => ["vidpipe", "status", queueId] as const,
  events: (queueId: string) => ["vidpipe", "events", queueId] as const,
  queues: (params?: object) => (params ? (["vidpipe", "queues", params] as const) : (["vidpipe", "queues"] as const)),
  transcript: (queueId: string, format: string) => ["vidpipe", "transcript", queueId, format] as const,
  search: (params?: object) => (params ? (["vidpipe", "search", params] as const) : (["vidpipe", "search"] as const)),
};
