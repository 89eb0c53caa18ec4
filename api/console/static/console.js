// RemoteGPU console: live parts over server-sent events, copy buttons, confirmations, local times.
// No framework and no storage: the session is an HttpOnly cookie this script never sees.
(function () {
  "use strict";

  // <time datetime="…Z"> in the viewer's time zone (the server writes UTC).
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (!isNaN(moment)) {
        el.textContent = moment.toLocaleString(undefined, {
          year: "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
        });
        el.title = el.getAttribute("datetime");
      }
    });
  }

  // Each [data-live] opens one stream; `swap` events replace the element named by their target, unless
  // it already shows that HTML (a reconnected stream sends every part again).
  var shown = {};
  function live() {
    document.querySelectorAll("[data-live]").forEach(function (marker) {
      var source = new EventSource(marker.getAttribute("data-live"));
      source.addEventListener("swap", function (event) {
        var part = JSON.parse(event.data);
        var target = document.getElementById(part.target);
        if (!target || shown[part.target] === part.html) { return; }
        shown[part.target] = part.html;
        var focused = document.activeElement && target.contains(document.activeElement)
          ? document.activeElement.id : null;
        target.innerHTML = part.html;
        localTimes(target);
        if (focused) { var again = document.getElementById(focused); if (again) { again.focus(); } }
      });
      source.addEventListener("ended", function () { source.close(); });
    });
  }

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    }, function () {
      button.textContent = "Select and copy";
    });
  });

  // Forms that change or delete something ask first.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  // Selects that filter the page apply on change.
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) { event.target.form.submit(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    live();
  });
})();
