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

  // Input is never dropped. Saving the section also saves the dirty forms marked data-save-with-section (the new
  // action item, edited items) first, and stays on the page with their messages when one is refused; leaving with
  // any other dirty form asks first (forms.js, on every page).
  var fieldsOf = window.incidentsForms.fieldsOf;
  var isDirty = window.incidentsForms.isDirty;

  function refusal(form, html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var messages = Array.prototype.map.call(doc.querySelectorAll(".field-error, .flash.error"), function (el) {
      return el.textContent.trim();
    }).filter(Boolean);
    var title = form.querySelector("[name=title]");
    return "Not saved yet: the action item" + (title && title.value ? " \u201c" + title.value + "\u201d" : "") +
      " was refused (" + (messages.join(" ") || "try again") + "). Your input is still here.";
  }

  document.querySelectorAll("form.pm-section-form").forEach(function (section) {
    var box = section.querySelector("[data-subform-errors]");
    section.addEventListener("submit", function (e) {
      if (section.getAttribute("data-subforms-saved")) { return; }
      var pending = Array.prototype.filter.call(document.querySelectorAll("form[data-save-with-section]"), isDirty);
      if (!pending.length) { return; }
      e.preventDefault();
      var submitter = e.submitter;
      pending.reduce(function (done, form) {
        return done.then(function () {
          // Not following the redirect leaves its flash ("Action item ... added.") for the page that comes next.
          return fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                                     redirect: "manual"})
            .then(function (r) {
              if (!r.ok && r.type !== "opaqueredirect") { return r.text().then(function (html) { throw new Error(refusal(form, html)); }); }
              fieldsOf(form).forEach(function (el) {  // saved: what it holds now is its clean state
                if (el.tagName === "SELECT") {
                  Array.prototype.forEach.call(el.options, function (o) { o.defaultSelected = o.selected; });
                } else { el.defaultValue = el.value; }
              });
            });
        });
      }, Promise.resolve()).then(function () {
        section.setAttribute("data-subforms-saved", "1");
        section.requestSubmit(submitter);
      }).catch(function (err) {
        box.textContent = err.message && err.message.indexOf("Not saved") === 0 ? err.message
          : "Not saved yet: the server could not be reached. Your input is still here.";
        box.hidden = false;
        box.scrollIntoView({block: "center"});
      });
    });
  });
})();
