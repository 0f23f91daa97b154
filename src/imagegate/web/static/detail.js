// The image page, enhanced: alt text, tags and pin save in place (on Enter, on leaving a
// changed field, or with Save) instead of reloading. Without this script the form posts.
"use strict";
(function () {
  var form = document.getElementById("edit-form");
  if (!form || !window.fetch) return;
  var status = document.getElementById("edit-status"), image = document.getElementById("detail-image");
  var saving = null;

  function save() {
    var body = new FormData(form);
    status.textContent = "Saving…";
    saving = fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": form.dataset.csrf, "Accept": "application/json" }
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || "Could not save.");
        form.elements.alt_text.value = data.alt_text;
        form.elements.tags.value = data.tags.join(", ");
        form.elements.pinned.checked = data.pinned;
        if (image) image.alt = data.alt_text;
        status.textContent = "Saved.";
      });
    }).catch(function (err) {
      status.textContent = "Not saved: " + err.message;
    });
    return saving;
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); save(); });
  form.addEventListener("change", function () { save(); });
})();
