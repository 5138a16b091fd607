// A form with data-confirm="question" is sent only if the user agrees: the one place for
// confirmations, since our Content-Security-Policy runs no inline onclick/onsubmit.
// (htmx forms use hx-confirm instead.) Without JavaScript the form is sent as it is.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);
