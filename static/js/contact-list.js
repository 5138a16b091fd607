// The contact list: a "select every contact on this page" box in the table's heading.
// Without JavaScript the box stays hidden and each row is ticked by hand.
(function () {
  "use strict";

  function rowBoxes(table) {
    return table.querySelectorAll('tbody input[type="checkbox"][name="contact_ids"]');
  }

  function showPageBoxes(root) {
    root.querySelectorAll("input.select-page").forEach(function (box) {
      box.hidden = false;
    });
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    var table = box.closest ? box.closest("table") : null;
    if (!table) return;
    if (box.classList.contains("select-page")) {
      rowBoxes(table).forEach(function (row) { row.checked = box.checked; });
    } else if (box.name === "contact_ids") {
      var all = Array.prototype.every.call(rowBoxes(table), function (row) { return row.checked; });
      var pageBox = table.querySelector("input.select-page");
      if (pageBox) pageBox.checked = all;
    }
  });

  document.addEventListener("DOMContentLoaded", function () { showPageBoxes(document); });
  // The live search swaps the list: its new heading gets the box too.
  document.addEventListener("htmx:afterSettle", function (event) { showPageBoxes(event.target); });
})();
