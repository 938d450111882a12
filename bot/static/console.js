// The agent console's live parts: new messages and queue changes over server-sent events (with
// polling when the stream is down), replies without a page load, typing notices, article links.
// All text from customers and agents goes in with textContent, never as HTML.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const conv = document.querySelector(".conversation");
  const queue = document.getElementById("queue");
  const liveState = document.getElementById("live-state");
  if (!conv && !queue) return;

  let lastId = conv ? Number(conv.dataset.lastId || 0) : 0;
  let pollTimer = null;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      body: body,
      credentials: "same-origin",
    });
  }

  // --- a conversation ---------------------------------------------------------------------
  function addMessage(m) {
    if (!conv || m.conversation_id !== conv.dataset.conversation) return;
    const list = document.getElementById("transcript");
    if (list.querySelector(`li[data-id="${Number(m.id)}"]`)) return;
    const li = document.createElement("li");
    li.className = "msg msg-" + m.role;
    li.dataset.id = String(m.id);
    const meta = document.createElement("div");
    meta.className = "meta";
    const when = new Date(m.created_at);
    meta.textContent = [m.author || m.role, when.toTimeString().slice(0, 5), m.action || ""]
      .filter(Boolean).join(" · ");
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = m.text;
    li.append(meta, text);
    for (const c of m.citations || []) {
      const a = document.createElement("a");
      if (/^(https?:)?\//.test(c.url)) a.href = c.url;
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = c.title;
      li.append(a);
    }
    list.append(li);
    lastId = Math.max(lastId, Number(m.id));
  }

  function setStatus(status) {
    const el = document.getElementById("conv-status");
    if (!el || !status || el.textContent === status) return;
    el.textContent = status;
    // the actions depend on the status: reload them, unless that would lose a draft reply
    const draft = document.getElementById("reply-text");
    if (draft && !draft.value.trim()) {
      location.reload();
    } else if (liveState) {
      liveState.textContent = "The status changed to " + status + ": reload for its actions.";
    }
  }

  async function refreshQueue() {
    const response = await fetch("/agent", { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("queue");
    if (fresh) queue.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
    // a short summary for screen readers, instead of re-reading the tables
    const status = document.getElementById("queue-status");
    const freshStatus = doc.getElementById("queue-status");
    if (status && freshStatus && status.textContent !== freshStatus.textContent) {
      status.textContent = freshStatus.textContent;
    }
  }

  async function poll() {
    try {
      if (conv) {
        const r = await fetch(`/agent/api/conversations/${conv.dataset.conversation}/messages?after=${lastId}`,
          { credentials: "same-origin" });
        if (r.ok) {
          const data = await r.json();
          data.messages.forEach(addMessage);
          setStatus(data.status);
        }
      } else {
        await refreshQueue();
      }
    } catch (e) { /* the next poll retries */ }
  }

  function startPolling() {
    if (pollTimer) return;
    if (liveState) liveState.textContent = "Live updates are paused; checking every 5 seconds.";
    pollTimer = setInterval(poll, 5000);
  }

  function stopPolling() {
    if (!pollTimer) return;
    clearInterval(pollTimer);
    pollTimer = null;
    if (liveState) liveState.textContent = "";
    poll();
  }

  if (window.EventSource) {
    const source = new EventSource("/agent/events");
    source.addEventListener("open", stopPolling);
    source.addEventListener("error", startPolling);
    source.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
    source.addEventListener("status", (e) => {
      const data = JSON.parse(e.data);
      if (conv && data.conversation_id === conv.dataset.conversation) setStatus(data.status);
    });
    source.addEventListener("queue", (e) => {
      const data = JSON.parse(e.data);
      if (queue) refreshQueue();
      if (conv && data.conversation_id === conv.dataset.conversation && data.status) setStatus(data.status);
    });
  } else {
    startPolling();
  }

  if (!conv) return;

  // --- replying -------------------------------------------------------------------------
  const form = document.getElementById("reply-form");
  const textarea = document.getElementById("reply-text");
  let typingSent = 0;
  textarea.addEventListener("input", () => {
    const now = Date.now();
    if (now - typingSent > 3000 && textarea.value.trim()) {
      typingSent = now;
      post(`/agent/conversations/${conv.dataset.conversation}/typing`).catch(() => {});
    }
  });
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = textarea.value.trim();
    if (!text) return;
    const button = document.getElementById("reply-send");
    button.disabled = true;
    try {
      const r = await post(form.action, new URLSearchParams({ text: text }));
      const data = await r.json();
      if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : "could not send");
      addMessage(data.message);
      textarea.value = "";
      if (liveState) liveState.textContent = "Sent.";
      setStatus(data.status);
    } catch (err) {
      if (liveState) liveState.textContent = "Not sent: " + err.message;
    } finally {
      button.disabled = false;
      textarea.focus();
    }
  });

  // --- inserting an article link ----------------------------------------------------------
  const search = document.getElementById("article-q");
  const results = document.getElementById("article-results");
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const q = search.value.trim();
      results.replaceChildren();
      if (!q) return;
      const r = await fetch("/agent/api/articles?q=" + encodeURIComponent(q), { credentials: "same-origin" });
      if (!r.ok) return;
      for (const article of await r.json()) {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Insert: " + article.title;
        b.addEventListener("click", () => {
          const link = `${article.title}: ${article.url}`;
          const at = textarea.selectionStart ?? textarea.value.length;
          textarea.value = textarea.value.slice(0, at) + link + textarea.value.slice(at);
          results.replaceChildren();
          search.value = "";
          textarea.focus();
        });
        li.append(b);
        results.append(li);
      }
    }, 250);
  });
})();
