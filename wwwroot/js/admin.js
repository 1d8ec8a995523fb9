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
})();
