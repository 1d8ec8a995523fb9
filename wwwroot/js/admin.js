// Console helpers (no inline script: the CSP forbids it).
(() => {
  "use strict";
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const id = button.dataset.copy;
      const field = document.getElementById(id);
      const note = document.querySelector(`[data-copied-for="${id}"]`);
      try {
        await navigator.clipboard.writeText(field.value);
        if (note) note.textContent = "Copied.";
      } catch {
        field.select();
        if (note) note.textContent = "Select the text and copy it (Ctrl+C).";
      }
    });
  }
  // Revocation needs an explicit confirmation: the submit stays disabled until the box is ticked.
  for (const box of document.querySelectorAll("[data-confirms]")) {
    const target = document.getElementById(box.dataset.confirms);
    const sync = () => { target.disabled = !box.checked; };
    box.addEventListener("change", sync);
    sync();
  }
  // Revoke and hold share a form: the button and the confirmation say which one will happen.
  for (const holder of document.querySelectorAll("[data-hold-switch]")) {
    const select = document.getElementById(holder.dataset.holdSwitch);
    const texts = [...document.querySelectorAll("[data-hold-text]")];
    const sync = () => {
      const hold = select.value === "certificateHold";
      for (const el of texts) el.textContent = hold ? el.dataset.holdText : el.dataset.revokeText;
    };
    select.addEventListener("change", sync);
    sync();
  }
  // Destructive one-click actions (e.g. revoking a token) ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
})();
