// The batch panel's behaviour on any page that loads it ({% batches_assets %}, batches/web/templatetags/
// batches.py): it needs nothing else from the page. It creates the confirmation dialog and the live
// region it uses, swaps in a panel's own refusals (400, 429), and runs under a strict
// Content-Security-Policy: no eval, no inline script or style.

// htmx would add its request-indicator rules as an inline <style>, which such a policy blocks (a
// console error on every page): batches.css carries the same rules. Set before htmx starts (it
// reads its config when the document is parsed; this script runs just before that). A page's own
// htmx-config <meta> still has the last word.
if (window.htmx) window.htmx.config.includeIndicatorStyles = false;

// Polls (hx-trigger="every …") pause while the tab is hidden: htmx asks for confirmation before
// each request, and a hidden tab declines. Written here rather than as an hx-trigger filter
// ([document.visibilityState === 'visible']), which htmx evaluates with Function() and so needs
// 'unsafe-eval' in the Content-Security-Policy.
// After a failed poll the next ones wait longer (see "Failed requests" below): declined here too.
function isPoll(element) {
  return !!(element && element.matches && element.matches("[hx-trigger^='every ']"));
}
// With browser notifications on (below), a hidden tab still polls, every HIDDEN_POLL_MS at most,
// so that it learns a batch has ended and can say so.
var HIDDEN_POLL_MS = 5000;
var hiddenPolledAt = new WeakMap();
document.addEventListener("htmx:confirm", function (event) {
  var source = event.target;
  if (!isPoll(source)) return;
  var backoff = pollBackoff.get(source);
  if (backoff && Date.now() < backoff.retryAt) return event.preventDefault();
  if (!document.hidden) return;
  if (!browserNotifying() || Date.now() - (hiddenPolledAt.get(source) || 0) < HIDDEN_POLL_MS) return event.preventDefault();
  hiddenPolledAt.set(source, Date.now());
});

// Browser notifications (progressive enhancement): where the browser has the Notification API, the
// panel's "Notify me in this browser" button appears; once the person says yes (the browser asks
// for its permission), a batch that ends while this tab is in the background is told by a system
// notification. The choice is this browser's (localStorage), for every panel of the site.
var NOTIFY_KEY = "batches.browser-notify";
function notificationsAvailable() {
  return "Notification" in window && window.Notification.permission !== "denied";
}
function browserNotifying() {
  try {
    return notificationsAvailable() && window.Notification.permission === "granted" && localStorage.getItem(NOTIFY_KEY) === "on";
  } catch (error) {
    return false;  // storage refused
  }
}
function showNotifyButtons(root) {
  var holders = (root || document).querySelectorAll("[data-browser-notify]");
  for (var i = 0; i < holders.length; i++) {
    var holder = holders[i];
    holder.hidden = !notificationsAvailable();
    var button = holder.querySelector("button");
    var on = browserNotifying();
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? "Browser notifications on (turn off)" : "Notify me in this browser";
  }
}
document.addEventListener("DOMContentLoaded", function () { showNotifyButtons(document); });
document.addEventListener("htmx:load", function (event) { showNotifyButtons(event.target); });
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-browser-notify] button");
  if (!button) return;
  if (browserNotifying()) {
    localStorage.setItem(NOTIFY_KEY, "off");
    showNotifyButtons(document);
    return;
  }
  var asked = window.Notification.requestPermission();
  Promise.resolve(asked).then(function (permission) {
    if (permission === "granted") localStorage.setItem(NOTIFY_KEY, "on");
    showNotifyButtons(document);
  });
});
var ENDED_AS = { finished: "finished", failed: "failed", cancelled: "was cancelled" };
document.addEventListener("batch-ended", function (event) {
  var detail = event.detail || {};
  if (!document.hidden || !browserNotifying() || !detail.batch) return;
  var panel = event.target.closest && event.target.closest(".batch-panel");
  var label = (panel && panel.getAttribute("aria-label")) || "Batch";
  var note = new window.Notification(label + " " + (ENDED_AS[detail.status] || "ended"), {
    body: "Batch #" + detail.batch + " " + (ENDED_AS[detail.status] || "ended") + ".",
    tag: "batch-" + detail.batch,  // one per batch, however many tabs show it
  });
  note.onclick = function () { window.focus(); note.close(); };
});

// Times: the server writes them all (batches/formats.py), in the zone this cookie names, so that a
// first render, a swapped fragment and an announcement say the same. Set on the first page
// (the login page, for most) and whenever the browser's zone changes; true when it was set now.
var zoneCookieSet = (function () {
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return false;
  }
  // IANA names ("America/New_York") are valid cookie values as they are: the server reads them so.
  var cookie = "tz=" + zone;
  if (!/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone) || document.cookie.split("; ").indexOf(cookie) !== -1) return false;
  var secure = location.protocol === "https:" ? "; secure" : "";
  document.cookie = cookie + "; path=/; max-age=31536000; samesite=lax" + secure;
  return document.cookie.split("; ").indexOf(cookie) !== -1;  // not when cookies are refused
})();

// A ?live=1 address (the page without JavaScript, reloading itself every few seconds) opened
// with JavaScript on, from a bookmark or a shared link: htmx polls here, and a reload would
// throw the reader's place and focus away every few seconds. Load it without.
// Else, a page whose times were just written in another zone than the browser's (no cookie yet:
// a session older than it) loads once more, so that its polls do not swap in times that differ.
(function () {
  var params = new URLSearchParams(location.search);
  if (params.get("live") === "1") {
    params.delete("live");
    var query = params.toString();
    location.replace(location.pathname + (query ? "?" + query : "") + location.hash);
  } else if (zoneCookieSet && document.querySelector("time[datetime]")) {
    location.reload();
  }
})();

// Confirmation: a form with data-confirm asks first, in a <dialog> of ours, with the verbs the
// form names (data-confirm-yes / data-confirm-no). Only "yes" lets htmx send the request.
// The answer is read from the dialog form's submit (which names its button), not from the
// dialog's "close" event: that event is queued, and a late one from an earlier question (answered
// "no") could otherwise be taken for the answer to the next.
var CONFIRM_ID = "batches-confirm";
function confirmDialog() {
  var dialog = document.getElementById(CONFIRM_ID);
  if (dialog) return dialog;
  dialog = document.createElement("dialog");
  dialog.id = CONFIRM_ID;
  dialog.className = "batches-dialog";
  dialog.setAttribute("aria-labelledby", CONFIRM_ID + "-question");
  var form = document.createElement("form");
  form.method = "dialog";
  var question = document.createElement("p");
  question.id = CONFIRM_ID + "-question";
  var actions = document.createElement("div");
  actions.className = "actions";
  var yes = document.createElement("button");
  yes.value = "confirm";
  yes.className = "primary";
  yes.setAttribute("data-confirm-yes", "");
  var no = document.createElement("button");
  no.value = "keep";
  no.className = "secondary";
  no.setAttribute("data-confirm-no", "");
  no.autofocus = true;  // the safe answer is the one a stray Enter gives
  actions.append(yes, no);
  form.append(question, actions);
  dialog.append(form);
  document.body.append(dialog);
  return dialog;
}
var pendingRequest = null;
document.addEventListener("htmx:confirm", function (event) {
  var form = event.detail.elt;
  if (!form || !form.dataset || !form.dataset.confirm || event.defaultPrevented) return;
  if (typeof HTMLDialogElement !== "function") return;
  var dialog = confirmDialog();
  event.preventDefault();
  dialog.querySelector("#" + CONFIRM_ID + "-question").textContent = form.dataset.confirm;
  dialog.querySelector("[data-confirm-yes]").textContent = form.dataset.confirmYes || "Yes";
  dialog.querySelector("[data-confirm-no]").textContent = form.dataset.confirmNo || "No";
  pendingRequest = event.detail.issueRequest;
  dialog.showModal();
});
document.addEventListener("submit", function (event) {
  if (!event.target.parentElement || event.target.parentElement.id !== CONFIRM_ID) return;
  var issueRequest = pendingRequest;
  pendingRequest = null;
  if (issueRequest && event.submitter && event.submitter.value === "confirm") issueRequest(true);
});

// A panel's refusals (400: bad input, 429: a per-user limit) come as the panel with its message:
// swapped in like a success. Only a panel's: htmx's defaults stand for the rest of the page.
document.addEventListener("htmx:beforeSwap", function (event) {
  var status = event.detail.xhr.status;
  var target = event.detail.target;
  if ((status === 400 || status === 429) && target && target.closest && target.closest(".batch-panel")) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// Focus: when a panel is swapped (after Start, Cancel, Retry, or a change of status), the
// element that had focus is gone. Put it back on the same control in the new panel if it is
// there and usable, else on the panel's next action, else on its notice or its summary.
var focusKeyBeforeSwap = null;
// The action in flight and its button, kept apart: a poll that lands while it posts must not
// take its place (its button is disabled meanwhile, so focus may already be on the page).
var actionInFlight = null;
document.addEventListener("htmx:beforeRequest", function (event) {
  // A form's own button is disabled while it posts (hx-disabled-elt), which may drop focus
  // before the swap: remember the button now.
  var form = event.detail.elt;
  if (form && form.tagName === "FORM" && form.closest(".batch-panel")) {
    var button = form.querySelector("[data-focus-key]");
    actionInFlight = { form: form, key: button ? button.getAttribute("data-focus-key") : "" };
  }
});
// Its own answer's swap takes the key, and so does any swap once its form is gone (an answer that
// sent htmx elsewhere, HX-Location, settles as another request).
function takeActionFocusKey(elt) {
  if (!actionInFlight || (actionInFlight.form !== elt && actionInFlight.form.isConnected)) return null;
  var key = actionInFlight.key;
  actionInFlight = null;
  return key;
}
document.addEventListener("htmx:beforeSwap", function (event) {
  var active = document.activeElement;
  var target = event.detail.target;
  if (active && active !== document.body && target && target.contains(active)) {
    focusKeyBeforeSwap = active.getAttribute("data-focus-key") || "";
  }
});
document.addEventListener("htmx:afterSettle", function (event) {
  if (event.target.nodeType !== 1) return;
  var actionKey = takeActionFocusKey(event.detail.requestConfig && event.detail.requestConfig.elt);
  var key = actionKey !== null ? actionKey : focusKeyBeforeSwap;
  focusKeyBeforeSwap = null;
  if (key === null) return;
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
// The region is made as the page loads, before anything changes (screen readers announce changes
// to a region they already know), and never replaced.
var announced = {};
var PROGRESS_STEP = 25;
var announcer = (function () {
  var region = document.getElementById("batches-announcer");
  if (region) return region;
  region = document.createElement("div");
  region.id = "batches-announcer";
  region.className = "batches-visually-hidden";
  region.setAttribute("role", "status");
  region.setAttribute("aria-live", "polite");
  region.setAttribute("aria-atomic", "true");
  document.body.append(region);
  return region;
})();
function say(text) {
  if (text) announcer.textContent = text;
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
document.addEventListener("DOMContentLoaded", function () {
  var lives = document.querySelectorAll(".batch-live");
  for (var i = 0; i < lives.length; i++) noteLive(lives[i], false);
});
document.addEventListener("htmx:afterSettle", function (event) {
  var root = event.target;  // the element swapped in (detail.elt is the one that asked)
  if (!root || root.nodeType !== 1) return;
  var parts = [];
  // A panel's notice; or, when a whole batch page came in (Retry goes to the new batch's page), its own.
  var notice = root.matches(".batch-panel") ? root.querySelector(".notice") : root.matches(".batches-page") ? root.querySelector(":scope > .notice") : null;
  if (notice) parts.push(notice.textContent.trim());
  var lives = root.matches(".batch-live") ? [root] : root.querySelectorAll(".batch-live");
  for (var i = 0; i < lives.length; i++) {
    var text = noteLive(lives[i], true);
    if (text) parts.push(text);
  }
  if (parts.length) say(parts.join(" "));
});

// Failed requests. htmx swaps no other error answer in, so the panel that asked keeps its last
// figures and says here what went wrong: the server's own sentence for a 4xx when its answer
// carries one (a `.problem[data-problem]`: batches/web/problems.py draws them; a site may too, for
// signed out or page out of date), "out of date" for one without, "Can't reach the server" for a 5xx or
// no answer at all (a web server restarting). Each message is said once in the live region, and
// focus stays where it was. Polls keep trying, further apart after each failure in a row, and
// their first answer clears what they reported.
var RETRY_AFTER_SECONDS = [1, 2, 4, 5];  // after the 1st, 2nd, 3rd, and every further failure
var pollBackoff = new WeakMap();
function problemSlot(element) {
  var panel = element && element.closest ? element.closest(".batch-panel") : null;
  return (panel && panel.querySelector("[data-problem-slot]")) || pageProblemSlot();
}
// Outside a panel, a page's own [data-problem-slot] says it, if the page has one.
function pageProblemSlot() {
  var slots = document.querySelectorAll("[data-problem-slot]");
  for (var i = 0; i < slots.length; i++) {
    if (!slots[i].closest(".batch-panel")) return slots[i];
  }
  return null;
}
function problemNode(code, text, link) {
  var node = document.createElement("p");
  node.className = "problem";
  node.setAttribute("data-problem", code);
  node.textContent = text;
  if (link) {
    var anchor = document.createElement("a");
    anchor.href = link.href;
    anchor.textContent = link.label;
    node.append(" ", anchor);
  }
  return node;
}
function problemFrom(xhr, poll) {
  var status = xhr ? xhr.status : 0;
  if (status === 0 || status >= 500) {
    return poll
      ? problemNode("unreachable", "Can\u2019t reach the server; retrying\u2026")
      : problemNode("unreachable", "Can\u2019t reach the server; try again in a moment.");
  }
  var said = new DOMParser().parseFromString(xhr.responseText || "", "text/html").querySelector(".problem[data-problem]");
  if (said) return document.importNode(said, true);
  return problemNode("out-of-date", "This page is out of date:", { href: location.href, label: "reload it" });
}
function showProblem(slot, node, fromPoll) {
  var text = node.textContent.trim();
  // A poll failing again the same way is no news; a click that fails again is said again.
  if (fromPoll && slot.getAttribute("data-said") === text) return;
  slot.replaceChildren(node);
  slot.setAttribute("data-said", text);
  slot.setAttribute("data-from", fromPoll ? "poll" : "action");
  say(text);
}
function clearProblem(slot, fromPoll) {
  if (!slot || !slot.hasAttribute("data-said")) return;
  // A poll's answer clears what polls reported; an action's report stays until the next action.
  if (fromPoll && slot.getAttribute("data-from") !== "poll") return;
  slot.replaceChildren();
  slot.removeAttribute("data-said");
  slot.removeAttribute("data-from");
}
document.addEventListener("htmx:afterRequest", function (event) {
  var elt = event.detail.elt;
  if (!elt || !elt.isConnected) return;  // swapped out: its answer is in the page
  var poll = isPoll(elt);
  var xhr = event.detail.xhr;
  // No answer (status 0), or one htmx did not swap in. (An answer that sends htmx elsewhere, such
  // as HX-Location, has neither flag set: not a failure.)
  if (event.detail.failed === true || !xhr || xhr.status === 0) {
    if (!poll) restoreFocusAfterFailure(elt);
    return;
  }
  if (poll) pollBackoff.delete(elt);
  clearProblem(problemSlot(elt), poll);
});
function reportFailure(event) {
  var elt = event.detail.elt;
  if (pageIsLeaving || !elt || !elt.isConnected) return;
  var poll = isPoll(elt);
  if (poll) {
    var before = pollBackoff.get(elt);
    var failures = before ? before.failures + 1 : 1;
    var wait = RETRY_AFTER_SECONDS[Math.min(failures, RETRY_AFTER_SECONDS.length) - 1];
    // A little early, so that a poll due at that moment is not declined by a late timer.
    pollBackoff.set(elt, { failures: failures, retryAt: Date.now() + wait * 1000 - 200 });
  }
  var slot = problemSlot(elt);
  if (slot) showProblem(slot, problemFrom(event.detail.xhr, poll), poll);
}
document.addEventListener("htmx:responseError", reportFailure);  // an answer htmx does not swap in
document.addEventListener("htmx:sendError", reportFailure);  // no answer
document.addEventListener("htmx:timeout", reportFailure);
// A failed action swaps nothing in, but its button was disabled while it posted, which may have
// dropped focus: put it back on that button (htmx enables it again just before afterRequest).
function restoreFocusAfterFailure(form) {
  var key = takeActionFocusKey(form);
  var active = document.activeElement;
  if (!key || (active && active !== document.body && active.isConnected)) return;
  var button = form.querySelector('[data-focus-key="' + key + '"]');
  if (button && !button.disabled) button.focus();
}
// Requests cut off by leaving the page are no failure to report.
var pageIsLeaving = false;
window.addEventListener("pagehide", function () { pageIsLeaving = true; });
window.addEventListener("pageshow", function () { pageIsLeaving = false; });
