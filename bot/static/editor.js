// The article editor's live preview: the server renders the Markdown exactly as the help center
// does and sanitizes it (nh3), so the returned HTML is safe to show.
(function () {
  "use strict";
  const body = document.getElementById("f-body");
  const preview = document.getElementById("preview");
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  if (!body || !preview) return;
  let timer = null;
  let sent = 0;
  async function render() {
    const mine = ++sent;
    try {
      const r = await fetch("/admin/preview", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        body: new URLSearchParams({ body: body.value }),
        credentials: "same-origin",
      });
      if (!r.ok || mine !== sent) return;
      preview.innerHTML = (await r.json()).html; // sanitized on the server
    } catch (e) { /* keep the last preview */ }
  }
  body.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(render, 250);
  });
  render();
})();
