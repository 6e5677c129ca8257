// Copy buttons: <button data-copy="ID"> copies the text of the element with that id. No inline code (CSP).
// navigator.clipboard exists only on secure origins (https, localhost); elsewhere the text is selected instead.
(function () {
  "use strict";

  function say(button, message) {
    var status = button.nextElementSibling;
    if (!status || !status.hasAttribute("data-copy-status")) {
      status = document.createElement("span");
      status.className = "muted small";
      status.setAttribute("role", "status");
      status.setAttribute("data-copy-status", "");
      button.insertAdjacentElement("afterend", status);
    }
    status.textContent = " " + message;
  }

  function selectText(source) {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function fallback(button, source) {
    selectText(source);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    say(button, copied ? "Copied." : "Selected: press Ctrl+C (⌘C) to copy.");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say(button, "Copied."); },
                                               function () { fallback(button, source); });
    } else {
      fallback(button, source);
    }
  });
})();
