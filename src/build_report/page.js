// The page reads the same without this script: it links a step's bar, node and table row
// (hovering one highlights the others, clicking one shows its row) and filters the table.
(function () {
  "use strict";
  function sameStep(id) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-step]"), function (el) {
      return el.getAttribute("data-step") === id;
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-step]"), function (el) {
    var id = el.getAttribute("data-step");
    el.addEventListener("mouseenter", function () {
      sameStep(id).forEach(function (other) { other.classList.add("hl"); });
    });
    el.addEventListener("mouseleave", function () {
      sameStep(id).forEach(function (other) { other.classList.remove("hl"); });
    });
    if (el.tagName.toLowerCase() === "g") {
      el.style.cursor = "pointer";
      el.addEventListener("click", function () {
        var row = sameStep(id).filter(function (other) { return other.tagName.toLowerCase() === "tr"; })[0];
        if (row) {
          row.classList.remove("hidden");
          row.scrollIntoView({ block: "center" });
        }
      });
    }
  });
  var filters = document.querySelector(".filters");
  if (filters) {
    filters.hidden = false;
    Array.prototype.forEach.call(filters.querySelectorAll("button"), function (button) {
      button.addEventListener("click", function () {
        var wanted = button.getAttribute("data-filter");
        Array.prototype.forEach.call(filters.querySelectorAll("button"), function (b) { b.classList.toggle("active", b === button); });
        Array.prototype.forEach.call(document.querySelectorAll("tr.step-row"), function (row) {
          row.classList.toggle("hidden", wanted !== "all" && row.getAttribute("data-outcome") !== wanted);
        });
      });
    });
  }
  document.documentElement.setAttribute("data-ready", "true");
})();
