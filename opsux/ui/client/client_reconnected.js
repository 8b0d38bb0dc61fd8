// opsux: the connection is back (a fresh server session renders into this page); hide the banner.
const S = window.__opsux_link;
if (S != null) {
  S.attempt = 0;
  S.since = null;
  if (S.box != null) S.box.style.display = "none";
}
