// Page behaviour shared by every page (loaded by templates/base.html; no inline script,
// so a strict Content-Security-Policy can forbid it).
//
// 1. After a refused form, the focus moves to its error summary (`data-focus-on-load`),
//    so a keyboard or screen-reader user starts from what went wrong.
// 2. An htmx action that fails (signed out, refused, server error, no network) shows its
//    message next to the button that was pressed, in an alert that screen readers
//    announce, instead of at the top of the page where nobody looks.
// 3. A live search's page kept by htmx for Back shows, in its boxes, the search its list
//    shows: htmx keeps the page's HTML, where a typed value is not (and the box holds the
//    next search already, typed after the list was swapped in).
// 4. A page that answers a POST to show a secret once (`data-replace-url`: the secret
//    must not travel in a redirect) takes its GET address in the history, so a reload
//    shows the page without the secret instead of sending the POST again.
(function () {
  "use strict";

  function focusFirst(root) {
    var target = root.querySelector ? root.querySelector("[data-focus-on-load]") : null;
    if (target) {
      target.focus();
    }
  }

  // The element the message belongs next to: the action's form, else the element itself.
  function actionAnchor(element) {
    if (!element || !element.closest) return null;
    return element.closest("form") || element;
  }

  function feedbackFor(anchor) {
    var next = anchor.nextElementSibling;
    if (next && next.classList.contains("action-feedback")) return next;
    var box = document.createElement("div");
    box.className = "action-feedback";
    box.setAttribute("role", "alert"); // announced when its content changes
    anchor.insertAdjacentElement("afterend", box);
    return box;
  }

  function showNextTo(element, html) {
    var anchor = actionAnchor(element);
    if (!anchor || !anchor.isConnected) return false;
    var box = feedbackFor(anchor);
    box.innerHTML = "";
    // A new child after the region exists: screen readers announce the change.
    window.setTimeout(function () { box.innerHTML = html; }, 50);
    return true;
  }

  function textAlert(message) {
    var alert = document.createElement("div");
    alert.className = "flash flash-error";
    alert.textContent = message;
    return alert.outerHTML;
  }

  function replaceUrl() {
    var marked = document.querySelector("[data-replace-url]");
    if (marked && window.history && window.history.replaceState) {
      window.history.replaceState(null, "", marked.getAttribute("data-replace-url"));
    }
  }

  document.addEventListener("DOMContentLoaded", function () { focusFirst(document); replaceUrl(); });
  document.addEventListener("htmx:afterSettle", function (event) { focusFirst(event.target); });

  // Our refusals carry X-Action-Error (crm_app/web/htmx.py htmx_alert): shown by the action.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || !xhr.getResponseHeader("X-Action-Error")) return;
    if (showNextTo(event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt,
                   xhr.responseText)) {
      event.detail.shouldSwap = false;
      event.detail.isError = false; // handled here: no second message below
    }
  });

  // An error answer without our alert (a proxy's 502, a crash before our handler). A
  // 4xx is a refusal, not a fault on our side that trying again might get past.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var status = xhr ? xhr.status : 0;
    if (xhr && xhr.getResponseHeader("X-Action-Error")) return;
    showNextTo(event.detail.elt, textAlert(status >= 400 && status < 500
      ? "This action was refused (" + status + "), so nothing was saved. Reload the page to see where things stand."
      : "Something went wrong on our side (" + (status || "?") + "). Nothing was saved; please try again."));
  });

  // htmx:beforeHistorySave comes before the snapshot of the page that `path` shows, so
  // its search forms' values are written where the snapshot keeps them: the value
  // attributes, from the path's query. A typed value on screen stays as it is.
  var TYPED = ["text", "search", "email", "number", "tel", "url", "date"];
  document.addEventListener("htmx:beforeHistorySave", function (event) {
    var query = new URL(event.detail.path, window.location.href).searchParams;
    var forms = event.detail.historyElt.querySelectorAll("form[hx-push-url]");
    Array.prototype.forEach.call(forms, function (form) {
      Array.prototype.forEach.call(form.elements, function (field) {
        var shown = query.get(field.name) || "";
        var live = field.value; // an untouched box would follow its attribute: kept
        if (!field.name) return;
        if (field.tagName === "INPUT" && TYPED.indexOf(field.type) >= 0) {
          field.setAttribute("value", shown);
        } else if (field.tagName === "SELECT" && !field.multiple) {
          Array.prototype.forEach.call(field.options, function (option) {
            option.toggleAttribute("selected", option.value === shown);
          });
        } else {
          return;
        }
        field.value = live;
      });
    });
  });

  document.addEventListener("htmx:sendError", function (event) {
    showNextTo(event.detail.elt, textAlert(
      "The server could not be reached. Check your connection and try again."));
  });
})();
