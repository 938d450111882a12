/* supportbot chat page, rendering helpers (used by chat.js): builds elements from API data.
 * All data goes in as text (textContent / createTextNode), never as HTML; a URL becomes a link
 * only if it is http(s) or site-relative. Exposes window.SupportBotRender. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }

  // Only http(s) and site-relative URLs become links; anything else (javascript:, data:...) is text.
  function safeLink(url, text) {
    if (typeof url !== "string" || !/^(https?:|\/)/i.test(url)) return el("span", null, text);
    const a = el("a", null, text);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener";
    return a;
  }

  function svgIcon(d) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", d);
    svg.appendChild(p);
    return svg;
  }
  const THUMB = "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.5-1.1L13.2 1 " +
    "7.6 6.6C7.2 7 7 7.5 7 8v11a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7c.1-.3.2-.5.2-.8v-2z";

  // Theme colour -> CSS variables: the colour, black or white text on it (whichever contrasts
  // more), and a shade of it dark enough for links and focus rings: 4.5:1 on the message
  // bubbles' grey (#f0f2f5, relative luminance 0.88), so on white too.
  function applyTheme(hex) {
    if (!/^#[0-9a-f]{6}$/i.test(hex)) return;
    const lum = (c) => {
      const [r, g, b] = c.map((v) => ((v /= 255) <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4)));
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const L = lum(rgb);
    let accent = rgb;
    while ((0.88 + 0.05) / (lum(accent) + 0.05) < 4.5) accent = accent.map((v) => v * 0.85);
    const s = document.documentElement.style; // CSSOM: allowed by the page's CSP
    s.setProperty("--sb-color", hex);
    s.setProperty("--sb-on-color", 1.05 / (L + 0.05) >= (L + 0.05) / 0.05 ? "#fff" : "#000");
    s.setProperty("--sb-accent", "rgb(" + accent.map(Math.round).join(",") + ")");
  }

  const WHO = { customer: "You", bot: "Assistant", system: "Notice" }; // for screen readers

  /* One message. on.pick(citation, button, group) for a clarify option, on.rate(id, rating, group)
   * for the thumbs under an answer. */
  function message(m, on) {
    const row = el("div", "sb-msg");
    row.dataset.role = m.role;
    if (m.id != null) row.dataset.id = String(m.id);
    if (m.action) row.dataset.action = m.action;
    const bubble = el("div", "sb-bubble");
    if (m.role === "agent") bubble.appendChild(el("div", "sb-author", m.author || "Support team"));
    else if (WHO[m.role]) bubble.appendChild(el("span", "sb-visually-hidden", WHO[m.role] + ": "));
    bubble.appendChild(el("div", "sb-text", m.text || ""));
    const cites = m.role === "bot" && Array.isArray(m.citations) ? m.citations : [];
    if (m.action === "clarify" && cites.length) bubble.appendChild(clarify(cites, on.pick));
    else if (cites.length) bubble.appendChild(sources(cites));
    row.appendChild(bubble);
    if (m.role === "bot" && m.action === "answer" && m.id != null) {
      row.appendChild(feedback(m.id, m.feedback, on.rate));
    }
    return row;
  }

  function sources(cites) {
    const p = el("p", "sb-citation", "Source: ");
    cites.forEach((c, i) => {
      if (i) p.appendChild(document.createTextNode(", "));
      p.appendChild(safeLink(c.url, c.title || c.url || "article"));
    });
    return p;
  }

  function group(cls, label) {
    const box = el("div", cls);
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", label);
    return box;
  }

  function clarify(cites, pick) {
    const box = group("sb-clarify", "Choose an article");
    cites.forEach((c) => {
      const b = el("button", null, c.title || c.article_id);
      b.type = "button";
      b.addEventListener("click", () => pick(c, b, box));
      box.appendChild(b);
    });
    return box;
  }

  function feedback(id, current, rate) {
    const box = group("sb-feedback", "Was this answer helpful?");
    [["up", "Helpful"], ["down", "Not helpful"]].forEach(([rating, label]) => {
      const b = el("button");
      b.type = "button";
      b.dataset.rating = rating;
      b.title = label;
      b.setAttribute("aria-label", label);
      b.setAttribute("aria-pressed", String(current === rating));
      b.appendChild(svgIcon(THUMB));
      b.addEventListener("click", () => rate(id, rating, box));
      box.appendChild(b);
    });
    return box;
  }

  const STATUS = { bot: "With the assistant", queued: "Waiting for a person", agent: "With our team", closed: "Closed" };

  /* One entry of the past-conversations list: a button calling open(). */
  function pastItem(c, current, open) {
    const b = el("button", "sb-past-item");
    b.type = "button";
    b.dataset.id = c.id;
    let when = "";
    try {
      when = new Date(c.updated_at || c.created_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    } catch (e) { /* no date then */ }
    b.append(el("span", "sb-past-preview", c.preview || "(no messages)"),
      el("span", "sb-past-meta", [when, STATUS[c.status] || c.status].filter(Boolean).join(" · ")));
    if (current) b.setAttribute("aria-current", "true");
    b.addEventListener("click", open);
    const li = el("li");
    li.appendChild(b);
    return li;
  }

  window.SupportBotRender = { el: el, safeLink: safeLink, applyTheme: applyTheme, message: message, pastItem: pastItem };
})();
