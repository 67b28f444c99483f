// openlfr operator console: live alerts (Server-Sent Events), in-place decisions, keyboard
// shortcuts, enlarged images and an optional notification for new alerts.
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
    // one more alert matches (the count is the total of every page, from the server)
    var count = $("#queue-count");
    if (count) { count.textContent = String((parseInt(count.textContent, 10) || 0) + 1); }
    var empty = $("#queue-empty");
    if (empty) { empty.hidden = queue.querySelectorAll("article.alert-card").length > 0; }
  }

  // -- desktop notification and sound for a new alert (off unless this browser turned it on) --
  var NOTIFY_KEY = "openlfr.alertNotify";
  var audio = null;

  function notifyOn() {
    try { return window.localStorage.getItem(NOTIFY_KEY) === "on"; } catch (e) { return false; }
  }

  function notifyState() {
    var state = $("#notify-state");
    if (!state) { return; }
    if (!notifyOn()) { state.textContent = ""; return; }
    if (!("Notification" in window)) {
      state.textContent = "sound only: this browser shows no desktop notifications";
    } else if (Notification.permission === "denied") {
      state.textContent = "sound only: notifications are blocked in this browser's settings";
    } else if (Notification.permission === "granted") {
      state.textContent = "on";
    } else {
      state.textContent = "sound only until the browser is allowed to show notifications";
    }
  }

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return; }
      audio = audio || new Ctx();
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.15;
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound: the page still shows the alert */ }
  }

  function announce(data) {
    if (!notifyOn()) { return; }
    beep();
    if (!("Notification" in window) || Notification.permission !== "granted") { return; }
    try {
      // words only: no face ever leaves the page
      var n = new Notification("Possible match: alert " + data.id, {
        body: (data.deployment || "") + ", camera " + data.camera + ", score " + Number(data.score).toFixed(3),
        tag: "openlfr-alert-" + data.id
      });
      n.onclick = function () { window.focus(); window.location.href = data.url; };
    } catch (e) { /* e.g. notifications only from a service worker: the sound was played */ }
  }

  function setUpNotify() {
    var box = $("#notify-new");
    if (!box) { return; }
    box.checked = notifyOn();
    notifyState();
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(NOTIFY_KEY, box.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      if (box.checked) {
        beep(); // created on this click, so that later alerts may play it
        if ("Notification" in window && Notification.permission === "default") {
          Notification.requestPermission().then(notifyState, notifyState);
        }
      }
      notifyState();
    });
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
      if (img && data.crop_url) { img.src = data.crop_url + "&in=card"; }
      var score = existing.querySelector("[data-score]");
      if (score) { score.textContent = Number(data.score).toFixed(3); }
      return;
    }
    if (Number(data.revision) > 0) { return; }  // a card on another page, or not shown
    var wanted = queue.getAttribute("data-status");
    if (wanted !== "pending" && wanted !== "all") { return; }
    announce(data);
    if (queue.getAttribute("data-live-insert") !== "1") {
      // an older page, or filters the server applies: say so rather than guess
      var note = $("#queue-new");
      if (note) { note.hidden = false; }
      return;
    }
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

  // -- enlarging the two images, side by side at full resolution, in a dialog ----------------
  function openEnlarge(button) {
    var dialog = document.getElementById(button.getAttribute("data-enlarge"));
    if (!dialog || typeof dialog.showModal !== "function") { return; }
    dialog.querySelectorAll("img[data-src]").forEach(function (img) {
      if (!img.getAttribute("src")) { img.src = img.getAttribute("data-src"); }
    });
    dialog.showModal();
    var close = dialog.querySelector("[data-close]");
    if (close) { close.focus(); }
    dialog.addEventListener("close", function () { button.focus(); }, { once: true });
  }

  document.addEventListener("click", function (e) {
    var button = e.target instanceof Element ? e.target.closest("[data-enlarge]") : null;
    if (button) { e.preventDefault(); openEnlarge(button); return; }
    var dialog = e.target instanceof HTMLDialogElement ? e.target : null;
    if (dialog && dialog.open) { dialog.close(); }  // a click on the backdrop
  });

  // -- keyboard shortcuts: c confirm, r reject, n no action, e enlarge, j/k next/previous ----
  var KEYS = { c: "confirm", r: "reject", n: "no_action" };

  function typing(el) {
    if (!el || !(el instanceof Element)) { return false; }
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") { return true; }
    if (el.tagName !== "INPUT") { return false; }
    return ["radio", "checkbox", "button", "submit", "reset"].indexOf(el.type) < 0;
  }

  function cards() { return Array.prototype.slice.call(document.querySelectorAll("article.alert-card")); }

  function currentCard() {
    var active = document.activeElement;
    var inside = active && active.closest ? active.closest("article.alert-card") : null;
    if (inside) { return inside; }
    var chosen = $("article.alert-card.selected");
    if (chosen) { return chosen; }
    var all = cards();
    for (var i = 0; i < all.length; i++) { if (all[i].querySelector("form.decide")) { return all[i]; } }
    return all[0] || null;
  }

  function select(card) {
    cards().forEach(function (c) { c.classList.remove("selected"); });
    card.classList.add("selected");
    card.setAttribute("tabindex", "-1");
    card.focus();
    card.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.repeat) { return; }
    if (typing(e.target) || document.querySelector("dialog[open]")) { return; }
    var key = (e.key || "").toLowerCase();
    var card;
    if (key === "j" || key === "k") {
      var all = cards();
      if (!all.length) { return; }
      var at = all.indexOf(currentCard());
      var next = all[Math.max(0, Math.min(all.length - 1, at + (key === "j" ? 1 : -1)))];
      e.preventDefault();
      select(next);
      return;
    }
    card = currentCard();
    if (!card) { return; }
    if (key === "e") {
      var enlarge = card.querySelector("[data-enlarge]");
      if (enlarge) { e.preventDefault(); openEnlarge(enlarge); }
      return;
    }
    var decision = KEYS[key];
    if (!decision) { return; }
    var form = card.querySelector("form.decide");
    var button = form && form.querySelector("button[value=" + decision + "]");
    if (!button || button.disabled) { return; }
    e.preventDefault();
    if (typeof form.requestSubmit === "function") { form.requestSubmit(button); } else { button.click(); }
  });

  document.documentElement.classList.add("js-keys");

  document.addEventListener("DOMContentLoaded", function () {
    setUpNotify();
    var queue = document.getElementById("alert-queue");
    if (queue) { connect(queue); }
  });
})();
