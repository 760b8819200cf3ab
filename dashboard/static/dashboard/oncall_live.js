/* Delivery Sentinel — live on-call state on the pages that show it (overview, a sentinel's
 * detail page, the incidents list).
 *
 * The server sends {"type": "oncall"} over the page's socket after each incident transition
 * (opened, grew, cleared, firing, acknowledged, resolved; the overview batches them). The
 * message carries no text: the page fetches what it shows from the server, rendered by the
 * same templates as at page load (escaped there, with this session's CSRF token for the
 * card's Acknowledge button), so it always shows the committed state whatever order events
 * arrive in. It also refetches on every "state" message: a (re)connection may have missed
 * events.
 *
 *   <script src="live.js"></script> ... <script src="oncall_live.js" data-sentinel="7"></script>
 *
 * Overview and detail: GET /incidents/live/[?sentinel=id] (JSON): "block" replaces
 * #oncall-live (the overview's on-call box), "latched" (sentinel id -> HTML) each
 * [data-latched-for] element, "note"/"alarm"/"unacknowledged" the tab's title and favicon.
 * Incidents list (#incidents-live): its own URL again, whose table replaces the table. */
(function () {
  "use strict";

  const script = document.currentScript;
  const sentinel = script && script.dataset.sentinel;
  let inFlight = false;
  let again = false;

  async function fetchState() {
    if (document.getElementById("incidents-live")) {
      const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) throw new Error(`incidents: HTTP ${response.status}`);
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("incidents-live");
      if (fresh) document.getElementById("incidents-live").replaceChildren(...fresh.childNodes);
      document.body.dataset.oncallUpdated = String(Date.now());
      return;
    }
    const url = "/incidents/live/" + (sentinel ? `?sentinel=${encodeURIComponent(sentinel)}` : "");
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`on-call state: HTTP ${response.status}`);
    show(await response.json());
  }

  function show(state) {
    const box = document.getElementById("oncall-live");
    if (box && state.block !== undefined) box.innerHTML = state.block; // server-rendered, escaped
    for (const el of document.querySelectorAll("[data-latched-for]")) {
      const html = (state.latched || {})[el.dataset.latchedFor] || "";
      if (el.innerHTML !== html) el.innerHTML = html;
    }
    DS.oncallState(state.note || "", state.alarm || "", state.unacknowledged || 0);
    document.body.dataset.oncallUpdated = String(Date.now());
  }

  /* One fetch at a time; events during it cause exactly one more. */
  async function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      do {
        again = false;
        await fetchState();
      } while (again);
    } catch (err) {
      console.warn("on-call state not refreshed:", err.message); // the next event retries
    } finally {
      inFlight = false;
    }
  }

  DS.onLive("oncall", refresh);
  DS.onLive("state", refresh);
})();
