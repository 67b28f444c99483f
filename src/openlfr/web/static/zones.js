// The zones editor: click on the still to add points, close the polygon as an analysis zone or
// a privacy mask; the text fields (JSON) are the source of truth, and can be edited by hand.
(function () {
  "use strict";
  var svg = document.getElementById("zones-canvas");
  var zones = document.getElementById("zones");
  var masks = document.getElementById("masks");
  var tools = document.getElementById("draw-tools");
  if (!svg || !zones || !masks || !tools) return;
  tools.hidden = false;
  var NS = "http://www.w3.org/2000/svg";
  var drawn = svg.querySelector(".zones-drawn");
  var points = [];
  var pending = document.createElementNS(NS, "polyline");
  pending.setAttribute("class", "pending");
  svg.appendChild(pending);

  function parse(field) {
    try {
      var v = JSON.parse(field.value || "[]");
      return Array.isArray(v) ? v : [];
    } catch (e) {
      return null;
    }
  }
  function pts(poly) {
    return poly.map(function (p) { return p[0] + "," + p[1]; }).join(" ");
  }
  function redraw() {
    while (drawn.firstChild) drawn.removeChild(drawn.firstChild);
    [["zone", parse(zones)], ["mask", parse(masks)]].forEach(function (kind) {
      (kind[1] || []).forEach(function (poly) {
        if (!Array.isArray(poly)) return;
        var el = document.createElementNS(NS, "polygon");
        el.setAttribute("class", kind[0]);
        el.setAttribute("points", pts(poly));
        drawn.appendChild(el);
      });
    });
    pending.setAttribute("points", pts(points));
  }
  function round(v) { return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000; }
  svg.addEventListener("click", function (ev) {
    var r = svg.getBoundingClientRect();
    points.push([round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)]);
    redraw();
  });
  function close(field) {
    if (points.length < 3) return;
    var list = parse(field) || [];
    list.push(points);
    field.value = JSON.stringify(list);
    points = [];
    redraw();
  }
  document.getElementById("close-zone").addEventListener("click", function () { close(zones); });
  document.getElementById("close-mask").addEventListener("click", function () { close(masks); });
  document.getElementById("undo-point").addEventListener("click", function () {
    points.pop();
    redraw();
  });
  document.getElementById("clear-all").addEventListener("click", function () {
    points = [];
    zones.value = "";
    masks.value = "";
    redraw();
  });
  zones.addEventListener("input", redraw);
  masks.addEventListener("input", redraw);
})();
