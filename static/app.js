// Progressive enhancement only: every page works without this file.
// Keeps relative times ("3 min ago") current while a page stays open.
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
})();
