// stint ui: live pages. A page with data-live-run follows that run's event stream and, when
// something happens, fetches itself again and swaps its #content (no reload, no framework).
"use strict";
(function () {
  const body = document.body;
  const run = body.dataset.liveRun;
  if (run === undefined) return;
  const status = document.getElementById("live-status");
  let updates = 0;
  let timer = null;
  const say = (text) => { if (status) status.textContent = text; };

  async function refresh() {
    timer = null;
    try {
      const response = await fetch(location.href, { headers: { "X-Stint-Live": "1" } });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const next = doc.getElementById("content");
      const current = document.getElementById("content");
      if (next && current) {
        current.replaceWith(next);
        updates += 1;
        body.dataset.liveUpdates = String(updates);
        say("live · updated " + new Date().toLocaleTimeString());
      }
    } catch (error) {
      say("live · " + error);
    }
  }

  const url = "/api/runs/" + encodeURIComponent(run) + "/events/stream?after=" +
    encodeURIComponent(body.dataset.liveAfter || "0");
  const source = new EventSource(url);
  source.onopen = () => say("live");
  source.onerror = () => say("live · reconnecting");
  source.addEventListener("stint", () => {
    // A burst of events (heartbeats) makes one refresh.
    if (timer === null) timer = setTimeout(refresh, 200);
  });
})();
