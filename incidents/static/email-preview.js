// The weekly report preview: size each framed e-mail to its whole height, so nothing is cut off. The frame is
// same-origin (sandbox="allow-same-origin", no scripts inside), so its document can be measured from here.
(function () {
  "use strict";
  function fit(frame) {
    var doc;
    try { doc = frame.contentDocument; } catch (e) { return; }
    if (!doc || !doc.documentElement) { return; }
    frame.style.height = "0";  // measure the content, not the frame's current height
    var height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
    frame.style.height = (height + 2) + "px";  // + the frame's borders
  }
  document.querySelectorAll("iframe[data-fit-content]").forEach(function (frame) {
    frame.addEventListener("load", function () { fit(frame); });
    if (frame.contentDocument && frame.contentDocument.readyState === "complete") { fit(frame); }
    var timer;
    window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(function () { fit(frame); }, 150); });
  });
})();
