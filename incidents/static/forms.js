// Input is never dropped without a word: leaving a page while one of its forms holds changes that were not
// submitted asks first. A form is "dirty" when a field differs from what the page loaded with; post-mortem.js
// uses the same test to save the new-action-item form together with its section.
(function () {
  "use strict";

  function fieldsOf(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && el.type !== "hidden" && el.type !== "submit" && el.tagName !== "BUTTON";
    });
  }

  function isDirty(form) {
    return fieldsOf(form).some(function (el) {
      if (el.tagName === "SELECT") {
        var initial = Array.prototype.findIndex.call(el.options, function (o) { return o.defaultSelected; });
        return el.selectedIndex !== (initial < 0 ? 0 : initial);
      }
      if (el.type === "checkbox" || el.type === "radio") { return el.checked !== el.defaultChecked; }
      return el.value !== el.defaultValue;
    });
  }

  window.incidentsForms = {fieldsOf: fieldsOf, isDirty: isDirty};

  // The form being submitted is not "left": the window sees a submit after the form's own handlers, so one that
  // a script cancelled (to save something else first) does not count.
  var submitting = null;
  window.addEventListener("submit", function (e) { if (!e.defaultPrevented) { submitting = e.target; } });
  window.addEventListener("beforeunload", function (e) {
    var unsaved = Array.prototype.some.call(document.querySelectorAll("form[method=post]"), function (f) {
      return f !== submitting && !f.hasAttribute("data-no-leave-warning") && isDirty(f);
    });
    if (unsaved) { e.preventDefault(); e.returnValue = ""; }
  });
})();
