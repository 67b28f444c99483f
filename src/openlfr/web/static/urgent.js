// openlfr: count down the time left of urgent uses (progressive enhancement: the page already
// says the time left when it was served).
"use strict";
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    document.querySelectorAll(".urgent-left[data-deadline]").forEach(function (el) {
      var left = Math.max(0, Math.floor((Date.parse(el.getAttribute("data-deadline")) - Date.now()) / 1000));
      el.textContent = Math.floor(left / 3600) + " h " + pad(Math.floor((left % 3600) / 60)) +
        " min " + pad(left % 60) + " s";
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 1000);
  });
})();
