// "Renew your digital ID" page: opens the current PKCS#12 in the browser with window.CertPortalEnroll
// (web/src/enroll.js), makes a new key pair and CSR, signs the CSR with the current key (CMS, as the API takes it),
// and packs the new certificate with the new key. Only the signed CSR is sent.
(() => {
  "use strict";
  const form = document.getElementById("renew-form");
  if (!form) return;
  const E = window.CertPortalEnroll;
  const $ = (id) => document.getElementById(id);
  const status = $("renew-status");
  const errorBox = $("renew-error");
  const submit = $("renew-submit");

  const say = (text) => { status.textContent = text; };
  const fail = (text) => {
    say("");
    errorBox.textContent = text;
    errorBox.hidden = false;
    errorBox.focus();
    submit.disabled = false;
  };

  if (!window.isSecureContext || !window.crypto || !window.crypto.subtle || !E) {
    fail("This browser cannot open digital IDs safely (WebCrypto is missing, or the page is not served over HTTPS). " +
      "Use a current version of Chrome, Edge, Firefox or Safari.");
    submit.disabled = true;
    return;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const file = $("p12-file").files[0];
    const password = $("password").value;
    if (!file) return fail("Choose your digital ID file (.p12 or .pfx).");
    if (!password) return fail("Enter the password of your digital ID file.");
    submit.disabled = true;
    try {
      say("Opening your digital ID in this browser…");
      const current = await E.openPkcs12(new Uint8Array(await file.arrayBuffer()), password);
      say("Creating your new key pair…");
      const keys = await E.generateKeyPair($("key-algorithm").value);
      const csr = await E.createCsrPem(keys, current.email);
      say("Signing the request with your current key…");
      const cms = await E.signRenewalRequest(current.privateKey, current.certificateDer, csr);
      say("Asking the CA for your new certificate…");
      const response = await fetch("/api/v1/renewals", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ cms }),
      });
      const issued = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error((issued.title ? issued.title + " " : "") + (issued.detail || `The server answered ${response.status}.`));
      say("Packing your new digital ID into a password-protected file…");
      const p12 = await E.buildPkcs12(keys, issued.certificatePem, [issued.chainPem], password, current.friendlyName);
      say("");
      showSuccess(issued, p12, current.email);
    } catch (e) {
      fail(e.message || String(e));
    }
  });

  function showSuccess(issued, p12, email) {
    form.hidden = true;
    $("cert-serial").textContent = issued.serialNumber;
    $("cert-not-after").textContent = new Date(issued.notAfter).toLocaleDateString(undefined, { dateStyle: "long" });
    let saved = false;
    window.addEventListener("beforeunload", (event) => {
      if (saved) return;
      event.preventDefault();
      event.returnValue = "";
    });
    const purpose = issued.profile === "dual" ? "signing-and-encryption" : issued.profile;
    const name = `${email.replace(/[^A-Za-z0-9@._+-]/g, "_")}-${purpose}.p12`;
    $("download-p12").addEventListener("click", () => {
      E.downloadBlob(p12, name, "application/x-pkcs12");
      saved = true;
    });
    $("renew-success").hidden = false;
    $("success-heading").focus();
  }
})();
