/* User mapping page: poll the CRM-user fetch until it ends, then reload; and a filter box
   for every CRM-user select (the page works without this script: the selects stay plain and
   the status block refreshes itself). No dependencies. */
(function () {
  "use strict";

  function pollFetchStatus() {
    var box = document.getElementById("fetch-status");
    if (!box || !box.classList.contains("is-active")) return;
    var url = box.getAttribute("data-status-url");
    var message = box.querySelector("[data-role=message]");
    var state = box.querySelector("[data-role=state]");
    var delay = 1000;

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (status) {
          if (message) {
            message.textContent =
              status.message + (status.active && status.fetched ? " (" + status.fetched + " so far)" : "");
          }
          if (state) state.textContent = status.state;
          box.setAttribute("data-state", status.state);
          if (status.active) {
            delay = Math.min(delay * 1.5, 5000);
            window.setTimeout(tick, delay);
          } else {
            window.location.reload();
          }
        })
        .catch(function () {
          window.setTimeout(tick, 5000);
        });
    }
    window.setTimeout(tick, delay);
  }

  function addFilter(select) {
    var input = document.createElement("input");
    input.type = "search";
    input.className = "select-filter";
    input.placeholder = "Filter CRM users…";
    input.setAttribute("aria-label", "Filter the CRM users of the next list");
    select.parentNode.insertBefore(input, select);
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(select.options, function (option) {
        // The automatic and "not mapped" choices are always offered.
        var always = option.value === "auto" || option.value === "";
        var visible = always || !needle || option.text.toLowerCase().indexOf(needle) !== -1;
        option.hidden = !visible;
        option.disabled = !visible && !option.selected;
      });
    });
    input.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      event.preventDefault();
      var match = Array.prototype.find.call(select.options, function (option) {
        return !option.hidden && option.value !== "auto" && option.value !== "";
      });
      if (match) select.value = match.value;
      select.focus();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    pollFetchStatus();
    Array.prototype.forEach.call(document.querySelectorAll("select.searchable-select"), addFilter);
  });
})();
