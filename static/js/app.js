// Polls (hx-trigger="every …") pause while the tab is hidden: htmx asks for confirmation before
// each request, and a hidden tab declines. Written here rather than as an hx-trigger filter
// ([document.visibilityState === 'visible']), which htmx evaluates with Function() and so needs
// 'unsafe-eval' in the Content-Security-Policy.
document.addEventListener("htmx:confirm", function (event) {
  var source = event.target;
  if (document.hidden && source.matches && source.matches("[hx-trigger^='every ']")) {
    event.preventDefault();
  }
});

// A ?live=1 address (the page without JavaScript, reloading itself every few seconds) opened
// with JavaScript on, from a bookmark or a shared link: htmx polls here, and a reload would
// throw the reader's place and focus away every few seconds. Load it without.
(function () {
  var params = new URLSearchParams(location.search);
  if (params.get("live") !== "1") return;
  params.delete("live");
  var query = params.toString();
  location.replace(location.pathname + (query ? "?" + query : "") + location.hash);
})();

// Confirmation: a form with data-confirm asks first, in the page's <dialog>, with the verbs the
// form names (data-confirm-yes / data-confirm-no). Only "yes" lets htmx send the request.
// The answer is read from the dialog form's submit (which names its button), not from the
// dialog's "close" event: that event is queued, and a late one from an earlier question (answered
// "no") could otherwise be taken for the answer to the next.
var pendingRequest = null;
document.addEventListener("htmx:confirm", function (event) {
  var form = event.detail.elt;
  if (!form || !form.dataset || !form.dataset.confirm || event.defaultPrevented) return;
  var dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") return;
  event.preventDefault();
  dialog.querySelector("#confirm-question").textContent = form.dataset.confirm;
  dialog.querySelector("[data-confirm-yes]").textContent = form.dataset.confirmYes || "Yes";
  dialog.querySelector("[data-confirm-no]").textContent = form.dataset.confirmNo || "No";
  pendingRequest = event.detail.issueRequest;
  dialog.showModal();
});
document.addEventListener("submit", function (event) {
  if (!event.target.parentElement || event.target.parentElement.id !== "confirm-dialog") return;
  var issueRequest = pendingRequest;
  pendingRequest = null;
  if (issueRequest && event.submitter && event.submitter.value === "confirm") issueRequest(true);
});

// Focus: when a panel is swapped (after Start, Cancel, Retry, or a change of status), the
// element that had focus is gone. Put it back on the same control in the new panel if it is
// there and usable, else on the panel's next action, else on its notice or its summary.
var focusKeyBeforeSwap = null;
document.addEventListener("htmx:beforeRequest", function (event) {
  // A form's own button is disabled while it posts (hx-disabled-elt), which may drop focus
  // before the swap: remember the button now.
  var form = event.detail.elt;
  if (form && form.tagName === "FORM" && form.closest(".batch-panel")) {
    var button = form.querySelector("[data-focus-key]");
    focusKeyBeforeSwap = button ? button.getAttribute("data-focus-key") : "";
  }
});
document.addEventListener("htmx:beforeSwap", function (event) {
  var active = document.activeElement;
  var target = event.detail.target;
  if (active && active !== document.body && target && target.contains(active)) {
    focusKeyBeforeSwap = active.getAttribute("data-focus-key") || "";
  }
});
document.addEventListener("htmx:afterSettle", function (event) {
  if (focusKeyBeforeSwap === null || event.target.nodeType !== 1) return;
  var key = focusKeyBeforeSwap;
  focusKeyBeforeSwap = null;
  if (document.activeElement && document.activeElement !== document.body && document.activeElement.isConnected) return;
  var panel = event.target.closest(".batch-panel") || document.querySelector(".batch-panel");
  if (!panel) return;
  var candidates = [];
  if (key) candidates.push('[data-focus-key="' + key + '"]');
  candidates.push('[data-focus-key="cancel"]', '[data-focus-key="retry"]', "[data-focus-fallback]");
  for (var i = 0; i < candidates.length; i++) {
    var element = panel.querySelector(candidates[i]);
    if (element && !element.disabled) {
      element.focus();
      return;
    }
  }
});

// Announcements, through the page's one live region: a change of state once, progress each
// 25%, a panel's notice when it comes. Nothing is announced on the first load.
var announced = {};
var PROGRESS_STEP = 25;
function say(text) {
  var region = document.getElementById("announcer");
  if (!region || !text) return;
  region.textContent = text;
}
function noteLive(live, speak) {
  var batch = live.getAttribute("data-batch");
  var state = live.getAttribute("data-state");
  var step = Math.floor(Number(live.getAttribute("data-percent")) / PROGRESS_STEP);
  var before = announced[batch];
  announced[batch] = { state: state, step: step };
  if (!speak) return "";
  if (!before || before.state !== state) return live.getAttribute("data-announce");
  if (step > before.step && state === "running") return live.getAttribute("data-progress");
  return "";
}
function localiseTimes(root) {
  var times = root.querySelectorAll("time[data-local]");
  for (var i = 0; i < times.length; i++) {
    var time = times[i];
    var moment = new Date(time.getAttribute("datetime"));
    if (isNaN(moment)) continue;
    var options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (time.getAttribute("data-local") === "datetime") {
      options = { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    }
    time.textContent = moment.toLocaleString(undefined, options);
    time.title = moment.toLocaleString(undefined, { dateStyle: "full", timeStyle: "long" });
  }
}
document.addEventListener("DOMContentLoaded", function () {
  var lives = document.querySelectorAll(".batch-live");
  for (var i = 0; i < lives.length; i++) noteLive(lives[i], false);
  localiseTimes(document);
});
document.addEventListener("htmx:afterSettle", function (event) {
  var root = event.target;  // the element swapped in (detail.elt is the one that asked)
  if (!root || root.nodeType !== 1) return;
  var parts = [];
  var notice = root.matches(".batch-panel") ? root.querySelector(".notice") : null;
  if (notice) parts.push(notice.textContent.trim());
  var lives = root.matches(".batch-live") ? [root] : root.querySelectorAll(".batch-live");
  for (var i = 0; i < lives.length; i++) {
    var text = noteLive(lives[i], true);
    if (text) parts.push(text);
  }
  if (parts.length) say(parts.join(" "));
  localiseTimes(root.parentNode || document);
});
