// Times are written in UTC by the server (readable without script); show them in the reader's own time zone.
(() => {
  "use strict";
  for (const el of document.querySelectorAll("time[data-local]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    el.textContent = "dateOnly" in el.dataset
      ? when.toLocaleDateString(undefined, { dateStyle: "long" })
      : when.toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
    el.title = when.toISOString();
  }
})();
