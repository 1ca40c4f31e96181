// Hauswacht dashboard: reload the page every data-refresh seconds unless paused.
// The page URL carries the range and filters, so a reload keeps them. A one-time
// notice parameter ("changed", set after a status change) is dropped on reload.
// The pause switch is remembered in localStorage for all dashboard pages.
(function () {
  "use strict";
  var KEY = "hauswacht.autoRefresh";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var toggle = document.getElementById("auto-refresh");
  var active = true;
  var timer = null;

  try {
    active = window.localStorage.getItem(KEY) !== "off";
  } catch (error) {
    active = true; // storage blocked: refresh, and the switch works for this page only
  }

  function refreshUrl() {
    var url = new URL(window.location.href);
    url.searchParams.delete("changed");
    return url.toString();
  }

  function schedule() {
    if (timer !== null) {
      window.clearTimeout(timer);
      timer = null;
    }
    if (seconds > 0 && active) {
      timer = window.setTimeout(function () {
        window.location.replace(refreshUrl());
      }, seconds * 1000);
    }
  }

  if (toggle) {
    toggle.checked = active;
    toggle.addEventListener("change", function () {
      active = toggle.checked;
      try {
        window.localStorage.setItem(KEY, active ? "on" : "off");
      } catch (error) {
        // storage blocked: the choice holds until the page is left
      }
      schedule();
    });
  }
  schedule();
})();
