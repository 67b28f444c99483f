// openlfr: progressive enhancement only; every page works without this file.
"use strict";
(function () {
  // The CSRF token of this page, for fetch() calls that change something.
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  // fetch() with the session cookie and the CSRF header (for the console's pages).
  window.openlfrFetch = function (url, options) {
    options = options || {};
    options.credentials = "same-origin";
    options.headers = Object.assign({ "X-CSRF-Token": csrfToken() }, options.headers || {});
    return fetch(url, options);
  };
  // A live character count under a textarea with a maxlength and a help text.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[maxlength][aria-describedby]").forEach(function (ta) {
      var help = document.getElementById(ta.getAttribute("aria-describedby"));
      if (!help) { return; }
      var base = help.textContent;
      var update = function () {
        help.textContent = base + " " + ta.value.length + " / " + ta.getAttribute("maxlength") + ".";
      };
      ta.addEventListener("input", update);
    });
  });
})();
