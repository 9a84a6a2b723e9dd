// Keeps "3 min ago" fresh on an open status page. The server already wrote the words
// (so the page reads right without script); the exact UTC time stays in the title.
(function () {
  "use strict";
  function words(seconds) {
    var future = seconds < 0, s = Math.abs(seconds), amount;
    if (s < 45) return future ? "in a few seconds" : "just now";
    var minutes = Math.round(s / 60);
    if (minutes < 90) amount = minutes + " min";
    else if (s < 36 * 3600) amount = Math.round(s / 3600) + " h";
    else { var days = Math.round(s / 86400); amount = days + (days === 1 ? " day" : " days"); }
    return future ? "in " + amount : amount + " ago";
  }
  function refresh() {
    var now = Date.now();
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      var seconds = (now - at) / 1000;
      if (el.getAttribute("data-relative") === "past" && seconds < 0 && seconds > -60) seconds = 0;  // clocks differ
      el.textContent = words(seconds);
    });
  }
  document.addEventListener("DOMContentLoaded", refresh);
  setInterval(refresh, 30000);
})();
