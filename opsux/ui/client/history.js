// opsux: the list keeps its filters in the address bar (one history entry per change). Back and forward change
// the address but not the server's state, so load the page the address now names.
if (!window.__opsux_history) {
  window.__opsux_history = true;
  window.addEventListener("popstate", () => window.location.reload());
}
