/* supportbot widget loader.
 *
 * A host site adds one tag:
 *   <script src="https://BOT/widget/loader.js" data-title="Help" data-color="#1a73e8" async></script>
 * and gets a launcher button plus a chat panel (an iframe served by the bot). Both live in a
 * shadow root, so the host page's CSS cannot restyle or break them. The iframe and this script
 * talk only through postMessage, always checking origin and source.
 */
(function () {
  "use strict";

  // Loaded twice (two snippets, or a single-page app re-inserting the tag): keep the first.
  if (window.SupportBot || document.getElementById("supportbot-widget-host")) return;

  const LOADER_PATH = /\/widget\/loader\.js(?:[?#].*)?$/;
  let script = document.currentScript;
  if (!script || !LOADER_PATH.test(script.src || "")) {
    script = null;
    const all = document.querySelectorAll("script[src]");
    for (let i = all.length - 1; i >= 0 && !script; i--) {
      if (LOADER_PATH.test(all[i].src)) script = all[i];
    }
  }
  if (!script) return;

  const src = new URL(script.src, location.href);
  const BOT_ORIGIN = src.origin;
  const BOT_BASE = src.href.replace(LOADER_PATH, ""); // keeps a path prefix, e.g. /support
  const data = (name) => (script.getAttribute("data-" + name) || "").trim();

  const title = data("title");
  const color = normalizeHex(data("color")); // "" when absent or invalid: the bot's default
  const position = data("position") === "left" ? "left" : "right";
  const startOpen = data("open") === "true";
  const customerToken = data("customer-token") || null;
  const greeting = data("greeting") || null;

  let host, shadow, root, launcher, badge, unreadText, panel, iframe;
  let isOpen = false;
  let frameReady = false;
  let unread = 0;
  let pendingFocus = false; // focus to move into the frame once it is ready

  window.SupportBot = { open: () => open(true), close: () => close(false) };

  // "#abc" / "#aabbcc" -> "#aabbcc"; anything else -> "".
  function normalizeHex(value) {
    const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(value);
    if (!m) return "";
    const h = m[1].length === 3 ? m[1].replace(/./g, "$&$&") : m[1];
    return "#" + h.toLowerCase();
  }

  // Black or white, whichever contrasts more with the background (WCAG relative luminance).
  function textOn(hex) {
    const lin = (i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    };
    const L = 0.2126 * lin(1) + 0.7152 * lin(3) + 0.0722 * lin(5);
    return 1.05 / (L + 0.05) >= (L + 0.05) / 0.05 ? "#ffffff" : "#000000";
  }

  function icon(cls, path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", cls);
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.appendChild(p);
    return svg;
  }

  function setup() {
    if (document.getElementById("supportbot-widget-host")) return;
    host = document.createElement("div");
    host.id = "supportbot-widget-host";
    const theme = color || "#1a5fb4";
    host.style.setProperty("--sb-color", theme);
    host.style.setProperty("--sb-on-color", textOn(theme));
    shadow = host.attachShadow({ mode: "open" });
    addStyles(shadow);

    root = document.createElement("div");
    root.className = "sb-root sb-" + position;

    panel = document.createElement("div");
    panel.className = "sb-panel";
    panel.id = "sb-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", (title || "Support") + " chat");

    launcher = document.createElement("button");
    launcher.type = "button";
    launcher.className = "sb-launcher";
    launcher.setAttribute("aria-controls", "sb-panel");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat");
    launcher.append(
      icon("sb-i-open", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 1-2z"),
      icon("sb-i-close", "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6 10.6 12 5 6.4z")
    );
    badge = document.createElement("span");
    badge.className = "sb-badge";
    badge.id = "sb-badge";
    badge.hidden = true;
    badge.setAttribute("aria-hidden", "true"); // screen readers get unreadText instead
    launcher.appendChild(badge);
    unreadText = document.createElement("span");
    unreadText.id = "sb-unread";
    unreadText.className = "sb-visually-hidden";
    launcher.addEventListener("click", () => (isOpen ? close(true) : open(true)));

    // Escape while focus is on the launcher or the panel (keys typed inside the iframe never
    // reach this document: the chat page itself posts supportbot:close on Escape).
    shadow.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && isOpen) {
        e.stopPropagation();
        close(true);
      }
    });

    root.append(panel, launcher, unreadText);
    shadow.appendChild(root);
    document.body.appendChild(host);
    window.addEventListener("message", onMessage);
    if (startOpen) open(false); // don't steal focus on page load
  }

  // Constructable stylesheets are not blocked by a host page CSP without 'unsafe-inline'
  // (a <style> element would be); older browsers get the <style> fallback.
  function addStyles(shadow) {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      shadow.adoptedStyleSheets = [sheet];
    } catch (e) {
      const style = document.createElement("style");
      style.textContent = CSS;
      shadow.appendChild(style);
    }
  }

  function createFrame() {
    const params = new URLSearchParams();
    if (title) params.set("title", title);
    if (color) params.set("color", color);
    iframe = document.createElement("iframe");
    iframe.className = "sb-frame";
    iframe.title = (title || "Support") + " chat";
    iframe.loading = "eager";
    // No customer token here: it travels by postMessage only, never in a URL.
    iframe.src = BOT_BASE + "/widget/frame" + (params.toString() ? "?" + params : "");
    panel.appendChild(iframe);
  }

  function post(msg) {
    if (iframe && iframe.contentWindow) iframe.contentWindow.postMessage(msg, BOT_ORIGIN);
  }

  function open(moveFocus) {
    if (!launcher) return;
    if (!iframe) createFrame(); // kept in the DOM afterwards, so the chat keeps its state
    isOpen = true;
    panel.hidden = false;
    root.classList.add("sb-open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat");
    setUnread(0);
    if (frameReady) shown(moveFocus);
    else pendingFocus = moveFocus;
  }

  // Tell the chat it is visible (it resets its unread count) and, if asked, put focus in it.
  function shown(moveFocus) {
    if (moveFocus) iframe.focus();
    post({ type: "supportbot:open", focus: !!moveFocus });
  }

  function close(returnFocus) {
    if (!launcher || !isOpen) return;
    // focus inside the panel must not stay in a hidden frame
    if (document.activeElement === host && shadow.activeElement === iframe) returnFocus = true;
    isOpen = false;
    panel.hidden = true;
    root.classList.remove("sb-open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat");
    post({ type: "supportbot:hidden" });
    if (returnFocus) launcher.focus();
  }

  function setUnread(n) {
    unread = isOpen ? 0 : Math.max(0, Math.min(99, n | 0));
    badge.hidden = unread === 0;
    badge.textContent = unread ? String(unread) : "";
    unreadText.textContent = unread === 1 ? "1 unread message" : unread + " unread messages";
    // read after the button's name: "Open chat, 2 unread messages"
    if (unread) launcher.setAttribute("aria-describedby", "sb-unread");
    else launcher.removeAttribute("aria-describedby");
  }

  function onMessage(e) {
    if (e.origin !== BOT_ORIGIN || !iframe || e.source !== iframe.contentWindow) return;
    const msg = e.data;
    if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
    switch (msg.type) {
      case "supportbot:ready": // also after the frame reloads
        frameReady = true;
        if (!title && typeof msg.title === "string" && msg.title) {
          // no data-title: name the panel after the title the bot is configured with
          iframe.title = msg.title.slice(0, 80) + " chat";
          panel.setAttribute("aria-label", iframe.title);
        }
        post({ type: "supportbot:init", customerToken: customerToken, greeting: greeting });
        if (isOpen) shown(pendingFocus);
        else post({ type: "supportbot:hidden" });
        pendingFocus = false;
        break;
      case "supportbot:close":
        close(true);
        break;
      case "supportbot:unread":
        setUnread(msg.count);
        break;
    }
  }

  const CSS = `
:host { all: initial; }
.sb-launcher {
  position: fixed; bottom: 20px; right: 20px; z-index: 2147483646;
  width: 56px; height: 56px; padding: 0; border: 0; border-radius: 50%;
  display: flex; align-items: center; justify-content: center; cursor: pointer;
  background: var(--sb-color); color: var(--sb-on-color);
  box-shadow: 0 4px 14px rgba(0, 0, 0, .3);
}
.sb-left .sb-launcher { right: auto; left: 20px; }
/* a white ring then a black one: visible on any page background */
.sb-launcher:focus-visible { outline: 3px solid #000; outline-offset: 2px; box-shadow: 0 0 0 2px #fff; }
.sb-launcher svg { width: 28px; height: 28px; fill: currentColor; }
.sb-launcher .sb-i-close, .sb-open .sb-launcher .sb-i-open { display: none; }
.sb-open .sb-launcher .sb-i-close { display: block; }
.sb-badge {
  position: absolute; top: -4px; right: -4px; box-sizing: border-box;
  min-width: 22px; height: 22px; padding: 0 6px; border-radius: 11px; border: 2px solid #fff;
  background: #b3261e; color: #fff; font: 700 12px/18px system-ui, -apple-system, "Segoe UI", sans-serif;
  text-align: center;
}
.sb-badge[hidden], .sb-panel[hidden] { display: none; }
.sb-visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
.sb-panel {
  position: fixed; bottom: 88px; right: 20px; z-index: 2147483647;
  width: 380px; height: 600px; max-width: calc(100vw - 40px); max-height: calc(100vh - 108px);
  border-radius: 12px; overflow: hidden; background: #fff;
  box-shadow: 0 8px 32px rgba(0, 0, 0, .28);
}
.sb-left .sb-panel { right: auto; left: 20px; }
.sb-frame { display: block; width: 100%; height: 100%; border: 0; }
@media (max-width: 480px) {
  .sb-panel, .sb-left .sb-panel {
    top: 0; left: 0; right: auto; bottom: auto; width: 100vw; height: 100vh; height: 100dvh;
    max-width: none; max-height: none; border-radius: 0;
  }
  /* full screen: the chat's own close button closes it */
  .sb-open .sb-launcher { display: none; }
}
@media (prefers-reduced-motion: no-preference) {
  .sb-launcher { transition: transform .15s ease; }
  .sb-launcher:hover { transform: scale(1.06); }
}
`;

  // last, so everything above is initialised when setup() runs
  if (document.body) setup();
  else document.addEventListener("DOMContentLoaded", setup, { once: true });
})();
