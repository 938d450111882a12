/* supportbot chat page: runs inside the widget's iframe, on the same origin as the API.
 * Message data only ever goes into the page as text: render.js builds the elements; net.js does
 * the requests, the event stream and the polling fallback. */
(function () {
  "use strict";

  const KEY = "supportbot.conversation"; // localStorage: {id, token, customer}
  const MAX_CHARS = 2000;
  const Net = window.SupportBotNet;
  const R = window.SupportBotRender;
  const el = R.el;
  const friendly = Net.friendly;
  const API = document.body.dataset.api || "/api/v1";
  const framed = window.parent !== window;
  const ui = {}; // ui.emailForm is #sb-email-form, and so on
  ["history", "new", "close", "confirm", "confirm-yes", "confirm-no", "past", "past-back",
    "past-title", "past-list", "chat", "scroll", "greeting-text", "suggestions", "log", "typing",
    "typing-text", "email-form", "email", "email-error", "csat", "csat-ask", "csat-thanks",
    "handoff", "form", "input", "send", "count"].forEach((id) => {
    ui[id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = document.getElementById("sb-" + id);
  });

  const state = {
    conv: null, // {id, token, customer}; token null: opened with the customer token instead
    epoch: 0, // bumped on every reset, so late answers about an old conversation are dropped
    status: "bot", handoff: null, csat: null, csatJustGiven: false,
    shown: new Map(), // message id -> element: a reply can come by POST, stream and poll
    lastId: 0,
    pending: [], // the customer's messages on screen before the server gave them an id
    fresh: true, // a new conversation: suggested articles under the greeting
    suggestions: [],
    sending: false, handoffBusy: false, botTyping: false, agentTyping: null, agentTimer: 0,
    customerToken: null, hostGreeting: false,
    parentOrigin: "*", // the host page's origin, once its init message told us
    visible: !framed, // the host's panel is open
    unread: 0,
  };
  let creating = null; // the conversation being created
  let feed = null; // the live updates of the current conversation
  let initDone, startedDone;
  const initReady = new Promise((resolve) => (initDone = resolve)); // the host sent its init
  const started = new Promise((resolve) => (startedDone = resolve)); // stored conversation reopened

  /* ---------- storage, identity, host page ---------- */

  // Storage may be blocked (then the conversation lasts as long as the page) or hold garbage.
  function loadStored() {
    try {
      const v = JSON.parse(localStorage.getItem(KEY));
      return v && typeof v.id === "string" ? v : null;
    } catch (e) { return null; }
  }
  function store(conv) {
    try {
      conv ? localStorage.setItem(KEY, JSON.stringify(conv)) : localStorage.removeItem(KEY);
    } catch (e) { /* blocked */ }
  }

  // The customer id a signed token names ("<base64url JSON {sub, exp}>.<signature>"). Read, not
  // verified (the server verifies): only to notice that another customer signed in on this browser.
  function tokenSubject(token) {
    try {
      return JSON.parse(atob(token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/"))).sub || null;
    } catch (e) { return null; }
  }
  const belongsHere = (conv) => !conv.customer || conv.customer === tokenSubject(state.customerToken);

  function toParent(msg) {
    if (framed) window.parent.postMessage(msg, state.parentOrigin);
  }

  /* ---------- API ---------- */

  function authHeaders(conv) {
    if (conv && conv.token) return { "X-Conversation-Token": conv.token };
    return state.customerToken ? { "X-Customer-Token": state.customerToken } : {};
  }

  // opts: {conv} for a conversation's calls, {customer: true} to identify the customer, {body}.
  function api(method, path, opts) {
    opts = opts || {};
    const headers = opts.conv || opts.customer ? authHeaders(opts.conv) : {};
    return Net.request(API + path, method, headers, opts.body);
  }

  // The conversation no longer exists, or this browser's key no longer opens it.
  const isGone = (err, conv) => err.status === 404 || err.status === 403 || (err.status === 401 && !conv.token);

  function showError(text) {
    const stick = nearBottom();
    ui.log.appendChild(el("p", "sb-error", text));
    scrollDown(stick);
  }

  // A failed call about a conversation: a lost conversation starts afresh, else an error line.
  function fail(err, conv) {
    if (err.message === "reset") return; // the customer started over meanwhile
    if (conv && conv === state.conv && isGone(err, conv)) {
      forget();
      showError("That conversation is no longer available. You can start a new one below.");
    } else {
      showError(friendly(err));
    }
  }

  /* ---------- messages ---------- */

  const renderMessage = (m) => R.message(m, { pick: pick, rate: rate });

  // A clarify option: send its title and article id; the bot answers from that article.
  async function pick(c, button, box) {
    if (state.sending) return;
    const all = box.querySelectorAll("button");
    all.forEach((x) => (x.disabled = true));
    button.classList.add("sb-chosen");
    if (!(await send(c.title || String(c.article_id), c.article_id, false))) {
      all.forEach((x) => (x.disabled = false));
      button.classList.remove("sb-chosen");
    }
  }

  async function rate(id, rating, box) {
    const conv = state.conv;
    if (!conv) return;
    try {
      await api("POST", `/conversations/${conv.id}/messages/${id}/feedback`, { conv: conv, body: { rating: rating } });
      box.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.rating === rating)));
    } catch (err) {
      // a 404 here is about the message, not the conversation: never forget for it
      showError(err.status === 404 ? "Sorry, that answer can't be rated." : friendly(err));
    }
  }

  // Messages from the server (transcript, poll, stream, POST reply): each shown once, in id order.
  // `live`: they came after the transcript was loaded, so they may count as unread.
  function addMessages(list, live) {
    const stick = nearBottom();
    let unread = 0;
    list.forEach((m) => {
      if (!m || m.id == null || state.shown.has(String(m.id))) return;
      const row = (m.role === "customer" && claimPending(m)) || renderMessage(m);
      if (!row.isConnected) insertOrdered(row, Number(m.id));
      state.shown.set(String(m.id), row);
      state.lastId = Math.max(state.lastId, Number(m.id) || 0);
      if (m.role === "agent") stopAgentTyping();
      if (live && m.role !== "customer" && !state.visible) unread++;
    });
    if (unread) setUnread(state.unread + unread);
    scrollDown(stick);
  }

  function insertOrdered(row, id) {
    const rows = ui.log.querySelectorAll(".sb-msg[data-id]");
    let before = null;
    for (let i = rows.length - 1; i >= 0 && Number(rows[i].dataset.id) > id; i--) before = rows[i];
    ui.log.insertBefore(row, before);
  }

  // The customer's own message, shown at once; its id comes with the POST reply or the stream.
  function addPending(text) {
    const p = { text: text, row: renderMessage({ role: "customer", text: text }) };
    p.row.dataset.pending = "true";
    ui.log.appendChild(p.row);
    state.pending.push(p);
    scrollDown(true);
    return p;
  }

  // The stream may deliver our message before the POST answers: adopt the bubble on screen.
  function claimPending(m) {
    const i = state.pending.findIndex((p) => p.text === String(m.text).trim());
    if (i < 0) return null;
    const row = state.pending.splice(i, 1)[0].row;
    row.dataset.id = String(m.id);
    delete row.dataset.pending;
    return row;
  }

  function settlePending(p, id) {
    const i = state.pending.indexOf(p);
    if (i < 0) return; // already claimed from the stream
    state.pending.splice(i, 1);
    if (state.shown.has(String(id))) return p.row.remove(); // shown twice: keep the server's
    p.row.dataset.id = String(id);
    delete p.row.dataset.pending;
    state.shown.set(String(id), p.row);
    state.lastId = Math.max(state.lastId, id);
  }

  function dropPending(p) {
    state.pending = state.pending.filter((x) => x !== p);
    p.row.remove();
  }

  // Follow new messages only if the customer hasn't scrolled up to read older ones.
  const nearBottom = () => ui.scroll.scrollHeight - ui.scroll.scrollTop - ui.scroll.clientHeight < 60;
  const scrollDown = (really) => really && (ui.scroll.scrollTop = ui.scroll.scrollHeight);

  function setUnread(n) {
    state.unread = n;
    toParent({ type: "supportbot:unread", count: n });
  }

  /* ---------- typing, status, extras ---------- */

  function renderTyping() {
    const stick = nearBottom();
    const who = state.botTyping ? null : state.agentTyping;
    const label = who ? who + " is typing…" : "Assistant is typing";
    ui.typing.hidden = !state.botTyping && !who;
    ui.typing.setAttribute("aria-label", label);
    ui.typingText.textContent = label;
    ui.typingText.classList.toggle("sb-visually-hidden", !who); // the bot gets the dots only
    scrollDown(stick);
  }
  function showAgentTyping(author) {
    clearTimeout(state.agentTimer);
    state.agentTyping = author || "Support team";
    state.agentTimer = setTimeout(stopAgentTyping, 4000);
    renderTyping();
  }
  function stopAgentTyping() {
    clearTimeout(state.agentTimer);
    state.agentTyping = null;
    renderTyping();
  }

  function applyStatus(status, handoff, csat) {
    if (status && status !== state.status) {
      state.csat = null; // the server's csat counts "since the last close"
      state.csatJustGiven = false;
    }
    if (status) state.status = status;
    if (handoff !== undefined) state.handoff = handoff;
    if (csat !== undefined) state.csat = csat;
    renderExtras();
  }

  // The handoff button, the offline email form and the rating prompt follow the status.
  function renderExtras() {
    const h = state.handoff;
    const stick = nearBottom();
    // disabled (not hidden) while a person is on the way or there: the customer sees it worked
    const hadFocus = document.activeElement === ui.handoff;
    ui.handoff.disabled = state.handoffBusy || state.status === "queued" || state.status === "agent";
    if (hadFocus && ui.handoff.disabled) ui.input.focus();
    ui.emailForm.hidden = !(state.conv && h && h.offline && !h.contact_email_given && h.status !== "closed");
    ui.csat.hidden = !(state.conv && state.status === "closed" && (!state.csat || state.csatJustGiven));
    ui.csatAsk.hidden = !!state.csat;
    ui.csatThanks.hidden = !state.csat;
    scrollDown(stick);
  }

  function renderSuggestions() {
    ui.suggestions.replaceChildren();
    state.suggestions.slice(0, 3).forEach((s) => {
      ui.suggestions.appendChild(el("li")).appendChild(R.safeLink(s.url, s.title));
    });
    ui.suggestions.hidden = !state.fresh || !state.suggestions.length;
  }

  /* ---------- conversation lifecycle ---------- */

  function reset(fresh) {
    state.epoch++;
    stopLive();
    Object.assign(state, { conv: null, status: "bot", handoff: null, csat: null, csatJustGiven: false,
      lastId: 0, pending: [], fresh: fresh, botTyping: false });
    creating = null;
    state.shown.clear();
    ui.log.replaceChildren();
    ui.confirm.hidden = true;
    stopAgentTyping();
    renderExtras();
    renderSuggestions();
    if (state.unread) setUnread(0);
  }

  function forget() {
    const stored = loadStored();
    if (stored && state.conv && stored.id === state.conv.id) store(null);
    reset(true);
  }

  function switchTo(conv, save) {
    reset(false);
    state.conv = conv;
    if (save) store(conv);
    sync();
    startLive();
  }

  // The conversation is created lazily, by the first message (or "Talk to a person").
  function ensureConversation() {
    if (state.conv) return Promise.resolve(state.conv);
    if (creating) return creating;
    const epoch = state.epoch;
    const mine = (creating = (async () => {
      const customer = tokenSubject(state.customerToken);
      let r;
      try {
        r = await api("POST", "/conversations", { customer: true });
      } catch (err) {
        if (err.status !== 401 || !state.customerToken) throw err;
        state.customerToken = null; // a stale or refused identity: carry on as a guest
        ui.history.hidden = true;
        r = await api("POST", "/conversations");
      }
      if (epoch !== state.epoch) throw new Error("reset");
      state.conv = { id: r.id, token: r.token, customer: state.customerToken ? customer : null };
      store(state.conv);
      applyStatus(r.status);
      startLive();
      return state.conv;
    })());
    mine.catch(() => {}).then(() => {
      if (creating === mine) creating = null; // done or failed: the next call starts over
    });
    return mine;
  }

  // Bring the transcript up to date (all of it the first time, then only what is newer).
  async function sync() {
    const conv = state.conv;
    if (!conv) return;
    const after = state.lastId;
    try {
      const t = await api("GET", `/conversations/${conv.id}` + (after ? "?after=" + after : ""), { conv: conv });
      if (conv !== state.conv) return;
      addMessages(t.messages || [], after > 0);
      applyStatus(t.status, t.handoff || null, t.csat || null);
    } catch (err) {
      // gone: start afresh; anything else: the stream or the next poll catches up
      if (conv === state.conv && isGone(err, conv)) forget();
    }
  }

  // Send a customer message (typed, or a clarify option). Resolves true once delivered.
  async function send(text, articleId, typed) {
    text = text.trim();
    if (!text || state.sending) return false;
    state.sending = true;
    updateCompose();
    await started; // a stored conversation is being reopened: write into that one
    ui.log.querySelectorAll(".sb-error").forEach((e) => e.remove());
    let p = addPending(text);
    const waitForBot = () => {
      state.botTyping = state.status === "bot" || state.status === "closed"; // else a person replies
      renderTyping();
    };
    waitForBot();
    const body = articleId ? { text: text, article_id: articleId } : { text: text };
    let conv;
    try {
      conv = await ensureConversation();
      let r;
      try {
        r = await api("POST", `/conversations/${conv.id}/messages`, { conv: conv, body: body });
      } catch (err) {
        if (!isGone(err, conv)) throw err;
        forget(); // the old conversation is gone: start a new one and send it there
        p = addPending(text);
        waitForBot();
        conv = await ensureConversation();
        r = await api("POST", `/conversations/${conv.id}/messages`, { conv: conv, body: body });
      }
      if (conv !== state.conv) return true;
      settlePending(p, r.customer_message_id);
      if (r.message_id != null) {
        addMessages([{ id: r.message_id, role: "bot", text: r.text, action: r.action, citations: r.citations }], false);
      }
      applyStatus(r.conversation_status, r.handoff || null);
      if (r.action === "escalate" || r.conversation_status !== "bot") sync(); // the notices
      return true;
    } catch (err) {
      dropPending(p);
      if (typed && !ui.input.value) ui.input.value = text; // so they can try again
      fail(err, conv);
      return false;
    } finally {
      state.sending = false;
      state.botTyping = false;
      renderTyping();
      updateCompose();
    }
  }

  /* ---------- live updates ---------- */

  function startLive() {
    stopLive();
    const conv = state.conv;
    if (!conv || document.hidden) return;
    feed = Net.live({
      url: () => `${API}/conversations/${conv.id}/events` + (state.lastId ? "?after=" + state.lastId : ""),
      headers: authHeaders(conv),
      onOpen: sync, // catch up: the status may have changed while the stream was down
      poll: sync,
      onEvent: (name, data) => onEvent(conv, name, data),
    });
  }
  function stopLive() {
    if (feed) feed.stop();
    feed = null;
  }

  function onEvent(conv, name, raw) {
    let d = null;
    try { d = JSON.parse(raw); } catch (e) { /* not JSON: ignored */ }
    if (conv !== state.conv || !d) return;
    if (name === "message") addMessages([d], true);
    else if (name === "typing") showAgentTyping(d.author);
    else if (name === "status") {
      applyStatus(d.status, d.handoff);
      sync(); // the handoff and rating state come with the transcript
    }
  }

  /* ---------- past conversations (customers the host page signed in) ---------- */

  async function showPast() {
    ui.chat.hidden = true;
    ui.past.hidden = false;
    ui.pastList.replaceChildren(el("li", "sb-muted", "Loading…"));
    ui.pastTitle.focus();
    try {
      const list = await api("GET", "/customers/me/conversations", { customer: true });
      ui.pastList.replaceChildren();
      if (!list.length) ui.pastList.appendChild(el("li", "sb-muted", "No past conversations yet."));
      list.forEach((c) => {
        const current = !!state.conv && state.conv.id === c.id;
        ui.pastList.appendChild(R.pastItem(c, current, () => {
          hidePast();
          if (!current) switchTo({ id: c.id, token: null, customer: tokenSubject(state.customerToken) }, true);
        }));
      });
    } catch (err) {
      ui.pastList.replaceChildren(el("li", "sb-error", friendly(err)));
    }
  }

  function hidePast() {
    ui.past.hidden = true;
    ui.chat.hidden = false;
    ui.input.focus();
  }

  /* ---------- the controls ---------- */

  function updateCompose() {
    const n = ui.input.value.length;
    ui.send.disabled = state.sending;
    ui.count.hidden = n < MAX_CHARS * 0.9; // the counter shows near the limit only
    ui.count.textContent = n + " / " + MAX_CHARS;
    ui.input.style.height = "auto"; // grow with the text, up to the CSS max-height
    ui.input.style.height = ui.input.scrollHeight + 2 + "px";
  }

  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.input.value.trim();
    if (!text || state.sending) return;
    ui.input.value = "";
    send(text, null, true);
    updateCompose();
    ui.input.focus();
  });
  ui.input.addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter is a new line; not while an IME is composing a character
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ui.form.requestSubmit();
    }
  });
  ui.input.addEventListener("input", updateCompose);

  ui.handoff.addEventListener("click", async () => {
    state.handoffBusy = true;
    renderExtras();
    let conv;
    try {
      conv = await ensureConversation();
      const r = await api("POST", `/conversations/${conv.id}/handoff`, { conv: conv });
      if (conv !== state.conv) return;
      applyStatus(r.conversation_status, r.handoff);
      sync(); // the server's notice
    } catch (err) {
      fail(err, conv);
    } finally {
      state.handoffBusy = false;
      renderExtras();
    }
  });

  ui.emailForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const conv = state.conv;
    const error = (text) => {
      ui.emailError.textContent = text;
      ui.emailError.hidden = !text;
      ui.email.setAttribute("aria-invalid", String(!!text));
    };
    if (!conv) return;
    if (!ui.email.value.trim() || !ui.email.checkValidity()) {
      error("Please enter a valid email address.");
      return ui.email.focus();
    }
    error("");
    try {
      const r = await api("POST", `/conversations/${conv.id}/contact`, { conv: conv, body: { email: ui.email.value.trim() } });
      if (conv !== state.conv) return;
      ui.email.value = "";
      applyStatus(r.conversation_status, r.handoff);
      ui.input.focus();
      sync(); // the server's confirmation notice
    } catch (err) {
      error(friendly(err));
    }
  });

  ui.csat.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-score]");
    const conv = state.conv;
    if (!b || !conv) return;
    const buttons = ui.csat.querySelectorAll("button[data-score]");
    buttons.forEach((x) => (x.disabled = true));
    try {
      const score = Number(b.dataset.score);
      await api("POST", `/conversations/${conv.id}/csat`, { conv: conv, body: { score: score } });
      if (conv !== state.conv) return;
      state.csat = { score: score };
      state.csatJustGiven = true;
      renderExtras();
      ui.input.focus();
    } catch (err) {
      fail(err, conv);
    } finally {
      buttons.forEach((x) => (x.disabled = false));
    }
  });

  ui.new.addEventListener("click", () => {
    if (!state.conv) return ui.input.focus(); // nothing to clear
    ui.confirm.hidden = false;
    ui.confirmYes.focus();
  });
  ui.confirmYes.addEventListener("click", () => {
    store(null); // other tabs follow through the storage event
    reset(true);
    ui.input.focus();
  });
  ui.confirmNo.addEventListener("click", () => {
    ui.confirm.hidden = true;
    ui.new.focus();
  });
  ui.close.addEventListener("click", () => toParent({ type: "supportbot:close" }));
  ui.history.addEventListener("click", showPast);
  ui.pastBack.addEventListener("click", hidePast);

  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.isComposing) return;
    if (!ui.confirm.hidden) {
      ui.confirm.hidden = true;
      ui.new.focus();
    } else if (!ui.past.hidden) {
      hidePast();
    } else {
      toParent({ type: "supportbot:close" });
    }
  });

  /* ---------- the outside world: host page, other tabs, visibility ---------- */

  // Messages from the loader, only from the window that embeds us.
  window.addEventListener("message", (e) => {
    const msg = e.data;
    if (!framed || e.source !== window.parent || !msg || typeof msg !== "object") return;
    if (msg.type === "supportbot:init") {
      state.parentOrigin = e.origin && e.origin !== "null" ? e.origin : "*";
      state.customerToken = typeof msg.customerToken === "string" && msg.customerToken ? msg.customerToken : null;
      ui.history.hidden = !state.customerToken;
      if (typeof msg.greeting === "string" && msg.greeting.trim()) {
        state.hostGreeting = true;
        ui.greetingText.textContent = msg.greeting.trim();
      }
      initDone();
    } else if (msg.type === "supportbot:open") {
      state.visible = true;
      if (state.unread) setUnread(0);
      if (msg.focus && ui.past.hidden && ui.confirm.hidden) ui.input.focus();
    } else if (msg.type === "supportbot:hidden") {
      state.visible = false;
    }
  });

  // Another tab started, switched or cleared the conversation: follow it.
  window.addEventListener("storage", (e) => {
    if (e.key !== KEY && e.key !== null) return;
    const next = loadStored();
    if (next && state.conv && next.id === state.conv.id) return;
    if (!next) {
      if (state.conv) reset(true);
    } else if (belongsHere(next)) {
      switchTo(next, false);
    }
  });

  // Only a visible tab keeps a stream open (browsers allow few connections per server).
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return stopLive();
    if (state.conv) {
      sync();
      startLive();
    }
  });

  async function loadConfig() {
    try {
      const c = await api("GET", "/widget/config");
      if (c.greeting && !state.hostGreeting) ui.greetingText.textContent = c.greeting;
      state.suggestions = Array.isArray(c.suggestions) ? c.suggestions : [];
      renderSuggestions();
    } catch (e) { /* the greeting the page came with will do */ }
  }

  R.applyTheme(document.body.dataset.color || "");
  ui.close.hidden = !framed;
  updateCompose();
  renderExtras();
  if (framed) {
    toParent({ type: "supportbot:ready", title: document.body.dataset.title || "" }); // for the frame's label
    setTimeout(initDone, 1500); // a host page that never answers: carry on as a guest
  } else {
    initDone();
  }
  loadConfig();
  // Reopen the stored conversation once we know who the customer is (their token, if any).
  initReady.then(() => {
    const stored = loadStored();
    if (stored && belongsHere(stored) && (stored.token || state.customerToken)) switchTo(stored, false);
    startedDone();
  });
})();
