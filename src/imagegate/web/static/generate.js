// The generate page, enhanced: a cost estimate while the form changes, the job submitted to
// /web/jobs and followed over SSE (queue position, running time, then the images), a friendly
// error with "Try again", Regenerate and Variations, and reference images by drag and drop.
// Without this script the form posts to /generate and waits, as before.
"use strict";
(function () {
  var form = document.getElementById("generate-form");
  if (!form || !window.fetch || !window.EventSource) return;
  var csrf = form.dataset.csrf;
  var $ = function (id) { return document.getElementById(id); };
  var live = $("live"), status = $("status"), failure = $("failure"), images = $("live-images");
  var actions = $("live-actions"), submit = $("submit"), estimate = $("estimate");
  var model = $("model"), fileInput = $("reference");
  var OUTCOMES = {
    generated: "new image", cache_hit: "from the cache", coalesced: "shared with an identical request",
    semantic_hit: "from the cache (a near-identical prompt)"
  };
  var last = null, source = null, timer = null, estimateTimer = null, estimateSeq = 0;

  function post(path, body) {
    return fetch(path, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          var e = (data && data.error) || {};
          throw new Error(e.friendly || e.message || "The server answered " + r.status + ".");
        }
        return data;
      });
    });
  }

  // Sizes and qualities offered for the chosen model.
  function fill(listId, values, labels) {
    var list = $(listId);
    list.replaceChildren.apply(list, values.map(function (v, i) {
      var o = document.createElement("option"); o.value = v;
      if (labels && labels[i] && labels[i] !== v) o.label = labels[i];
      return o;
    }));
  }
  function modelChanged() {
    var chosen = model.selectedOptions[0];
    if (!chosen) return;
    fill("size-choices", (chosen.dataset.sizes || "").split(" ").filter(Boolean),
      (chosen.dataset.sizeLabels || "").split("|"));
    fill("quality-choices", (chosen.dataset.qualities || "").split(" ").filter(Boolean));
    $("n").max = chosen.dataset.maxN || $("n").max;
    $("size").placeholder = "model default: " + (chosen.dataset.size || "");
  }

  function fields() {
    var data = new FormData(form);
    data.delete("reference");
    data.delete("csrf");
    return data;
  }

  function updateEstimate() {
    var data = fields(), seq = ++estimateSeq;
    if (!String(data.get("prompt") || "").trim()) data.set("prompt", "-");
    post("/web/estimate", data).then(function (found) {
      if (seq !== estimateSeq) return;
      estimate.textContent = found.cached
        ? "Estimated cost: $0 (already made, the cache answers; list price $" + found.list_cost_usd + ")"
        : "Estimated cost: $" + found.estimated_cost_usd + " for " + found.n + " × " + found.size +
          " (" + found.quality + ")";
      estimate.classList.remove("invalid");
    }, function (err) {
      if (seq !== estimateSeq) return;
      estimate.textContent = err.message;
      estimate.classList.add("invalid");
    });
  }
  function estimateSoon() {
    clearTimeout(estimateTimer);
    estimateTimer = setTimeout(updateEstimate, 250);
  }

  function stopFollowing() {
    if (source) { source.close(); source = null; }
    clearInterval(timer); timer = null;
  }

  // The status is a polite live region; the running seconds sit beside it, not in it, so a
  // screen reader hears each change of state once rather than a count every second.
  function say(text) { status.textContent = text; $("elapsed").textContent = ""; }

  function showError(text) {
    stopFollowing();
    say("");
    $("failure-text").textContent = text;
    failure.hidden = false;
    submit.disabled = false;
    $("retry").focus();
  }

  function showImages(state) {
    images.replaceChildren();
    state.images.forEach(function (image) {
      var li = document.createElement("li"), img = new Image();
      img.alt = String(last.get("prompt") || "Generated image");
      img.width = image.width; img.height = image.height;
      img.className = "fade";
      if (image.placeholder) li.style.backgroundImage = "url(" + image.placeholder + ")";
      img.addEventListener("load", function () { img.classList.add("shown"); });
      img.src = image.url;
      var link = document.createElement("a");
      link.href = image.url; link.appendChild(img);
      li.appendChild(link);
      images.appendChild(li);
    });
    var revised = state.images.length && state.images[0].revised_prompt;
    $("revised").hidden = !revised;
    $("revised-text").textContent = revised || "";
    var cost = state.cost_usd ? ", cost $" + state.cost_usd : "";
    say("Done: " + (OUTCOMES[state.cache] || "new image") + cost + ".");
    actions.hidden = false;
    submit.disabled = false;
  }

  function render(state) {
    clearInterval(timer); timer = null;
    if (state.status === "queued") {
      say(state.position ? "Queued: number " + state.position + " in line." : "Queued.");
    } else if (state.status === "running") {
      var skew = Date.now() / 1000 - (state.now || Date.now() / 1000);
      var started = (state.started_at || state.now) + skew;
      say("Running" + (state.stage ? " (" + state.stage + ")" : "") + "…");
      var tick = function () {
        $("elapsed").textContent = Math.max(0, Math.round(Date.now() / 1000 - started)) + " s";
      };
      tick();
      timer = setInterval(tick, 1000);
    } else if (state.status === "succeeded") {
      stopFollowing();
      showImages(state);
    } else {
      showError(state.error ? state.error.friendly : "The job was " + state.status + ".");
    }
  }

  function follow(state) {
    render(state);
    if (!state.events || state.status === "succeeded" || state.status === "failed" ||
        state.status === "canceled") return;
    source = new EventSource(state.events);
    source.addEventListener("state", function (e) { render(JSON.parse(e.data)); });
    source.addEventListener("failure", function (e) {
      showError(JSON.parse(e.data).error.friendly);
    });
    source.onerror = function () {
      // The server ends the stream when the job ends; anything else is a lost connection,
      // which EventSource retries by itself.
      if (source && source.readyState === EventSource.CLOSED) {
        showError("Lost the connection to the server. Try again.");
      }
    };
  }

  function run(data) {
    stopFollowing();
    last = data;
    live.hidden = false;
    failure.hidden = true;
    actions.hidden = true;
    images.replaceChildren();
    submit.disabled = true;
    ["server-result", "server-error"].forEach(function (id) {
      var old = $(id);
      if (old) old.remove();  // the answer of a form post without this script
    });
    say("Sending…");
    post("/web/jobs", data).then(follow, function (err) { showError(err.message); });
  }

  function again(intent) {
    if (!last) return;
    var data = new FormData();
    last.forEach(function (value, key) { if (key !== "intent") data.append(key, value); });
    if (intent) data.set("intent", intent);
    run(data);
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var data = new FormData(form);
    data.delete("csrf");
    var intent = e.submitter && e.submitter.name === "regenerate" ? "regenerate" : "";
    if (intent) data.set("intent", intent);
    run(data);
  });
  $("retry").addEventListener("click", function () { again(last && last.get("intent")); });
  $("regenerate").addEventListener("click", function () { again("regenerate"); });
  $("variations").addEventListener("click", function () { again("variations"); });

  // Reference images: picked or dropped, listed with a preview.
  var drop = $("drop");
  function listReferences() {
    var list = $("reference-list");
    list.replaceChildren();
    Array.prototype.forEach.call(fileInput.files, function (file) {
      var li = document.createElement("li"), img = new Image();
      img.src = URL.createObjectURL(file);
      img.alt = "";
      img.width = 48; img.height = 48;
      li.append(img, " " + file.name);
      list.appendChild(li);
    });
  }
  drop.addEventListener("dragover", function (e) {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("over");
    var merged = new DataTransfer();
    Array.prototype.forEach.call(fileInput.files, function (f) { merged.items.add(f); });
    Array.prototype.forEach.call(e.dataTransfer.files, function (f) {
      if (/^image\//.test(f.type)) merged.items.add(f);
    });
    fileInput.files = merged.files;
    listReferences();
  });
  fileInput.addEventListener("change", listReferences);

  ["model", "size", "n", "quality"].forEach(function (id) {
    $(id).addEventListener("input", estimateSoon);
    $(id).addEventListener("change", estimateSoon);
  });
  $("prompt").addEventListener("change", estimateSoon);
  model.addEventListener("change", modelChanged);
  modelChanged();
  updateEstimate();
})();
