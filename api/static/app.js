// vidpipe progress page: plain JavaScript over the public API (no build step).
//
// Sign in with a bearer token (kept in sessionStorage), upload with
// XMLHttpRequest (upload progress), follow a queue's server-sent events with
// fetch() + a stream reader (EventSource cannot send an Authorization
// header), cancel, read the transcript, list one's own queues, search every
// lecture for a moment and watch it: a <video> on signed media links (it
// cannot send the token either), captions from the VTT transcript, and a
// transcript panel that follows playback, seeks and finds words.
//
// Text from the server is only ever set with textContent; matched words are
// <mark> elements built here from character offsets, never parsed HTML.
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
  const SEARCH_DELAY_MS = 300; // debounce of search-as-you-type
  const SEARCH_LIMIT = 10;
  const RETRIEVERS = {
    keyword: "found by its words",
    semantic: "found by meaning",
    both: "found by words and meaning",
  };
  const FOLLOW_PAUSE_MS = 4000; // the transcript stops following while the tutor scrolls it
  const LIVE_POLL_MS = 3000; // how often the transcript so far is read while the transcribe step runs
  const LIVE_STATES = new Set(["running", "retrying"]);

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
    currentName: null,
    search: { timer: null, controller: null, query: "" },
    player: idlePlayer(),
    live: null, // {queueId, timer, busy, lastRead} while the transcript grows on the page
  };

  function idlePlayer() {
    return {
      queueId: null,
      name: "",
      segments: [], // transcript segments {start, end, text}
      lines: [], // their <li> elements
      now: -1, // index of the line being spoken
      followed: -1, // index of the line last brought into the panel's view (-1: bring the line being spoken)
      focus: 0, // index of the line that holds the tab stop
      refreshTimer: null,
      links: null,
      recovering: false,
      userScrolledAt: 0,
      opening: 0, // increments with each open, so a late answer for an older one is dropped
    };
  }

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

  // 75 -> "1:15", 3725 -> "1:02:05": how a player shows a time.
  function shortClock(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  }

  function duration(seconds) {
    return "PT" + Math.max(0, Number(seconds) || 0).toFixed(1) + "S";
  }

  // Spans of code points (what the API counts, as Python does) -> spans of UTF-16 units (what JS counts).
  function unitSpans(text, spans) {
    const offsets = [0];
    for (const ch of text) offsets.push(offsets[offsets.length - 1] + ch.length);
    const last = offsets.length - 1;
    const at = (i) => offsets[Math.max(0, Math.min(last, Math.floor(Number(i) || 0)))];
    return (spans || []).map((span) => [at(span[0]), at(span[1])]);
  }

  // The text as nodes, each span [start, end) (UTF-16 offsets) inside a <mark>.
  function markedNodes(text, spans) {
    const sorted = spans.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0] || y[1] - x[1]);
    const nodes = [];
    let done = 0;
    for (const [start, end] of sorted) {
      if (start < done) continue; // overlapping spans: the first wins
      if (start > done) nodes.push(document.createTextNode(text.slice(done, start)));
      nodes.push(el("mark", { text: text.slice(start, end) }));
      done = end;
    }
    if (done < text.length) nodes.push(document.createTextNode(text.slice(done)));
    return nodes;
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
    for (const id of ["upload", "search", "queues"]) $(id).hidden = !signedIn;
    $("signout-button").hidden = !signedIn;
    $("signin-fields").hidden = signedIn;
    $("signin-button").hidden = signedIn;
    $("signin-title").textContent = signedIn ? "Signed in" : "Sign in";
    if (!signedIn) {
      $("current").hidden = true;
      $("transcript").hidden = true;
      $("who").textContent = "";
      closePlayer();
      clearSearch();
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

  // Several files: one batch request (POST /api/batches); a broken file is refused alone.
  function uploadBatch(files) {
    const bar = $("upload-progress");
    const label = $("upload-percent");
    const button = $("upload-button");
    setProgress(bar, label, 0);
    button.disabled = true;
    setMessage("upload-message", "Uploading " + files.length + " videos…");
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/batches");
    xhr.setRequestHeader("Authorization", "Bearer " + state.token);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) setProgress(bar, label, (event.loaded / event.total) * 100);
    });
    xhr.addEventListener("load", () => {
      button.disabled = false;
      const body = xhr.response || {};
      if (xhr.status === 202) {
        setProgress(bar, label, 100);
        const refused = (body.files || []).filter((f) => f.error);
        const notes = refused.map((f) => (f.filename || "file " + (f.position + 1)) + ": " + f.error);
        setMessage("upload-message", body.accepted + " of " + files.length + " videos are being processed" +
          (notes.length ? "; refused: " + notes.join("; ") : "") + ".", notes.length > 0);
        const first = (body.files || []).find((f) => f.queue_id);
        if (first) follow(first.queue_id, first.filename);
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
    stopLiveTranscript();
    $("transcript").hidden = true;
    $("cues").replaceChildren();
    $("activity").replaceChildren();
    $("steps").replaceChildren();
    $("current-id").textContent = queueId;
    state.currentName = name || null;
    $("current-file").textContent = name || "—";
    $("queue-error").hidden = true;
    $("cancel-button").disabled = false;
    $("retry-button").hidden = true;
    $("transcript-button").disabled = true;
    $("watch-button").disabled = true;
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
    $("retry-button").hidden = !failed;  // a failed or cancelled queue runs again from its steps not completed
    $("retry-button").disabled = false;
    const transcribe = (row.steps || []).find((s) => s.step === "transcribe");
    $("transcript-button").disabled = !(transcribe && transcribe.status === "completed");
    followTranscript(row, transcribe);
    const compress = (row.steps || []).find((s) => s.step === "compress");
    // without a compress step (an audio recording, an already small video) the original upload plays
    $("watch-button").disabled = (compress ? compress.status !== "completed" : false) || row.status === "cancelled";
    if (row.filename && !state.currentName) {
      state.currentName = row.filename;
      $("current-file").textContent = row.filename;
    }
    if (row.media === "audio" && state.currentName) {
      $("current-file").textContent = state.currentName + " · audio recording";
    }
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

  // Run a failed or cancelled queue again (POST .../status/{id}/retry): its steps not completed
  // run again, the completed ones' results are kept; then follow it from the start of its trail.
  async function retryCurrent() {
    const queueId = state.queueId;
    if (!queueId) return;
    const button = $("retry-button");
    button.disabled = true;
    setMessage("status-message", "Retrying…");
    try {
      await api(API + "/status/" + encodeURIComponent(queueId) + "/retry", { method: "POST" });
      // the status view shows the earlier end until its projection applies the retry (milliseconds)
      for (let i = 0; i < 40; i += 1) {
        const row = await (await api(API + "/status/" + encodeURIComponent(queueId))).json();
        if (!TERMINAL.has(row.status)) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      follow(queueId, state.currentName);
      setMessage("status-message", "Retrying: the steps not completed run again…");
    } catch (error) {
      setMessage("status-message", "Cannot retry: " + error.message, true);
      button.disabled = false;
    }
  }

  // Delete the lecture and everything made from it (DELETE /api/lectures/{id}; cancels it first).
  async function deleteCurrent() {
    const queueId = state.queueId;
    if (!queueId) return;
    const name = state.currentName || queueId;
    if (!window.confirm("Delete " + name + " with its transcript and search moments? This cannot be undone.")) return;
    const button = $("delete-button");
    button.disabled = true;
    try {
      await api("/api/lectures/" + encodeURIComponent(queueId), { method: "DELETE" });
      stopStream();
      state.queueId = null;
      $("current").hidden = true;
      setMessage("upload-message", "Deleted " + name + ".");
      loadQueues();
    } catch (error) {
      setMessage("status-message", "Cannot delete: " + error.message, true);
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------ transcript
  function transcriptUrl(format) {
    return API + "/status/" + encodeURIComponent(state.queueId) + "/transcript?format=" + format;
  }

  function cueItem(s) {
    return el("li", { className: "cue" },
      el("time", { datetime: "PT" + Number(s.start).toFixed(3) + "S", text: clock(s.start) + " – " + clock(s.end) }),
      el("span", { className: "cue-text", text: s.text }));
  }

  // The whole transcript in the panel, with its facts, downloads offered.
  function showTranscript(data) {
    const cues = (data.segments || []).map(cueItem);
    $("cues").replaceChildren(...cues);
    const meta = [plural(cues.length, "cue")];
    if (data.language) meta.push("language " + data.language);
    if (data.duration) meta.push(clock(data.duration) + " of audio");
    if (data.model) meta.push(data.model);
    $("transcript-meta").textContent = meta.join(" · ");
    $("transcript").removeAttribute("aria-busy");
    $("transcript").querySelector(".downloads").hidden = false;
    $("transcript").hidden = false;
    return cues.length;
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
    stopLiveTranscript();
    const count = showTranscript(data);
    setMessage("status-message", "Transcript opened: " + plural(count, "cue") + ".");
    section.focus();
    section.scrollIntoView({ block: "start" });
  }

  // ------------------------------------------------------------ the transcript as it grows
  // While the followed queue's transcribe step runs, the transcript panel shows the segments heard so far
  // (GET .../transcript?partial=true, every LIVE_POLL_MS and on the stream's status news, one read at a
  // time), appending the new ones; once the step completes it shows the final transcript.
  function followTranscript(row, transcribe) {
    const queueId = row.queue_id;
    if (!transcribe || queueId !== state.queueId) return;
    const running = LIVE_STATES.has(transcribe.status) && !TERMINAL.has(row.status);
    const live = state.live && state.live.queueId === queueId ? state.live : null;
    if (running) {
      if (!live) startLiveTranscript(queueId);
      else if (Date.now() - live.lastRead > LIVE_POLL_MS / 2) readLiveTranscript(live);
    } else if (live) {
      stopLiveTranscript();
      if (transcribe.status === "completed") readLiveTranscript({ queueId, timer: null, busy: false, lastRead: 0 });
      else $("transcript-meta").textContent = "Transcription stopped (" + transcribe.status + ") after " +
        plural($("cues").children.length, "segment") + ".";
    }
  }

  function startLiveTranscript(queueId) {
    stopLiveTranscript();
    const live = { queueId, timer: null, busy: false, lastRead: 0 };
    state.live = live;
    $("cues").replaceChildren();
    $("transcript-meta").textContent = "Transcribing… the text appears here as it is heard.";
    $("transcript").querySelector(".downloads").hidden = true; // offered once the transcript is complete
    $("transcript").setAttribute("aria-busy", "true");
    $("transcript").hidden = false;
    readLiveTranscript(live);
  }

  function stopLiveTranscript() {
    if (state.live) clearTimeout(state.live.timer);
    state.live = null;
    $("transcript").removeAttribute("aria-busy");
  }

  async function readLiveTranscript(live) {
    if (live.busy) return;
    live.busy = true;
    live.lastRead = Date.now();
    clearTimeout(live.timer);
    let data = null;
    try {
      const path = API + "/status/" + encodeURIComponent(live.queueId) + "/transcript?format=json&partial=true";
      data = await (await api(path, { cache: "no-store" })).json();
    } catch (error) {
      if (error.status === 401) return; // api() signed the tutor out
      // 404: the step ended without a transcript (the status says why); else try again at the next poll
    } finally {
      live.busy = false;
    }
    if (state.queueId !== live.queueId) return;
    if (data && data.complete) {
      if (state.live === live) stopLiveTranscript();
      showTranscript(data);
      return;
    }
    if (state.live !== live) return;
    if (data) {
      const cues = $("cues");
      const segments = data.segments || [];
      if (segments.length < cues.children.length) cues.replaceChildren();
      cues.append(...segments.slice(cues.children.length).map(cueItem)); // the segments so far only grow
      if (segments.length) {
        $("transcript-meta").textContent = "Transcribing… " + plural(segments.length, "segment") + " so far, up to " +
          clock(segments[segments.length - 1].end) + " (updates every few seconds).";
      }
    }
    live.timer = setTimeout(() => readLiveTranscript(live), LIVE_POLL_MS);
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

  // ------------------------------------------------------------ search
  function clearSearch() {
    const search = state.search;
    clearTimeout(search.timer);
    if (search.controller) search.controller.abort();
    search.controller = null;
    search.query = "";
    $("search-results").replaceChildren();
    $("search-results").removeAttribute("aria-busy");
    $("search-notice").hidden = true;
    setMessage("search-message", "");
  }

  function scheduleSearch() {
    clearTimeout(state.search.timer);
    state.search.timer = setTimeout(runSearch, SEARCH_DELAY_MS);
  }

  async function runSearch(force) {
    const search = state.search;
    clearTimeout(search.timer);
    const query = $("search-q").value.trim();
    if (!query) return clearSearch();
    if (query === search.query && !force) return;
    if (search.controller) search.controller.abort();
    const controller = new AbortController();
    search.controller = controller;
    search.query = query;
    const results = $("search-results");
    results.setAttribute("aria-busy", "true");
    const params = new URLSearchParams({ q: query, limit: String(SEARCH_LIMIT) });
    let answer;
    try {
      answer = await (await api("/api/search?" + params, { signal: controller.signal })).json();
    } catch (error) {
      if (controller.signal.aborted) return;
      search.query = "";
      results.removeAttribute("aria-busy");
      setMessage("search-message", "Cannot search: " + error.message, true);
      return;
    }
    if (controller.signal.aborted) return;
    search.controller = null;
    renderAnswer(answer);
  }

  function renderAnswer(answer) {
    const moments = answer.moments || [];
    $("search-results").replaceChildren(...moments.map(hitItem));
    $("search-results").removeAttribute("aria-busy");
    // The notice (why the answer is not what was asked for) is shown once, and read out with the count.
    const notice = answer.notice ? answer.notice.charAt(0).toUpperCase() + answer.notice.slice(1) : "";
    $("search-notice").hidden = !notice;
    $("search-notice").textContent = notice;
    const found = moments.length
      ? plural(moments.length, "moment") + " found."
      : "No moment of your lectures answers “" + answer.query + "”.";
    const message = $("search-message");
    message.classList.remove("bad");
    message.replaceChildren(found, ...(notice ? [el("span", { className: "sr-only", text: " " + notice })] : []));
  }

  function hitItem(moment, index) {
    const name = moment.filename || moment.queue_id;
    const text = moment.text || "";
    return el("li", { className: "hit", dataset: { queue: moment.queue_id, start: String(moment.start_seconds) } },
      el("button", {
        type: "button", className: "hit-open",
        onclick: () => openPlayer(moment.queue_id, name, moment.start_seconds, { play: true }),
        onkeydown: (event) => moveAmongHits(event, index),
      },
      el("span", { className: "hit-head" },
        el("span", { className: "hit-file", text: name }),
        el("time", {
          className: "hit-time", datetime: duration(moment.start_seconds), text: shortClock(moment.start_seconds),
        })),
      el("span", { className: "hit-text" }, ...markedNodes(text, unitSpans(text, moment.highlights))),
      el("span", {
        className: "hit-by", dataset: { retriever: moment.retriever },
        text: RETRIEVERS[moment.retriever] || moment.retriever,
      })));
  }

  function moveAmongHits(event, index) {
    const buttons = $("search-results").querySelectorAll(".hit-open");
    let target = null;
    if (event.key === "ArrowDown") target = buttons[Math.min(buttons.length - 1, index + 1)];
    else if (event.key === "ArrowUp") target = index === 0 ? $("search-q") : buttons[index - 1];
    else return;
    event.preventDefault();
    target.focus();
  }

  function wireSearch() {
    const input = $("search-q");
    input.addEventListener("input", scheduleSearch);
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runSearch(true);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        input.value = "";
        clearSearch();
      } else if (event.key === "ArrowDown") {
        const first = $("search-results").querySelector(".hit-open");
        if (first) {
          event.preventDefault();
          first.focus();
        }
      }
    });
  }

  // ------------------------------------------------------------ player
  function mediaUrl(queueId) {
    return API + "/status/" + encodeURIComponent(queueId) + "/media";
  }

  async function fetchLinks(queueId) {
    return (await api(mediaUrl(queueId))).json();
  }

  // Ask for fresh links a while before these expire (a minute, or a fifth of a short lifetime).
  function scheduleRefresh(links) {
    const player = state.player;
    clearTimeout(player.refreshTimer);
    player.links = links;
    const lifetime = Date.parse(links.expires_at) - Date.now();
    if (!(lifetime > 0)) return;
    const margin = Math.min(60000, Math.max(2000, lifetime / 5));
    player.refreshTimer = setTimeout(() => refreshLinks(player.queueId), Math.max(1000, lifetime - margin));
  }

  async function refreshLinks(queueId) {
    let links;
    try {
      links = await fetchLinks(queueId);
    } catch (error) {
      if (state.player.queueId !== queueId) return;
      setMessage("player-message", "Cannot renew the video's link (" + error.message + "); trying again.", true);
      state.player.refreshTimer = setTimeout(() => refreshLinks(queueId), 15000);
      return;
    }
    if (state.player.queueId !== queueId) return;
    swapVideoSource(links.video_url);
    const track = $("captions");
    if (links.captions_url && track.readyState !== 2) track.src = links.captions_url; // not loaded yet: new link
    scheduleRefresh(links);
  }

  // A new link for the same video: carry on from the same place, playing if it was. (A video that
  // never loaded has no place to keep: whoever asked to open it seeks once it loads.)
  function swapVideoSource(url) {
    const video = $("video");
    if (video.readyState >= 1) {
      const at = video.currentTime;
      const wasPlaying = !video.paused && !video.ended;
      video.addEventListener("loadedmetadata", () => {
        video.currentTime = at;
        if (wasPlaying) video.play().catch(() => {});
      }, { once: true });
    }
    video.src = url;
  }

  // A fresh <track> per lecture, so no cue of the last one lingers.
  function setCaptions(url) {
    const old = $("captions");
    const track = el("track", { id: "captions", kind: "captions", srclang: "en", label: "Captions", default: true });
    if (url) track.src = url;
    old.replaceWith(track);
    return track;
  }

  function showCaptions() {
    const video = $("video");
    for (const track of video.textTracks) {
      if (track.kind === "captions") track.mode = "showing";
    }
  }

  // A moment starts where the caption before it ends. Chromium counts a cue as showing at its end time
  // too, and after a seek to exactly that time it keeps the old caption on screen beside the new one
  // until the new one ends; a millisecond later only the new one shows.
  function cueSafe(seconds) {
    return Math.max(0, Number(seconds) || 0) + 0.001;
  }

  function metadataReady(video) {
    if (video.readyState >= 1) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok) => {
        video.removeEventListener("loadedmetadata", loaded);
        video.removeEventListener("error", failed);
        resolve(ok);
      };
      const loaded = () => done(true);
      const failed = () => done(false);
      video.addEventListener("loadedmetadata", loaded);
      video.addEventListener("error", failed);
    });
  }

  // Open a lecture in the player at `at` seconds; `play` starts it, `focus` moves focus to the player.
  async function openPlayer(queueId, name, at, options) {
    const opts = options || {};
    const video = $("video");
    const section = $("player");
    section.hidden = false;
    let player = state.player;
    if (player.queueId !== queueId) {
      closePlayer(true);
      player = state.player;
      player.queueId = queueId;
      player.name = name;
      const opening = player.opening;
      $("player-file").textContent = name;
      setMessage("player-message", "Loading " + name + "…");
      let links;
      try {
        links = await fetchLinks(queueId);
      } catch (error) {
        if (state.player.opening !== opening) return;
        setMessage("player-message", "Cannot play " + name + ": " + error.message, true);
        player.queueId = null;
        return;
      }
      if (state.player.opening !== opening) return;
      const audio = links.media === "audio";
      section.classList.toggle("audio", audio);  // sound only: a caption strip instead of a 16:9 screen
      video.dataset.media = links.media || "video";
      $("player-file").textContent = audio ? name + " · audio recording" : name;
      setCaptions(links.captions_url);
      video.src = links.video_url;
      showCaptions();
      scheduleRefresh(links);
      loadLines(queueId);
    }
    if (opts.focus) $("player-title").focus();
    section.scrollIntoView({ block: "start" });
    const opening = player.opening;
    let ready = await metadataReady(video);
    if (!ready && state.player.opening === opening) ready = await metadataReady(video); // after recoverVideo's new link
    if (!ready || state.player.opening !== opening) return;
    video.currentTime = cueSafe(at);
    const from = " from " + shortClock(at);
    if (!opts.play) {
      setMessage("player-message", name + " is ready to play" + from + ".");
      return;
    }
    try {
      await video.play();
      setMessage("player-message", "Playing " + name + from + ".");
    } catch (error) {
      if (state.player.opening !== opening) return;
      setMessage("player-message", name + " is ready" + from + ": press play to start.");
    }
  }

  // Stop playback and forget the lecture; `keepOpen` leaves the section visible (another lecture follows).
  function closePlayer(keepOpen) {
    const player = state.player;
    clearTimeout(player.refreshTimer);
    const video = $("video");
    video.pause();
    if (video.hasAttribute("src")) {
      video.removeAttribute("src");
      video.load();
    }
    setCaptions(null);
    state.player = Object.assign(idlePlayer(), { opening: player.opening + 1 });
    $("lines").replaceChildren();
    $("find-q").value = "";
    setMessage("find-message", "");
    if (!keepOpen) {
      $("player").hidden = true;
      $("player-file").textContent = "";
      setMessage("player-message", "");
    }
  }

  // A link refused while playing (it expired while the computer slept, say): renew it once and go on.
  async function recoverVideo() {
    const video = $("video");
    const player = state.player;
    if (!player.queueId || !video.error) return;
    if (player.recovering) {
      const why = video.error.message || "media error " + video.error.code;
      setMessage("player-message", "The video cannot be played (" + why + ").", true);
      return;
    }
    player.recovering = true;
    setMessage("player-message", "Renewing the video's link…");
    await refreshLinks(player.queueId);
    setTimeout(() => { player.recovering = false; }, 30000);
  }

  // ------------------------------------------------------------ transcript lines
  async function loadLines(queueId) {
    const player = state.player;
    const box = $("lines");
    box.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await (await api(API + "/status/" + encodeURIComponent(queueId) + "/transcript?format=json")).json();
    } catch (error) {
      if (state.player !== player) return;
      box.removeAttribute("aria-busy");
      setMessage("find-message", error.status === 404 ? "This lecture has no transcript yet." :
        "Cannot load the transcript: " + error.message, error.status !== 404);
      return;
    }
    if (state.player !== player) return;
    player.segments = (data.segments || []).map((s) => ({
      start: Number(s.start) || 0, end: Number(s.end) || 0, text: String(s.text || "").trim(),
    }));
    player.lines = player.segments.map((segment, index) =>
      el("li", { className: "line", dataset: { index: String(index), start: String(segment.start) } },
        el("button", { type: "button", className: "line-seek", tabindex: index === 0 ? "0" : "-1" },
          el("time", { className: "line-time", datetime: duration(segment.start), text: shortClock(segment.start) }),
          el("span", { className: "line-text", text: segment.text }))));
    box.replaceChildren(...player.lines);
    box.removeAttribute("aria-busy");
    setMessage("find-message", plural(player.lines.length, "line") + ".");
    if ($("find-q").value.trim()) findInTranscript();
    followPlayback();
  }

  // The line being spoken at `t` seconds: the last that started, unless it ended well before.
  function lineAt(segments, t) {
    let low = 0;
    let high = segments.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (segments[mid].start <= t) {
        found = mid;
        low = mid + 1;
      } else high = mid - 1;
    }
    if (found === -1) return -1;
    const next = segments[found + 1];
    return t < Math.max(segments[found].end, next ? Math.min(next.start, segments[found].end + 1) : 0) ? found : -1;
  }

  // Mark the line being spoken and bring it into the panel's view. Run on every timeupdate and seeked (and when the
  // lines or the find box change), it does not act only on a change of line: a line reached while the find box hid
  // it, or while the tutor was scrolling the panel, is brought into view as soon as it can be; and a seek (playback
  // moved, even within the line: an earlier seek to another line may have been overtaken before the page saw it)
  // brings the line back when it is out of view.
  function followPlayback(event) {
    const player = state.player;
    if (!player.lines.length) return;
    const index = lineAt(player.segments, $("video").currentTime);
    if (index !== player.now) {
      const before = player.lines[player.now];
      if (before) {
        before.classList.remove("is-now");
        before.querySelector(".line-seek").removeAttribute("aria-current");
      }
      player.now = index;
      const now = player.lines[index];
      if (now) {
        now.classList.add("is-now");
        now.querySelector(".line-seek").setAttribute("aria-current", "true");
      }
    }
    const line = player.lines[index];
    if (!line) return;
    if (event && event.type === "seeked" && !lineInView(line)) player.followed = -1;
    if (player.followed === index || line.hidden || Date.now() - player.userScrolledAt <= FOLLOW_PAUSE_MS) return;
    scrollToLine(line);
    player.followed = index;
  }

  function lineInView(line) {
    const box = $("lines").getBoundingClientRect();
    const at = line.getBoundingClientRect();
    return at.top >= box.top - 1 && at.bottom <= box.bottom + 1;
  }

  // Scroll the transcript box (never the page) so the line sits a third of the way down.
  function scrollToLine(line) {
    const box = $("lines");
    const top = line.offsetTop - box.clientHeight / 3;
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    box.scrollTo({ top: Math.max(0, top), behavior: smooth ? "smooth" : "auto" });
  }

  function seekToLine(index) {
    const player = state.player;
    const segment = player.segments[index];
    if (!segment) return;
    const video = $("video");
    video.currentTime = cueSafe(segment.start);
    setTabStop(index);
    video.play().catch(() => {});
    setMessage("player-message", "Playing " + player.name + " from " + shortClock(segment.start) + ".");
  }

  function setTabStop(index) {
    const player = state.player;
    const old = player.lines[player.focus];
    if (old) old.querySelector(".line-seek").tabIndex = -1;
    player.focus = index;
    const line = player.lines[index];
    if (line) line.querySelector(".line-seek").tabIndex = 0;
  }

  // Arrow keys, Home and End move among the lines that are shown; Enter and Space (the button's own) seek.
  function moveAmongLines(event) {
    const player = state.player;
    const shown = player.lines.filter((line) => !line.hidden);
    if (!shown.length) return;
    const here = shown.indexOf(event.target.closest("li"));
    let target;
    if (event.key === "ArrowDown") target = shown[Math.min(shown.length - 1, here + 1)];
    else if (event.key === "ArrowUp") target = shown[Math.max(0, here - 1)];
    else if (event.key === "Home") target = shown[0];
    else if (event.key === "End") target = shown[shown.length - 1];
    else return;
    event.preventDefault();
    setTabStop(Number(target.dataset.index));
    target.querySelector(".line-seek").focus();
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // Keep the lines holding every word of the box (any case), the words marked; an empty box shows all.
  function findInTranscript() {
    const player = state.player;
    const words = $("find-q").value.trim().split(/\s+/).filter(Boolean).slice(0, 20);
    const tests = words.map((word) => new RegExp(escapeRegExp(word), "iu"));
    const marker = words.length ? new RegExp(words.map(escapeRegExp).join("|"), "giu") : null;
    let shown = 0;
    player.lines.forEach((line, index) => {
      const text = player.segments[index].text;
      const match = tests.every((test) => test.test(text));
      line.hidden = !match;
      const spans = [];
      if (marker && match) {
        for (const found of text.matchAll(marker)) spans.push([found.index, found.index + found[0].length]);
      }
      line.querySelector(".line-text").replaceChildren(...markedNodes(text, spans));
      if (match) shown += 1;
    });
    const first = player.lines.find((line) => !line.hidden);
    const holder = player.lines[player.focus];
    if (first && (!holder || holder.hidden)) setTabStop(Number(first.dataset.index));
    if (!words.length) setMessage("find-message", plural(player.lines.length, "line") + ".");
    else if (!shown) setMessage("find-message", "No line has “" + words.join(" ") + "”.");
    else setMessage("find-message", shown + " of " + plural(player.lines.length, "line") +
      " match “" + words.join(" ") + "”.");
    followPlayback(); // the line being spoken, if the box hid it, is shown now
  }

  function wirePlayer() {
    const video = $("video");
    video.addEventListener("timeupdate", followPlayback);
    video.addEventListener("seeked", followPlayback);
    video.addEventListener("error", recoverVideo);
    $("player-close").addEventListener("click", () => closePlayer(false));
    const box = $("lines");
    box.addEventListener("click", (event) => {
      const line = event.target.closest("li.line");
      if (line) seekToLine(Number(line.dataset.index));
    });
    box.addEventListener("keydown", moveAmongLines);
    for (const name of ["wheel", "touchmove"]) {
      box.addEventListener(name, () => { state.player.userScrolledAt = Date.now(); }, { passive: true });
    }
    const find = $("find-q");
    find.addEventListener("input", findInTranscript);
    find.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        find.value = "";
        findInTranscript();
      } else if (event.key === "Enter") {
        event.preventDefault();
        const first = state.player.lines.find((line) => !line.hidden);
        if (first) first.querySelector(".line-seek").focus();
      }
    });
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
      const name = queueName(row);
      return el("li", { dataset: { queue: row.queue_id }, className: row.queue_id === state.queueId ? "is-current" : "" },
        el("span", { className: "q-name", text: name }),
        el("span", { className: "q-when", text: when(row.created_at) }),
        el("span", { className: "badge q-status", dataset: { status: row.status }, text: row.status }),
        el("span", { className: "percent q-progress", text: percent(row.progress_percentage) + "%" }),
        el("span", { className: "q-actions" },
        el("button", {
          type: "button", className: "secondary", text: "Open",
          "aria-label": "Open " + name + " (" + row.status + ")",
          onclick: () => {
            follow(row.queue_id, name);
            $("current").scrollIntoView({ block: "start" });
            $("current-title").setAttribute("tabindex", "-1");
            $("current-title").focus();
          },
        }),
        row.status === "completed"
          ? el("button", {
            type: "button", className: "secondary q-watch", text: "Watch",
            "aria-label": "Watch " + name,
            onclick: () => openPlayer(row.queue_id, name, 0, { play: false, focus: true }),
          })
          : null));
    });
    $("queue-list").replaceChildren(...items);
  }

  // What a tutor calls a video: the file name they uploaded (ids only when there is none).
  function queueName(row) {
    return row.filename || row.attachment_id || row.queue_id;
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
      const files = Array.from($("video-file").files);
      if (!files.length) {
        setMessage("upload-message", "Choose a video file first.", true);
        $("video-file").focus();
        return;
      }
      if (files.length > 1) uploadBatch(files);
      else upload(files[0]);
    });
    $("cancel-button").addEventListener("click", cancelCurrent);
    $("retry-button").addEventListener("click", retryCurrent);
    $("delete-button").addEventListener("click", deleteCurrent);
    $("transcript-button").addEventListener("click", openTranscript);
    $("watch-button").addEventListener("click", () =>
      openPlayer(state.queueId, state.currentName || state.queueId, 0, { play: false, focus: true }));
    wireSearch();
    wirePlayer();
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
