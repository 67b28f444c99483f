// openlfr governance pages: progressive enhancement only; every form works without this file.
"use strict";
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    // Ask before an irreversible action (destroy, stop, revoke...): a yes sends confirm=yes;
    // without this file the server asks on a page of its own.
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) {
          event.preventDefault();
          return;
        }
        var field = button.form && button.form.querySelector("input[name=confirm]");
        if (field) { field.value = "yes"; }
      });
    });
    // Show a reference image in the page instead of opening it (each view is audited).
    document.querySelectorAll("a.reveal[data-image]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var item = link.parentNode;
        var shown = item.querySelector("img");
        if (shown) {
          shown.remove();
          link.textContent = "View the image";
          link.setAttribute("aria-expanded", "false");
          return;
        }
        var img = document.createElement("img");
        img.src = link.getAttribute("data-image");
        img.alt = link.getAttribute("data-alt") || "Reference image";
        item.appendChild(img);
        link.textContent = "Hide the image";
        link.setAttribute("aria-expanded", "true");
      });
    });
    // The under-18 justification only matters when the box is ticked.
    var minor = document.getElementById("s-minor");
    var just = document.getElementById("s-just-field");
    if (minor && just) {
      var sync = function () { just.hidden = !minor.checked; };
      minor.addEventListener("change", sync);
      sync();
    }
    // A new API token: select it all on focus, for copying.
    document.querySelectorAll("input[data-select-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
    // Move focus to a form's error so keyboard and screen-reader users land on it.
    var error = document.getElementById("subject-error");
    if (error) { error.focus(); }
  });
})();
