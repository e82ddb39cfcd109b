// The operator dashboard refreshes itself: every few seconds it asks the JSON endpoint
// (apps/dashboard/views.py, dashboard_data) for the panel rendered again and swaps it in.
// No library; a failed refresh says so and the next one tries again.
(function () {
  "use strict";
  function start() {
    var root = document.getElementById("conveyor-dashboard");
    if (!root) { return; }
    var url = root.getAttribute("data-url");
    function seconds() {
      var panel = root.querySelector(".cv-panel");
      // DASHBOARD_REFRESH_SECONDS, carried by the panel (fractions allowed: the tests poll fast).
      var value = panel && parseFloat(panel.getAttribute("data-refresh-seconds"));
      return value > 0 ? value : 10;
    }
    function showStatus(text) {
      var status = root.querySelector(".cv-status");
      if (status) { status.hidden = !text; status.textContent = text; }
    }
    function refresh() {
      if (document.hidden) { schedule(); return; }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (body) { root.innerHTML = body.html; root.setAttribute("data-refreshed", "1"); })
        .catch(function (error) { showStatus("Refresh failed (" + error.message + "); retrying."); })
        .then(schedule);
    }
    function schedule() { window.setTimeout(refresh, seconds() * 1000); }
    schedule();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
