// The first view (the page's header, sidebar and first rows, rendered by the server into the HTML) is shown
// while BokehJS loads; it gives way to the live page in the moment BokehJS puts that page into #ox-live
// (a mutation observer runs before the browser paints or any other script looks), so the two never coexist.
(function () {
  const first = document.getElementById("ox-first");
  const live = document.getElementById("ox-live");
  if (!first || !live) return;
  const watch = new MutationObserver(function () {
    if (live.childElementCount) { first.remove(); watch.disconnect(); }
  });
  watch.observe(live, {childList: true});
})();
