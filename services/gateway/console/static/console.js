// The console's own script: ages that keep counting, and the token stream kept in view.
// Everything else is htmx (the pages' hx-* and sse-* attributes).
(function () {
  "use strict";

  function age(seconds) {
    var s = Math.max(0, seconds);
    if (s >= 86400) return Math.floor(s / 86400) + " d";
    if (s >= 3600) return Math.floor(s / 3600) + " h";
    if (s >= 60) return Math.floor(s / 60) + " min";
    return Math.floor(s) + " s";
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("time[data-ts]").forEach(function (el) {
      var ts = parseFloat(el.getAttribute("data-ts"));
      if (ts > 0) el.textContent = age(now - ts);
    });
  }

  setInterval(tick, 1000);

  document.addEventListener("htmx:sseMessage", function (evt) {
    var el = evt.target;
    if (el && el.id === "tokens") el.scrollTop = el.scrollHeight;
  });
})();
