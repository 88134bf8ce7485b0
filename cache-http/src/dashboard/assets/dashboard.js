// model-cache admin dashboard: refreshes the live panels every few seconds, with a button to
// pause. No dependencies; the page works without it (it then reloads itself every 30 s).
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  var every = Math.max(1000, Number(live.dataset.every) || 5000);
  var pause = document.getElementById("pause");
  var updated = document.getElementById("updated");
  var paused = false;
  var busy = false;

  function refresh() {
    if (paused || busy || document.hidden) return;
    busy = true;
    fetch(live.dataset.src, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/admin/");
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        live.innerHTML = html;
        live.dataset.refreshed = String(Number(live.dataset.refreshed || 0) + 1);
        if (updated) updated.textContent = "Live";
      })
      .catch(function (err) {
        if (updated) updated.textContent = "Update failed (" + err.message + "); retrying";
      })
      .then(function () { busy = false; });
  }

  if (pause) {
    pause.hidden = false;
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      if (updated) updated.textContent = paused ? "Paused" : "Live";
      if (!paused) refresh();
    });
  }
  if (updated) updated.textContent = "Live";
  document.addEventListener("visibilitychange", refresh);
  window.setInterval(refresh, every);
})();
