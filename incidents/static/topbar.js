// The top bar's Menu button: on a phone (the CSS folds the links only under <html class="js">, so a browser
// without scripts keeps them visible) it opens and closes #topbar-menu. Escape closes the open Admin menu
// (<details class="menu">) first, then the phone menu, and puts focus back on what opened it.
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  function setOpen(button, open) {
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var details = document.querySelector(".topbar details.menu[open]");
    if (details) {
      details.open = false;
      details.querySelector("summary").focus();
      event.stopImmediatePropagation();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.querySelector(".menu-toggle[aria-controls]");
    if (!button) { return; }
    var menu = document.getElementById(button.getAttribute("aria-controls"));
    if (!menu) { return; }

    button.addEventListener("click", function () {
      setOpen(button, button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape" || button.getAttribute("aria-expanded") !== "true") { return; }
      var inside = menu.contains(document.activeElement);
      setOpen(button, false);
      if (inside || document.activeElement === button) { button.focus(); }
    });
  });
})();
