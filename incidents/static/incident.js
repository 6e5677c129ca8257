// The war room's clocks tick without a reload: the running duration ([data-started], an ISO UTC time) and the
// next-update countdown ([data-due]), worded as the server renders them. No inline code (CSP).
(function () {
  "use strict";

  // As incidents/formatting.py format_duration: 45s, 12m, 3h 05m, 2d 4h.
  function duration(seconds) {
    var s = Math.max(Math.floor(seconds), 0);
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m"; }
    if (s < 86400) {
      var m = Math.floor((s % 3600) / 60);
      return Math.floor(s / 3600) + "h " + (m < 10 ? "0" : "") + m + "m";
    }
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-started]").forEach(function (el) {
      var started = Date.parse(el.getAttribute("data-started"));
      if (!isNaN(started)) { el.textContent = (el.getAttribute("data-prefix") || "") + duration((now - started) / 1000); }
    });
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) { return; }
      var minutes = Math.max(Math.ceil(Math.abs(due - now) / 60000), 1);
      var overdue = due < now;
      el.textContent = overdue ? "Next update overdue by " + minutes + " min" : "Next update due in " + minutes + " min";
      el.classList.toggle("overdue", overdue);
    });
  }

  tick();
  window.setInterval(tick, 15000);
  document.addEventListener("visibilitychange", tick);  // a phone back from the lock screen: right at once
})();
