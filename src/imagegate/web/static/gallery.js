// The gallery, enhanced: a lightbox (arrow keys, Escape, focus kept inside, download, copy
// link, open full size), infinite scroll over /web/images (keyset cursor), and the search and
// filters answered in place. Without this script the links and the GET form work as before.
"use strict";
(function () {
  var grid = document.getElementById("gallery"), form = document.getElementById("filters");
  if (!grid || !window.fetch) return;
  var $ = function (id) { return document.getElementById(id); };
  var status = $("gallery-status"), older = $("older");
  var cursor = older ? new URLSearchParams(older.search).get("cursor") : null;
  var loading = false, seq = 0;

  function filters() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { if (value) params.set(key, value); });
    return params;
  }

  function tile(item) {
    var li = document.createElement("li"), a = document.createElement("a");
    a.className = "thumb"; a.href = item.href; a.dataset.full = item.url;
    if (item.placeholder) {
      var ph = new Image(); ph.className = "ph"; ph.src = item.placeholder; ph.alt = "";
      a.appendChild(ph);
    }
    var img = new Image();
    img.className = "pic"; img.loading = "lazy"; img.width = 300; img.height = 300;
    img.src = item.thumbnail_url; img.alt = item.alt;
    a.appendChild(img);
    li.appendChild(a);
    return li;
  }

  // One more page (or, with fresh=true, the first page of new filters).
  function load(fresh) {
    if (loading && !fresh) return Promise.resolve();
    if (!fresh && !cursor) return Promise.resolve();
    var params = filters(), mine = ++seq;
    if (!fresh) params.set("cursor", cursor);
    loading = true;
    status.textContent = "Loading…";
    return fetch("/web/images?" + params, { credentials: "same-origin" })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error((body.error && body.error.message) || "Could not load images.");
          return body;
        });
      })
      .then(function (page) {
        if (mine !== seq) return;
        if (fresh) grid.replaceChildren();
        page.images.forEach(function (item) { grid.appendChild(tile(item)); });
        cursor = page.next_cursor;
        var count = grid.querySelectorAll("a.thumb").length;
        if (!count) {
          var li = document.createElement("li");
          li.className = "empty"; li.textContent = "No images match.";
          grid.appendChild(li);
        }
        status.textContent = count + (count === 1 ? " image" : " images") + (cursor ? ", more below." : ".");
        if (older) older.hidden = !cursor;
      })
      .catch(function (err) { if (mine === seq) status.textContent = err.message; })
      .then(function () { if (mine === seq) loading = false; });
  }

  if (older && window.IntersectionObserver) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) load(false);
    }, { rootMargin: "400px" }).observe(older);
    older.addEventListener("click", function (e) { e.preventDefault(); load(false); });
  }

  var typing = null;
  function search() {
    var params = filters();
    history.replaceState(null, "", "/" + (String(params) ? "?" + params : ""));
    return load(true);
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); search(); });
  form.addEventListener("change", search);
  $("q").addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(search, 300);
  });

  // The lightbox.
  var box = $("lightbox");
  if (!box || !box.showModal) return;
  var image = $("lightbox-image"), caption = $("lightbox-caption"), current = -1, opener = null;
  function tiles() { return Array.prototype.slice.call(grid.querySelectorAll("a.thumb")); }
  function show(index) {
    var all = tiles();
    if (index < 0 || index >= all.length) return;
    current = index;
    var a = all[index], alt = a.querySelector("img.pic").alt;
    image.src = a.dataset.full; image.alt = alt;
    caption.textContent = alt + " (" + (index + 1) + " of " + all.length + (cursor ? "+" : "") + ")";
    $("lightbox-download").href = a.dataset.full;
    $("lightbox-open").href = a.dataset.full;
    $("lightbox-details").href = a.href;
    $("lightbox-prev").disabled = index === 0;
    $("lightbox-next").disabled = index === all.length - 1 && !cursor;
    $("lightbox-status").textContent = "";
  }
  function move(step) {
    var next = current + step;
    if (next >= tiles().length && cursor) {
      load(false).then(function () { show(next); });
    } else {
      show(next);
    }
  }
  grid.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a.thumb");
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    opener = a;
    show(tiles().indexOf(a));
    box.showModal();
    $("lightbox-close").focus();
  });
  box.addEventListener("close", function () {
    if (opener && document.contains(opener)) opener.focus();
  });
  box.addEventListener("click", function (e) { if (e.target === box) box.close(); });
  $("lightbox-close").addEventListener("click", function () { box.close(); });
  $("lightbox-prev").addEventListener("click", function () { move(-1); });
  $("lightbox-next").addEventListener("click", function () { move(1); });
  $("lightbox-copy").addEventListener("click", function () {
    var link = new URL(image.src, location.href).href, note = $("lightbox-status");
    var done = function () { note.textContent = "Link copied."; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(link).then(done, function () { note.textContent = link; });
    } else {
      note.textContent = link;
    }
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "ArrowRight") { e.preventDefault(); move(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); move(-1); }
    else if (e.key === "Tab") {
      // keep focus inside the dialog, wrapping at both ends
      var focusable = Array.prototype.filter.call(
        box.querySelectorAll("button, a[href]"), function (el) { return !el.disabled; });
      var first = focusable[0], last = focusable[focusable.length - 1];
      if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
      else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
    }
  });
})();
