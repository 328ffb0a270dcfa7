/**
 * Starting a queue: an attachment id as JSON (as the seed does), or a file as
 * multipart. A file goes through XMLHttpRequest when the page has one and no
 * fetch of the app's own was configured, because fetch cannot report upload
 * progress; otherwise through the configured fetch (no progress then).
 */
import { errorMessage, unwrap, VidpipeApiError, type QueueAccepted, type VidpipeClient } from "./client.js";

export interface UploadProgress {
  loaded: number;
  /** Bytes in all; 0 when the browser does not know. */
  total: number;
}

export interface StartOptions {
  /** Makes a retry safe: the same key with the same request answers with the first queue. */
  idempotencyKey?: string;
  onUploadProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
}

/** What `useStartVideoProcessing().mutate` takes: an attachment id, a file, or either with options. */
export type StartInput = string | Blob | ({ attachmentId: string } | { file: Blob }) & { idempotencyKey?: string };

export async function startVideoProcessing(
  client: VidpipeClient,
  input: StartInput,
  options: StartOptions = {},
): Promise<QueueAccepted> {
  const idempotencyKey = typeof input === "object" && "idempotencyKey" in input ? input.idempotencyKey : options.idempotencyKey;
  const params = { header: idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {} };
  const attachmentId = typeof input === "string" ? input : "attachmentId" in input ? input.attachmentId : undefined;
  if (attachmentId !== undefined) {
    if (!attachmentId) {
      throw new VidpipeApiError(0, "vidpipe: an empty attachment id cannot start processing");
    }
    return unwrap(
      await client.api.POST("/api/video-processing/upload", {
        params,
        body: { attachment_id: attachmentId },
        signal: options.signal,
      }),
    );
  }
  const file = input instanceof Blob ? input : (input as { file: Blob }).file;
  const form = new FormData();
  form.append("file", file, file instanceof File ? file.name : "upload");
  if (typeof XMLHttpRequest !== "undefined" && client.config.fetch === undefined) {
    return sendWithProgress(client, form, { ...options, idempotencyKey });
  }
  const response = await client.fetch(client.url("/api/video-processing/upload"), {
    method: "POST",
    body: form,
    headers: { ...(await client.authHeaders()), ...(idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {}) },
    signal: options.signal,
  });
  const body: unknown = await response.json().catch(() => undefined);
  if (!response.ok) {
    throw new VidpipeApiError(response.status, errorMessage(response.status, body), body);
  }
  return body as QueueAccepted;
}

async function sendWithProgress(client: VidpipeClient, form: FormData, options: StartOptions): Promise<QueueAccepted> {
  const headers = await client.authHeaders();
  return new Promise<QueueAccepted>((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", client.url("/api/video-processing/upload"));
    for (const [name, value] of Object.entries(headers)) {
      request.setRequestHeader(name, value);
    }
    if (options.idempotencyKey) {
      request.setRequestHeader("Idempotency-Key", options.idempotencyKey);
    }
    request.responseType = "text";
    request.upload.onprogress = (event) => {
      options.onUploadProgress?.({ loaded: event.loaded, total: event.lengthComputable ? event.total : 0 });
    };
    request.onload = () => {
      let body: unknown;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = undefined;
      }
      if (request.status >= 200 && request.status < 300 && body) {
        resolve(body as QueueAccepted);
      } else {
        reject(new VidpipeApiError(request.status, errorMessage(request.status, body), body));
      }
    };
    request.onerror = () => reject(new VidpipeApiError(0, "vidpipe: the upload could not reach the server"));
    request.onabort = () => reject(new DOMException("the upload was aborted", "AbortError"));
    options.signal?.addEventListener("abort", () => request.abort(), { once: true });
    request.send(form);
  });
}
