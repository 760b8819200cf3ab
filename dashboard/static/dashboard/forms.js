/* Forms on every page (base.html).
 *
 * - A form with data-confirm (disabling a sentinel, starting a scenario) asks first; "Cancel"
 *   sends nothing. Caught on the way down, before htmx's own submit handler sees the event.
 * - After a failed submit, focus moves to the error summary (#form-errors, or any element
 *   marked data-error-summary), so a screen reader reads it and the keyboard starts there;
 *   also when htmx swapped the form in place. */
(function () {
  "use strict";

  document.addEventListener(
    "submit",
    (event) => {
      const question = event.target.dataset ? event.target.dataset.confirm : null;
      if (question && !window.confirm(question)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true,
  );

  function focusSummary(root) {
    const summary = (root || document).querySelector("#form-errors, [data-error-summary]");
    if (!summary) return;
    summary.setAttribute("tabindex", "-1");
    summary.focus();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => focusSummary());
  } else {
    focusSummary();
  }
  document.body.addEventListener("htmx:afterSettle", (event) => focusSummary(event.target));
})();
