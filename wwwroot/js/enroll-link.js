// The enrollment link carries its token in the fragment (/enroll#token=…), which browsers never send to a
// server, so no request line, proxy log, server log or Referer header holds it. This posts it to the page
// (which keeps it in a short-lived cookie for this page and redirects), after dropping it from the address
// bar and the history entry. Also on hashchange: a link pasted into the address bar of a tab already on
// /enroll changes only the fragment and loads nothing.
(() => {
  "use strict";
  const open = () => {
    const hash = window.location.hash;
    if (!hash || hash.length < 2) return;
    // Plain http on a real host name: the page links to the https portal; keep the token on that link.
    const secure = document.getElementById("secure-link");
    if (secure) {
      secure.href = secure.href.split("#")[0] + hash;
      secure.textContent = secure.href;
      return;
    }
    const form = document.getElementById("link-form");
    if (!form) return;
    history.replaceState(null, "", window.location.pathname + window.location.search);
    form.elements.token.value = hash.slice(1);
    for (const el of form.parentElement.children) el.hidden = el !== form;
    form.submit();
  };
  window.addEventListener("hashchange", open);
  open();
})();
