// Progressive enhancement only: every page works without this file.
// - keeps relative times ("3 min ago") current while a page stays open;
// - messages list: "select all" and a count of ticked rows;
// - replay preview: the estimated duration follows the rate typed in;
// - replay job page: polls GET /api/replays/{id} every second and updates the figures,
//   the progress bar, the status and which controls apply, until the job is final;
// - replay jobs list: polls GET /api/replays every two seconds while a listed job is open
//   and updates its row the same way;
// - a POST form is sent once even when its button is pressed twice.
(function () {
  "use strict";

  function relative(ms) {
    var secs = Math.round((Date.now() - ms) / 1000);
    var abs = Math.abs(secs), n, unit;
    if (abs < 60) { n = abs; unit = "s"; }
    else if (abs < 3600) { n = Math.floor(abs / 60); unit = "min"; }
    else if (abs < 86400) { n = Math.floor(abs / 3600); unit = "h"; }
    else { n = Math.floor(abs / 86400); unit = "d"; }
    return secs < 0 ? "in " + n + " " + unit : n + " " + unit + " ago";
  }
  function tick() {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(t)) { el.textContent = relative(t); }
    });
  }
  setInterval(tick, 15000);

  // Same words as replay_pages::duration on the server.
  function duration(secs) {
    if (!isFinite(secs)) { return "\u2013"; }
    if (secs < 1) { return "under 1 s"; }
    var s = Math.ceil(secs);
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60) + " s"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function count(n) {
    return Number(n).toLocaleString("en-US");
  }
  // Same format as view::time on the server: 2026-11-22 09:15:03 UTC.
  function utc(iso) {
    var t = new Date(iso);
    if (isNaN(t.getTime())) { return "\u2013"; }
    return t.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  // Messages list: select all on this page, and how many are ticked.
  var bulk = document.getElementById("bulk");
  if (bulk) {
    var boxes = bulk.querySelectorAll('input[type="checkbox"][name="message"]');
    var head = bulk.querySelector("th[data-select-all]");
    var counter = bulk.querySelector("[data-selected-count]");
    var all = null;
    var update = function () {
      var ticked = 0;
      boxes.forEach(function (b) { if (b.checked) { ticked += 1; } });
      if (counter) { counter.textContent = ticked ? " (" + ticked + ")" : ""; }
      if (all) {
        all.checked = ticked === boxes.length;
        all.indeterminate = ticked > 0 && ticked < boxes.length;
      }
    };
    if (head && boxes.length) {
      all = document.createElement("input");
      all.type = "checkbox";
      all.setAttribute("aria-label", "Select all messages on this page");
      head.appendChild(all);
      all.addEventListener("change", function () {
        boxes.forEach(function (b) { b.checked = all.checked; });
        update();
      });
    }
    bulk.addEventListener("change", update);
    update();
  }

  // Preview: the estimate at the rate typed in.
  var rate = document.querySelector("input[data-rate]");
  var estimate = document.querySelector("[data-estimate]");
  if (rate && estimate) {
    rate.addEventListener("input", function () {
      var r = Number(rate.value);
      if (rate.value.trim() === "" || !rate.validity.valid) {
        estimate.textContent = "\u2013 (give a whole number from 0 to 1,000,000)";
        return;
      }
      var n = Number(rate.getAttribute("data-count"));
      if (r === 0) {
        var d = duration(Number(rate.getAttribute("data-unlimited-seconds")));
        estimate.textContent = (d === "under 1 s" ? d : "about " + d) + " (unlimited rate)";
      } else {
        estimate.textContent = duration(Math.ceil(n / r * 10) / 10);
      }
    });
  }

  // A job's figures in `el` (the job page, or one row of the jobs list) from the API's JSON;
  // returns whether the job is final.
  function showJob(el, j) {
    var set = function (name, text) {
      // The funnel repeats a count shown above it (data-funnel), under the same name.
      el.querySelectorAll('[data-field="' + name + '"], [data-funnel="' + name + '"]').forEach(function (e) { e.textContent = text; });
    };
    var done = Math.max(j.total - j.remaining, 0);
    var max = Math.max(j.total, 1);
    var percent = Math.floor(done * 100 / max) + "%";
    el.querySelectorAll('[data-field="status"]').forEach(function (e) {
      e.textContent = j.status.replace(/_/g, " ");
      e.className = "badge st-" + j.status;
    });
    ["sent", "failed", "remaining", "refused", "cancelled", "consumed", "failed_again", "awaiting_consumption"].forEach(function (k) {
      if (j[k] !== undefined) { set(k, count(j[k])); }
    });
    el.querySelectorAll('progress[data-field="progress"]').forEach(function (p) {
      p.max = max;
      p.value = done;
      p.textContent = percent;
    });
    set("percent", percent);
    // A running job held up by a write fault says why; the notice goes once it goes on.
    el.querySelectorAll('[data-field="waiting_on"]').forEach(function (e) {
      e.textContent = j.waiting_on || "";
      e.hidden = !j.waiting_on;
    });
    set("eta", j.eta_seconds === null || j.eta_seconds === undefined || j.status === "paused" ? "\u2013" : duration(j.eta_seconds));
    set("started_at", j.started_at ? utc(j.started_at) : "\u2013");
    set("finished_at", j.finished_at ? utc(j.finished_at) : "\u2013");
    el.querySelectorAll("form[data-when]").forEach(function (f) {
      f.hidden = f.getAttribute("data-when").split(" ").indexOf(j.status) < 0;
    });
    var final = ["completed", "completed_with_failures", "cancelled"].indexOf(j.status) >= 0;
    if (final) { el.setAttribute("data-final", "true"); }
    return final;
  }

  // Poll `url` every `ms` while the tab is visible; `apply` gets the JSON and returns true
  // when no more polling is needed.
  function poll(url, ms, apply) {
    var next = function () {
      if (document.hidden) { setTimeout(next, ms); return; }
      fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) { return j ? apply(j) : false; }, function () { return false; })
        .then(function (done) { if (!done) { setTimeout(next, ms); } });
    };
    setTimeout(next, ms);
  }

  // Job page: live figures while the job is not final, and while delivered messages wait
  // to be consumed (the funnel fills in as the consumer group commits).
  var job = document.querySelector(".job[data-job]");
  var following = function (j) {
    return j.awaiting_consumption > 0 && j.consumer_groups.some(function (g) { return g.tracked; });
  };
  if (job && (job.getAttribute("data-final") !== "true" || job.getAttribute("data-following") === "true")) {
    // A job is final as soon as it is cancelled; its last counts settle a moment later, so
    // polling goes on until nothing is left, or a few more times.
    var afterFinal = 0;
    var wasFinal = job.getAttribute("data-final") === "true";
    poll("/api/replays/" + encodeURIComponent(job.getAttribute("data-job")), 1000, function (j) {
      if (!showJob(job, j)) { return false; }
      var notice = job.querySelector("[data-finished-notice]");
      if (notice && !wasFinal) { notice.hidden = false; }
      afterFinal += 1;
      return (j.remaining === 0 || afterFinal > 10) && !following(j);
    });
  }

  // Jobs list: live rows while any listed job is not final.
  var rows = document.querySelectorAll("tr[data-job]");
  var anyOpen = Array.prototype.some.call(rows, function (r) { return r.getAttribute("data-final") !== "true"; });
  if (anyOpen) {
    poll("/api/replays", 2000, function (jobs) {
      var open = false;
      rows.forEach(function (row) {
        if (row.getAttribute("data-final") === "true") { return; }
        var j = jobs.filter(function (x) { return x.id === row.getAttribute("data-job"); })[0];
        if (j && !showJob(row, j)) { open = true; }
      });
      return !open;
    });
  }

  // Demo page: the stage counters and the live latency follow /api/demo.
  var demo = document.querySelector("[data-demo-live]");
  if (demo) {
    // A cell's field is a key of the JSON, under "payments." for the payments service, and
    // "retried.TOPIC" for a retry topic's count (topic names hold dots).
    var demoValue = function (j, field) {
      var o = j;
      if (field.indexOf("payments.") === 0) { o = j.payments || {}; field = field.slice(9); }
      if (field.indexOf("retried.") === 0) { return (o.retried || {})[field.slice(8)] || 0; }
      return o[field];
    };
    poll("/api/demo", 1000, function (j) {
      demo.querySelectorAll("[data-demo-field]").forEach(function (cell) {
        var v = demoValue(j, cell.getAttribute("data-demo-field"));
        if (typeof v === "number") { cell.textContent = count(v); }
      });
      var l = j.live_latency_ms;
      var el = demo.querySelector("[data-demo-latency]");
      if (el && l) {
        el.textContent = "Live processing latency: " + (l.samples === 0
          ? "no live event processed in the last 10 s"
          : "p50 " + l.p50 + " ms \u00b7 p99 " + l.p99 + " ms over " + count(l.samples) + " live events in the last 10 s");
      }
      return false;
    });
  }

  // Send a POST form once: a second press while the first is on its way does nothing.
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (!f || (f.getAttribute("method") || "").toLowerCase() !== "post") { return; }
    if (f.getAttribute("data-sent")) { e.preventDefault(); return; }
    f.setAttribute("data-sent", "1");
  });
  // Coming back to a page from the back/forward cache makes its forms usable again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-sent]").forEach(function (f) { f.removeAttribute("data-sent"); });
  });
})();
