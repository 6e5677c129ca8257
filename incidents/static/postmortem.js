// Post-mortem editor helpers: the blameless-language coach and local drafts. No inline code (CSP).
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var CHECK_URL = "/postmortems/blameless-check";

  function debounce(fn, ms) {
    var t;
    return function () { var args = arguments, self = this; clearTimeout(t); t = setTimeout(function () { fn.apply(self, args); }, ms); };
  }

  function coachFor(field) {
    var form = field.form;
    return (form && form.querySelector("[data-coach-output]")) || null;
  }

  function render(box, text, findings) {
    var list = box.querySelector("ul");
    list.textContent = "";
    findings.forEach(function (f) {
      var li = document.createElement("li");
      li.className = "pm-finding";
      var mark = document.createElement("mark");
      mark.textContent = text.slice(f.start, f.end);
      li.appendChild(mark);
      li.appendChild(document.createTextNode(" — " + f.suggestion));
      list.appendChild(li);
    });
    box.hidden = findings.length === 0;
  }

  function check(field) {
    var box = coachFor(field);
    if (!box) { return; }
    var text = field.value;
    fetch(CHECK_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json"},
      body: JSON.stringify({text: text})
    }).then(function (r) { return r.ok ? r.json() : {findings: []}; })
      .then(function (data) { if (field.value === text) { render(box, text, data.findings || []); } })
      .catch(function () { /* the coach only advises: stay quiet when offline */ });
  }

  document.querySelectorAll("textarea[data-coach]").forEach(function (field) {
    var run = debounce(function () { check(field); }, 350);
    field.addEventListener("input", run);
    if (field.value) { check(field); }
  });

  // Local drafts: typing is kept in this browser until the section is saved, per section and version.
  document.querySelectorAll("form[data-draft-key]").forEach(function (form) {
    var key = "pm-draft:" + form.getAttribute("data-draft-key");
    var version = form.getAttribute("data-version");
    var field = form.querySelector("textarea[name=body]");
    var note = form.querySelector("[data-draft-note]");
    if (!field || !window.localStorage) { return; }
    var saved = null;
    try { saved = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { saved = null; }
    if (saved && saved.version === version && saved.text !== field.value && note) {
      note.hidden = false;
      note.querySelector("[data-draft-restore]").addEventListener("click", function () {
        field.value = saved.text; note.hidden = true; check(field);
      });
      note.querySelector("[data-draft-discard]").addEventListener("click", function () {
        localStorage.removeItem(key); note.hidden = true;
      });
    } else if (saved && saved.version !== version) {
      localStorage.removeItem(key);
    }
    field.addEventListener("input", debounce(function () {
      localStorage.setItem(key, JSON.stringify({version: version, text: field.value}));
    }, 500));
    form.addEventListener("submit", function () { localStorage.removeItem(key); });
  });
})();
