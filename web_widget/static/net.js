/* supportbot chat page, network helpers (used by chat.js): JSON requests with friendly errors,
 * and live updates read from a server-sent event stream with fetch() (EventSource cannot send
 * the X-Conversation-Token header), falling back to polling while the stream is down.
 * Exposes window.SupportBotNet. */
(function () {
  "use strict";

  const POLL_MS = 3000;
  const IDLE_MS = 45000; // the server pings every 15 s: this much silence means a dead connection

  /* A JSON request. Rejects with an Error whose .status is the HTTP status (0: no connection)
   * and .detail the server's "detail". */
  async function request(url, method, headers, body) {
    const h = Object.assign({ Accept: "application/json" }, headers);
    if (body !== undefined) h["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(url, {
        method: method, headers: h, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw Object.assign(new Error("network"), { status: 0 });
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      throw Object.assign(new Error("HTTP " + res.status), { status: res.status, detail: data && data.detail });
    }
    return data;
  }

  /* One line for the customer: never a raw error or stack. */
  function friendly(err) {
    const s = err && err.status;
    if (s === 0) return "Can't reach the server. Check your connection and try again.";
    if (s === 503) return "The assistant is starting, try again in a moment";
    if (s === 429) return "Too many messages at once. Please wait a moment and try again.";
    // the server's 409/422 details are written for people ("text is too long: ...")
    if ((s === 409 || s === 422) && typeof err.detail === "string" && err.detail.length < 200) {
      return err.detail.charAt(0).toUpperCase() + err.detail.slice(1);
    }
    if (s === 422) return "That didn't work: please check what you entered.";
    return "Sorry, something went wrong. Please try again.";
  }

  /* Reads one event stream: onOpen() once the server accepted, then onEvent(name, data) per
   * event. Resolves when the stream ends or goes silent; rejects when it cannot be opened. */
  async function readStream(url, headers, signal, onOpen, onEvent) {
    const res = await fetch(url, {
      headers: Object.assign({ Accept: "text/event-stream" }, headers),
      cache: "no-store",
      signal: signal,
    });
    if (!res.ok || !res.body || !(res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      throw Object.assign(new Error("event stream refused"), { status: res.status });
    }
    onOpen();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let timer = 0;
    let buf = "";
    let name = "";
    let data = [];
    try {
      for (;;) {
        clearTimeout(timer);
        timer = setTimeout(() => reader.cancel().catch(() => {}), IDLE_MS);
        const chunk = await reader.read();
        if (chunk.done) break;
        buf += decoder.decode(chunk.value, { stream: true });
        // a line ends with \r\n, \n or \r; a \r at the very end may still get its \n
        let m;
        while ((m = /\r\n|\n|\r(?=[^\n])/.exec(buf))) {
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === "") {
            // a blank line dispatches the event
            if (data.length) onEvent(name || "message", data.join("\n"));
            name = "";
            data = [];
          } else if (line[0] !== ":") {
            // "field: value"; lines starting with ":" are keep-alive comments
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            let value = i < 0 ? "" : line.slice(i + 1);
            if (value[0] === " ") value = value.slice(1);
            if (field === "event") name = value;
            else if (field === "data") data.push(value);
          }
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /* Keeps an event stream open. While it is down, calls poll() every 3 s and retries the stream
   * after 2, 4, 8... (at most 60) seconds. opts: {url() (called per attempt), headers,
   * onOpen(), onEvent(name, data), poll()}. Returns {stop()}. */
  function live(opts) {
    let stopped = false;
    let ctrl = null;
    let retry = 0;
    let poller = 0;
    let backoff = 2000;
    const stopPolling = () => {
      clearInterval(poller);
      poller = 0;
    };
    const connect = () => {
      ctrl = new AbortController();
      readStream(opts.url(), opts.headers, ctrl.signal, () => {
        backoff = 2000;
        stopPolling();
        opts.onOpen();
      }, opts.onEvent)
        .catch(() => {})
        .then(() => {
          if (stopped) return;
          if (!poller) poller = setInterval(opts.poll, POLL_MS);
          retry = setTimeout(connect, backoff + Math.random() * 1000);
          backoff = Math.min(backoff * 2, 60000);
        });
    };
    connect();
    return {
      stop() {
        stopped = true;
        if (ctrl) ctrl.abort();
        clearTimeout(retry);
        stopPolling();
      },
    };
  }

  window.SupportBotNet = { request: request, friendly: friendly, live: live };
})();
