// openlfr operator console: live alerts (Server-Sent Events) and in-place decisions.
// Progressive enhancement only: without this file the page lists the alerts, the forms post
// and redirect, and a reload shows new alerts.
"use strict";
(function () {
  function $(sel, root) { return (root || document).querySelector(sel); }

  function fromHtml(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content.querySelector("article.alert-card");
  }

  function busy(card) {
    // someone is filling in this card's form: do not replace it under their hands
    if (card.contains(document.activeElement) && document.activeElement !== document.body) { return true; }
    var fields = card.querySelectorAll("input[type=text], textarea, input[type=radio]:checked, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if ((f.type === "radio" && f.checked) || (f.type !== "radio" && f.value)) { return true; }
    }
    return false;
  }

  function updateCount(queue) {
    var count = $("#queue-count");
    var n = queue.querySelectorAll("article.alert-card").length;
    if (count) { count.textContent = String(n); }
    var empty = $("#queue-empty");
    if (empty) { empty.hidden = n > 0; }
  }

  function loadCard(url, here) {
    var sep = url.indexOf("?") >= 0 ? "&" : "?";
    return fetch(url + sep + "here=" + encodeURIComponent(here), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(fromHtml);
  }

  function onAlert(queue, data) {
    var here = queue.getAttribute("data-here") || "/console/alerts";
    var existing = document.getElementById("alert-" + data.id);
    if (existing) {
      // a better shot of the same person: new crop and score, the form left alone
      var img = existing.querySelector("img[data-crop]");
      if (img && data.crop_url) { img.src = data.crop_url; }
      var score = existing.querySelector("[data-score]");
      if (score) { score.textContent = Number(data.score).toFixed(3); }
      return;
    }
    var wanted = queue.getAttribute("data-status");
    if (wanted === "decided" && data.status === "pending") { return; }
    loadCard(data.card_url, here).then(function (card) {
      if (!card || document.getElementById(card.id)) { return; }
      card.classList.add("new");
      queue.insertBefore(card, queue.firstChild);
      updateCount(queue);
    }).catch(function () { /* the next reload shows it */ });
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text;
    return td;
  }

  function onHealth(rows) {
    var body = $("#health-rows");
    if (!body) { return; }
    var fresh = document.createDocumentFragment();
    if (!rows.length) {
      var tr0 = document.createElement("tr");
      var td0 = cell("No camera is running.", "muted");
      td0.colSpan = 7;
      tr0.appendChild(td0);
      fresh.appendChild(tr0);
    }
    rows.forEach(function (h) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(h.deployment));
      tr.appendChild(cell(h.camera));
      var state = document.createElement("td");
      var span = document.createElement("span");
      span.className = "cam " + (h.connected ? "up" : "down");
      span.setAttribute("data-state", h.state);
      span.textContent = h.label || h.state;
      state.appendChild(span);
      tr.appendChild(state);
      tr.appendChild(cell(String(h.fps_in), "num"));
      tr.appendChild(cell(String(h.fps_processed), "num"));
      tr.appendChild(cell(String(h.dropped), "num"));
      tr.appendChild(cell(String(h.reconnects), "num"));
      fresh.appendChild(tr);
    });
    body.replaceChildren(fresh);
  }

  function connect(queue) {
    var url = queue.getAttribute("data-stream");
    var state = $("#live-state");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url, { withCredentials: true });
    source.addEventListener("open", function () {
      if (state) { state.textContent = "live: new alerts appear here"; state.classList.add("on"); }
    });
    source.addEventListener("error", function () {
      if (state) { state.textContent = "reconnecting…"; state.classList.remove("on"); }
    });
    source.addEventListener("alert", function (e) { onAlert(queue, JSON.parse(e.data)); });
    source.addEventListener("health", function (e) { onHealth(JSON.parse(e.data)); });
    source.addEventListener("resync", function () {
      if (state) { state.textContent = "many alerts at once: reload the page"; }
    });
    source.addEventListener("bye", function (e) {
      source.close();
      var why = JSON.parse(e.data).reason || "the stream ended";
      if (state) { state.textContent = "live updates stopped (" + why + "): reload the page"; state.classList.remove("on"); }
    });
  }

  // Decisions and outcomes without leaving the page: the server answers with the new card.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-enhance")) { return; }
    var card = form.closest("article.alert-card");
    if (!card || !window.openlfrFetch) { return; }
    e.preventDefault();
    var body = new FormData(form, e.submitter || undefined);
    body.append("fragment", "1");
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    // getAttribute: a field named "action" shadows form.action
    window.openlfrFetch(form.getAttribute("action"), { method: "POST", body: body })
      .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, text: t }; }); })
      .then(function (res) {
        var fresh = fromHtml(res.text);
        if (fresh) {
          card.replaceWith(fresh);
          var focus = fresh.querySelector(".notice") || fresh.querySelector("h2 a");
          if (focus) { focus.setAttribute("tabindex", "-1"); focus.focus(); }
        } else {
          form.submit(); // not a card: let the browser show the answer
        }
      })
      .catch(function () { form.submit(); });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var queue = document.getElementById("alert-queue");
    if (queue) { connect(queue); }
  });
})();
