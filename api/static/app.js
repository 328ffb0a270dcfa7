// vidpipe progress page: plain JavaScript over the public API (no build step).
//
// Sign in with a bearer token (kept in sessionStorage), upload with
// XMLHttpRequest (upload progress), follow a queue's server-sent events with
// fetch() + a stream reader (EventSource cannot send an Authorization
// header), cancel, read the transcript, list one's own queues.
"use strict";

(function () {
  const API = "/api/video-processing";
  const TOKEN_KEY = "vidpipe.token";
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const STEP_LABELS = {
    compress: "Compress video",
    "audio-convert": "Extract audio",
    transcribe: "Transcribe",
    embed: "Embeddings",
  };
  const PAGE_SIZE = 10;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: "",
    queueId: null,
    stream: null, // AbortController of the open stream
    lastEventId: 0,
    lastStatus: null,
    announced: new Map(), // step -> status last announced
    listOffset: 0,
    listItems: [],
  };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ------------------------------------------------------------ helpers
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function setMessage(id, text, bad) {
    const node = $(id);
    node.textContent = text || "";
    node.classList.toggle("bad", Boolean(bad));
  }

  function authHeaders(extra) {
    return Object.assign({ Authorization: "Bearer " + state.token }, extra || {});
  }

  async function errorOf(response) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch (_) {
      /* not JSON */
    }
    return new ApiError(response.status, message);
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = authHeaders(opts.headers);
    let response;
    try {
      response = await fetch(path, opts);
    } catch (error) {
      throw new ApiError(0, "the server cannot be reached (" + error.message + ")");
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (error.status === 401) sessionExpired(error.message);
      throw error;
    }
    return response;
  }

  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    } catch (_) {
      return null;
    }
  }

  function percent(value) {
    return Math.max(0, Math.min(100, Math.round(value || 0)));
  }

  function setProgress(bar, label, value) {
    const p = percent(value);
    bar.value = p;
    bar.setAttribute("aria-valuetext", p + "%");
    if (label) label.textContent = p + "%";
  }

  function clock(seconds) {
    const s = Math.max(0, Number(seconds) || 0);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = (s % 60).toFixed(3).padStart(6, "0");
    const mm = String(m).padStart(2, "0");
    return (h ? h + ":" : "") + mm + ":" + rest;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString();
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  // ------------------------------------------------------------ sign in
  function showSignedIn(signedIn) {
    for (const id of ["upload", "queues"]) $(id).hidden = !signedIn;
    $("signout-button").hidden = !signedIn;
    $("signin-fields").hidden = signedIn;
    $("signin-button").hidden = signedIn;
    $("signin-title").textContent = signedIn ? "Signed in" : "Sign in";
    if (!signedIn) {
      $("current").hidden = true;
      $("transcript").hidden = true;
      $("who").textContent = "";
    }
  }

  function sessionExpired(message) {
    stopStream();
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn(false);
    setMessage("signin-message", "Sign in again: " + message, true);
    $("token").focus();
  }

  async function signIn(token) {
    token = (token || "").trim().replace(/^Bearer\s+/i, "");
    if (!token) {
      setMessage("signin-message", "Enter a token first.", true);
      $("token").focus();
      return false;
    }
    const claims = claimsOf(token);
    if (!claims) {
      setMessage("signin-message", "That is not a JWT (three dot-separated parts).", true);
      return false;
    }
    state.token = token;
    setMessage("signin-message", "Signing in…");
    try {
      await api(API + "/queue?limit=1");
    } catch (error) {
      state.token = "";
      if (error.status !== 401) setMessage("signin-message", "Sign-in refused: " + error.message, true);
      return false;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = token;
    showSignedIn(true);
    $("who").textContent = "Signed in as " + (claims.sub || "?");
    setMessage("signin-message", "Signed in as " + (claims.sub || "?") + ".");
    state.listOffset = 0;
    await loadQueues();
    return true;
  }

  function signOut() {
    stopStream();
    state.token = "";
    state.queueId = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn(false);
    setMessage("signin-message", "Signed out.");
    $("token").focus();
  }

  // ------------------------------------------------------------ upload
  function upload(file) {
    const bar = $("upload-progress");
    const label = $("upload-percent");
    const button = $("upload-button");
    setProgress(bar, label, 0);
    button.disabled = true;
    setMessage("upload-message", "Uploading " + file.name + "…");
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API + "/upload");
    xhr.setRequestHeader("Authorization", "Bearer " + state.token);
    xhr.responseType = "json";
    let lastAnnounced = -25;
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const p = (event.loaded / event.total) * 100;
      setProgress(bar, label, p);
      if (p - lastAnnounced >= 25) {
        lastAnnounced = p;
        setMessage("upload-message", "Uploading " + file.name + ": " + percent(p) + "%");
      }
    });
    xhr.addEventListener("load", () => {
      button.disabled = false;
      const body = xhr.response || {};
      if (xhr.status === 202) {
        setProgress(bar, label, 100);
        const note = body.reused ? " (the same video was uploaded before: showing that queue)" : "";
        setMessage("upload-message", "Uploaded " + file.name + "; processing has started" + note + ".");
        follow(body.queue_id, file.name);
        loadQueues();
      } else if (xhr.status === 401) {
        sessionExpired(body.error || "the token was refused");
      } else {
        setMessage("upload-message", "Upload refused (" + xhr.status + "): " + (body.error || xhr.statusText), true);
      }
    });
    xhr.addEventListener("error", () => {
      button.disabled = false;
      setMessage("upload-message", "The upload failed: the server cannot be reached.", true);
    });
    xhr.addEventListener("abort", () => {
      button.disabled = false;
      setMessage("upload-message", "The upload was interrupted.", true);
    });
    xhr.send(form);
  }

  // ------------------------------------------------------------ live status
  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
  }

  function resetCurrent(queueId, name) {
    stopStream();
    state.queueId = queueId;
    state.lastEventId = 0;
    state.lastStatus = null;
    state.announced = new Map();
    $("current").hidden = false;
    $("transcript").hidden = true;
    $("cues").replaceChildren();
    $("activity").replaceChildren();
    $("steps").replaceChildren();
    $("current-id").textContent = queueId;
    $("current-file").textContent = name || "—";
    $("queue-error").hidden = true;
    $("cancel-button").disabled = false;
    $("transcript-button").disabled = true;
    setBadge($("current-status"), "pending");
    setProgress($("overall-progress"), $("overall-percent"), 0);
    setMessage("status-message", "Waiting for the first update…");
    markCurrentInList();
  }

  function follow(queueId, name) {
    resetCurrent(queueId, name);
    readStream(queueId, 0);
  }

  // Parse server-sent events from a text buffer; returns the unparsed rest.
  function parseEvents(buffer, onEvent) {
    const boundary = /\r\n\r\n|\n\n|\r\r/g;
    let start = 0;
    let match;
    while ((match = boundary.exec(buffer)) !== null) {
      const block = buffer.slice(start, match.index);
      start = match.index + match[0].length;
      const event = { event: "message", data: [], id: null };
      for (const line of block.split(/\r\n|\r|\n/)) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event.event = value;
        else if (field === "data") event.data.push(value);
        else if (field === "id") event.id = value;
      }
      if (event.data.length) onEvent(event.event, event.data.join("\n"), event.id);
    }
    return buffer.slice(start);
  }

  async function readStream(queueId, attempt) {
    const controller = new AbortController();
    state.stream = controller;
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (state.lastEventId) headers["Last-Event-ID"] = String(state.lastEventId);
    let response;
    try {
      response = await fetch(API + "/status/" + encodeURIComponent(queueId) + "/stream", {
        headers,
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (error) {
      if (controller.signal.aborted) return;
      return reconnect(queueId, attempt, "the connection failed");
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (error.status === 401) return sessionExpired(error.message);
      if (error.status === 404 || error.status === 403) {
        setMessage("status-message", "Cannot follow this queue: " + error.message, true);
        return;
      }
      return reconnect(queueId, attempt, error.message);
    }
    if (response.status === 204 || !response.body) {
      // the queue has ended and we have its last event: nothing more will come
      state.stream = null;
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseEvents(buffer + value, (event, data, id) => {
          if (state.queueId !== queueId) return;
          if (id) state.lastEventId = Number(id) || state.lastEventId;
          const payload = JSON.parse(data);
          if (event === "status") renderStatus(payload);
          else if (event === "timeline") addActivity(payload);
        });
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (state.queueId !== queueId || controller.signal.aborted) return;
    if (state.lastStatus && TERMINAL.has(state.lastStatus.status)) {
      state.stream = null;
      return;
    }
    reconnect(queueId, attempt, "the stream ended early");
  }

  function reconnect(queueId, attempt, why) {
    const delay = Math.min(10000, 500 * 2 ** Math.min(attempt, 5));
    setMessage("status-message", "Live updates paused (" + why + "); reconnecting…");
    setTimeout(() => {
      if (state.queueId === queueId) readStream(queueId, attempt + 1);
    }, delay);
  }

  function setBadge(node, status) {
    node.textContent = status;
    node.dataset.status = status;
  }

  function stepItem(step) {
    let item = $("steps").querySelector('[data-step="' + CSS.escape(step.step) + '"]');
    if (item) return item;
    const label = STEP_LABELS[step.step] || step.step;
    const barId = "step-progress-" + step.step;
    item = el("li", { className: "step", dataset: { step: step.step } },
      el("div", { className: "step-head" },
        el("span", { className: "step-name", id: "step-name-" + step.step, text: label }),
        el("span", { className: "badge step-status", dataset: { status: "pending" }, text: "pending" })),
      el("div", { className: "meter" },
        el("label", { for: barId, className: "sr-only", text: label + " progress" }),
        el("progress", { id: barId, max: "100", value: "0" }),
        el("span", { className: "percent", text: "0%" })),
      el("p", { className: "step-detail" }),
      el("p", { className: "step-error", hidden: true }));
    $("steps").append(item);
    return item;
  }

  function stepDetail(step) {
    const parts = [];
    if (step.attempts) parts.push("attempt " + step.attempts);
    const retries = step.retries || 0;
    parts.push(retries + (retries === 1 ? " retry" : " retries"));
    if (step.provider) parts.push(step.provider);
    if (step.model) parts.push(step.model);
    if (step.duration_seconds !== null && step.duration_seconds !== undefined) {
      parts.push(Number(step.duration_seconds).toFixed(1) + " s");
    }
    return parts.join(" · ");
  }

  function renderStep(step) {
    const item = stepItem(step);
    setBadge(item.querySelector(".step-status"), step.status);
    item.dataset.status = step.status;
    setProgress(item.querySelector("progress"), item.querySelector(".percent"), step.progress);
    item.querySelector(".step-detail").textContent = stepDetail(step);
    const error = item.querySelector(".step-error");
    error.hidden = !step.last_error;
    error.textContent = step.last_error
      ? (step.status === "retrying" ? "Retrying after: " : "Last error: ") + step.last_error
      : "";
    const before = state.announced.get(step.step);
    const key = step.status + "/" + (step.retries || 0);
    state.announced.set(step.step, key);
    if (before !== key && before !== undefined) return announceStep(step);
    return null;
  }

  function announceStep(step) {
    const label = STEP_LABELS[step.step] || step.step;
    if (step.status === "retrying") {
      return label + ": retry " + step.retries + " scheduled" + (step.last_error ? " — " + step.last_error : "");
    }
    if (step.status === "failed") return label + " failed" + (step.last_error ? ": " + step.last_error : "");
    return label + ": " + step.status;
  }

  function renderStatus(row) {
    const first = state.lastStatus === null;
    state.lastStatus = row;
    setBadge($("current-status"), row.status);
    setProgress($("overall-progress"), $("overall-percent"), row.progress_percentage);
    const news = [];
    for (const step of row.steps || []) {
      const line = renderStep(step);
      if (line) news.push(line);
    }
    const failed = row.status === "failed" || row.status === "cancelled";
    const queueError = $("queue-error");
    queueError.hidden = !(failed && row.error);
    queueError.textContent = row.error ? (row.status === "cancelled" ? "Cancelled: " : "Failed: ") + row.error : "";
    const terminal = TERMINAL.has(row.status);
    $("cancel-button").disabled = terminal;
    const transcribe = (row.steps || []).find((s) => s.step === "transcribe");
    $("transcript-button").disabled = !(transcribe && transcribe.status === "completed");
    if (terminal) {
      const summary = {
        completed: "Processing completed. The transcript is ready.",
        failed: "Processing failed" + (row.error ? ": " + row.error : "."),
        cancelled: "Processing was cancelled.",
      }[row.status];
      setMessage("status-message", summary, row.status !== "completed");
      updateListItem(row);
      loadQueues();
    } else if (first) {
      const current = row.current_step ? STEP_LABELS[row.current_step] || row.current_step : null;
      setMessage("status-message", "Status: " + row.status + (current ? " — " + current : ""));
    } else if (news.length) {
      setMessage("status-message", news.join(". "));
    }
    updateListItem(row);
  }

  function addActivity(entry) {
    const parts = [entry.event];
    if (entry.step) parts.push(entry.step);
    if (entry.attempt) parts.push("attempt " + entry.attempt);
    const text = parts.join(" · ") + (entry.detail ? " — " + entry.detail : "");
    $("activity").append(
      el("li", { dataset: { event: entry.event } },
        el("time", { datetime: entry.timestamp, text: new Date(entry.timestamp).toLocaleTimeString() }),
        " " + text));
  }

  async function cancelCurrent() {
    const queueId = state.queueId;
    if (!queueId) return;
    const button = $("cancel-button");
    button.disabled = true;
    setMessage("status-message", "Cancelling…");
    try {
      await api(API + "/status/" + encodeURIComponent(queueId), { method: "DELETE" });
      setMessage("status-message", "Cancellation requested; waiting for the steps to stop…");
    } catch (error) {
      setMessage("status-message", "Cannot cancel: " + error.message, true);
      button.disabled = Boolean(state.lastStatus && TERMINAL.has(state.lastStatus.status));
    }
  }

  // ------------------------------------------------------------ transcript
  function transcriptUrl(format) {
    return API + "/status/" + encodeURIComponent(state.queueId) + "/transcript?format=" + format;
  }

  async function openTranscript() {
    const section = $("transcript");
    setMessage("status-message", "Loading the transcript…");
    let data;
    try {
      data = await (await api(transcriptUrl("json"))).json();
    } catch (error) {
      setMessage("status-message", "Cannot open the transcript: " + error.message, true);
      return;
    }
    const cues = (data.segments || []).map((s) =>
      el("li", { className: "cue" },
        el("time", { datetime: "PT" + Number(s.start).toFixed(3) + "S", text: clock(s.start) + " – " + clock(s.end) }),
        el("span", { className: "cue-text", text: s.text })));
    $("cues").replaceChildren(...cues);
    const meta = [plural(cues.length, "cue")];
    if (data.language) meta.push("language " + data.language);
    if (data.duration) meta.push(clock(data.duration) + " of audio");
    if (data.model) meta.push(data.model);
    $("transcript-meta").textContent = meta.join(" · ");
    section.hidden = false;
    setMessage("status-message", "Transcript opened: " + plural(cues.length, "cue") + ".");
    section.focus();
    section.scrollIntoView({ block: "start" });
  }

  async function download(format) {
    try {
      const blob = await (await api(transcriptUrl(format))).blob();
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: "transcript-" + state.queueId + "." + format });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      setMessage("status-message", "Cannot download the " + format + " transcript: " + error.message, true);
    }
  }

  // ------------------------------------------------------------ queue list
  async function loadQueues(more) {
    if (!state.token) return;
    if (!more) state.listOffset = 0;
    const filter = $("queue-filter").value;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.listOffset) });
    if (filter) params.set("status", filter);
    let page;
    try {
      page = await (await api(API + "/queue?" + params)).json();
    } catch (error) {
      setMessage("queues-message", "Cannot list your videos: " + error.message, true);
      return;
    }
    state.listItems = more ? state.listItems.concat(page.items) : page.items;
    state.listOffset += page.items.length;
    renderQueues();
    $("queues-more").hidden = !page.has_more;
    setMessage("queues-message", state.listItems.length ? "" : "No videos yet" + (filter ? " with status " + filter : "") + ".");
  }

  function renderQueues() {
    const items = state.listItems.map((row) => {
      const name = row.attachment_id || row.queue_id;
      return el("li", { dataset: { queue: row.queue_id }, className: row.queue_id === state.queueId ? "is-current" : "" },
        el("span", { className: "q-name", text: name }),
        el("span", { className: "q-when", text: when(row.created_at) }),
        el("span", { className: "badge q-status", dataset: { status: row.status }, text: row.status }),
        el("span", { className: "percent q-progress", text: percent(row.progress_percentage) + "%" }),
        el("button", {
          type: "button", className: "secondary", text: "Open",
          "aria-label": "Open " + name + " (" + row.status + ")",
          onclick: () => {
            follow(row.queue_id, name);
            $("current").scrollIntoView({ block: "start" });
            $("current-title").setAttribute("tabindex", "-1");
            $("current-title").focus();
          },
        }));
    });
    $("queue-list").replaceChildren(...items);
  }

  function updateListItem(row) {
    const index = state.listItems.findIndex((r) => r.queue_id === row.queue_id);
    if (index === -1) return;
    state.listItems[index] = row;
    const item = $("queue-list").querySelector('[data-queue="' + CSS.escape(row.queue_id) + '"]');
    if (!item) return;
    setBadge(item.querySelector(".q-status"), row.status);
    item.querySelector(".q-progress").textContent = percent(row.progress_percentage) + "%";
  }

  function markCurrentInList() {
    for (const item of $("queue-list").children) {
      item.classList.toggle("is-current", item.dataset.queue === state.queueId);
    }
  }

  // ------------------------------------------------------------ wiring
  function start() {
    const meta = document.querySelector('meta[name="vidpipe-dev-token"]');
    const saved = sessionStorage.getItem(TOKEN_KEY);
    $("token").value = saved || (meta ? meta.content : "");
    if (meta && !saved) {
      setMessage("signin-message", "Development token filled in: press Sign in.");
    }
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn($("token").value);
    });
    $("signout-button").addEventListener("click", signOut);
    $("upload-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const file = $("video-file").files[0];
      if (!file) {
        setMessage("upload-message", "Choose a video file first.", true);
        $("video-file").focus();
        return;
      }
      upload(file);
    });
    $("cancel-button").addEventListener("click", cancelCurrent);
    $("transcript-button").addEventListener("click", openTranscript);
    for (const button of document.querySelectorAll("[data-format]")) {
      button.addEventListener("click", () => download(button.dataset.format));
    }
    $("queues-refresh").addEventListener("click", () => loadQueues());
    $("queue-filter").addEventListener("change", () => loadQueues());
    $("queues-more").addEventListener("click", () => loadQueues(true));
    if (saved) signIn(saved);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
