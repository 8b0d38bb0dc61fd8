// opsux: the server went away (a deploy, a restart). Bokeh's client does not come back by itself, so this page
// asks for a fresh server session of the same URL (the normal page request, with this tab's cookies), hands its
// token to the existing connection and reconnects it. BokehJS then pulls the new document and renders it into the
// same page: no reload, filters and scroll position kept. Runs for every Bokeh `connection_lost` event.
// It reconnects only with a fresh token. When the page request fails (the server is still away, or it started
// listening just after the request), it asks again later and does not reconnect: rejoining with the old session's
// token makes the new server build a session from the websocket request, and since the page already reported its
// document ready, that session never hears "ready", so it never pushes. The banner would go and the page would
// not be live (a flaky restart test showed exactly that).
// cb_obj: the Bokeh Document; cb_data: the ConnectionLost event. Private BokehJS fields used (see opsux.ui.compat):
// ClientConnection.token, Document._notified_idle.
const doc = cb_obj, lost = cb_data;
const S = window.__opsux_link || (window.__opsux_link = {attempt: 0, timer: null, since: null, box: null});
const conn = lost.connection && lost.connection.deref ? lost.connection.deref() : null;
if (conn == null || S.timer != null) return;
if (S.since == null) S.since = Date.now();
if (S.box == null) {
  S.box = document.createElement("div");
  S.box.className = "ox-offline";
  S.box.setAttribute("role", "alert");
  S.box.style.cssText = "position:fixed;top:8px;left:50%;transform:translateX(-50%);z-index:20000;" +
    "max-width:calc(100vw - 32px);background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;" +
    "padding:8px 12px;font:14px/1.4 system-ui,sans-serif;color:#4d2d00;box-shadow:0 4px 12px rgba(0,0,0,.15)";
  document.body.appendChild(S.box);
}
const later = () => {
  const away = (Date.now() - S.since) / 1000;
  S.box.textContent = away < STILL_DOWN_SECONDS
    ? "Reconnecting… The dashboard server cannot be reached; this page reconnects by itself."
    : "Still reconnecting… The dashboard server has not answered since " + new Date(S.since).toLocaleTimeString() +
      ". What this page shows is not live; it keeps trying.";
  S.box.dataset.state = away < STILL_DOWN_SECONDS ? "reconnecting" : "down";
  S.box.style.display = "";
  const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(S.attempt, 6)) * (0.75 + Math.random() / 2);
  S.attempt += 1;
  S.timer = setTimeout(async () => {
    let token = null;
    try {
      const reply = await fetch(window.location.href, {credentials: "same-origin", cache: "no-store"});
      const found = reply.ok ? (await reply.text()).match(/"token":"([^"]+)"/) : null;
      if (found) token = found[1];
    } catch (error) { /* still away */ }
    S.timer = null;
    if (token == null) { later(); return; }   // no fresh session yet: ask again, never rejoin with the old token
    conn.token = token;
    doc._notified_idle = false;   // so BokehJS reports the new document ready (Panel's onload) once rendered
    conn.reconnect();             // if this fails, Bokeh reports connection_lost again and this script runs again
  }, delay);
};
later();
