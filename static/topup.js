/* A failed htmx request: a note by its element, with a retry button, till an answer comes.
   Also shows the controls only JavaScript can work ([data-js-only]). */
(function (d) {
  d.addEventListener("DOMContentLoaded", function () {
    d.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });
  });
  function failed(e) {
    var el = e.detail.requestConfig.elt, t = d.getElementById("offline"), note = el.topupNote;
    if (!note) {
      note = el.topupNote = t.content.firstElementChild.cloneNode(true);
      note.lastChild.onclick = function () {
        htmx.ajax("get", el.getAttribute("data-hx-get"), {source: el});
      };
      el.after(note);
    }
    var text = t.dataset[e.type.slice(5)] || t.dataset.offline;
    if (note.firstChild.textContent != text) note.firstChild.textContent = text;
  }
  ["sendError", "timeout", "responseError"].forEach(function (name) {
    d.addEventListener("htmx:" + name, failed);
  });
  d.addEventListener("htmx:afterRequest", function (e) {
    var el = e.detail.requestConfig.elt, note = el.topupNote;
    if (!e.detail.successful || !note) return;
    if (note.contains(d.activeElement)) el.focus();
    el.topupNote = note.remove();
  });
})(document);
