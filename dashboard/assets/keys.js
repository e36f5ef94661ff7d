/* One-key review: a key press clicks the visible button whose data-bs-key matches
 * (c confirm, d dismiss, o reopen); j / k move the review queue's selection. */
(function () {
  "use strict";
  document.addEventListener("keydown", function (ev) {
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || ev.target.isContentEditable) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const btn = Array.from(document.querySelectorAll('[data-bs-key="' + ev.key + '"]')).find(
      (b) => b.offsetParent !== null && !b.disabled
    );
    if (btn) {
      ev.preventDefault();
      (btn.tagName === "BUTTON" ? btn : btn.querySelector("a") || btn).click();
    }
  });
})();
