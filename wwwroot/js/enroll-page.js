// "Get A Digital ID" page: key pair, CSR and PKCS#12 in the browser with window.CertPortalEnroll
// (web/src/enroll.js). The private key never leaves this page; only the CSR is sent.
(() => {
  "use strict";
  const form = document.getElementById("enroll-form");
  if (!form) return;
  const E = window.CertPortalEnroll;
  const $ = (id) => document.getElementById(id);
  const status = $("enroll-status");
  const errorBox = $("enroll-error");
  const submit = $("enroll-submit");
  const { token, email, mode, friendlyName, fileName } = form.dataset;

  const say = (text) => { status.textContent = text; };
  const fail = (text) => {
    say("");
    errorBox.textContent = text;
    errorBox.hidden = false;
    errorBox.focus?.();
    submit.disabled = false;
  };

  if (mode === "browser" && (!window.isSecureContext || !window.crypto || !window.crypto.subtle || !E)) {
    fail("This browser cannot create keys safely (WebCrypto is missing, or the page is not served over HTTPS). " +
      "Open the link in a current version of Chrome, Edge, Firefox or Safari.");
    submit.disabled = true;
    return;
  }

  const download = (bytes, name, mime) => E.downloadBlob(bytes, name, mime);
  const text = (s) => new TextEncoder().encode(s);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const password = $("password").value;
    const algorithm = $("key-algorithm").value;
    if (password.length < 8) return fail("The password must be at least 8 characters.");
    if (password !== $("password2").value) return fail("The two passwords are not the same.");
    submit.disabled = true;
    try {
      let issued, p12;
      if (mode === "server") {
        say("Requesting your digital ID…");
        // A requestId lets the retry in post() collect the same file if the first answer is lost on the way (the token is
        // spent by then, and without it the key would be left to recovery from escrow).
        issued = await post({ token, keyAlgorithm: algorithm, pkcs12Password: password, requestId: crypto.randomUUID() });
        p12 = Uint8Array.from(atob(issued.pkcs12), (c) => c.charCodeAt(0));
      } else {
        say("Creating your key pair in this browser…");
        const keys = await E.generateKeyPair(algorithm);
        say("Signing your certificate request…");
        const csr = await E.createCsrPem(keys, email);
        say("Asking the CA for your certificate…");
        issued = await post({ token, csr });
        say("Packing your digital ID into a password-protected file…");
        p12 = await E.buildPkcs12(keys, issued.certificatePem, [issued.chainPem], password, friendlyName);
      }
      say("");
      showSuccess(issued, p12);
    } catch (e) {
      fail(e.message || String(e));
    }
  });

  async function post(body) {
    const attempt = () => fetch("/api/v1/enrollments", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    // A lost answer (the connection failed, or a reverse proxy gave up waiting: 502, 503, 504) says nothing of whether the
    // certificate was issued: the same request once more collects it if it was (the same CSR, or the same requestId and
    // password), and asks for it if it was not.
    let response;
    try {
      response = await attempt();
    } catch {
      response = await attempt();
    }
    if ([502, 503, 504].includes(response.status)) response = await attempt();
    const json = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((json.title ? json.title + " " : "") + (json.detail || `The server answered ${response.status}.`) +
        (response.status === 403 ? " Ask your administrator for a new enrollment link." : ""));
    }
    return json;
  }

  function showSuccess(issued, p12) {
    form.hidden = true;
    // The link is spent: its expiry no longer means anything to the person.
    $("link-valid-until").hidden = true;
    $("cert-serial").textContent = issued.serialNumber;
    $("cert-not-after").textContent = new Date(issued.notAfter).toLocaleDateString(undefined, { dateStyle: "long" });
    // Until the .p12 is saved, the private key exists only in this page: leaving must be a decision.
    let saved = false;
    window.addEventListener("beforeunload", (event) => {
      if (saved) return;
      event.preventDefault();
      event.returnValue = "";
    });
    $("download-p12").addEventListener("click", () => {
      download(p12, fileName || "digital-id.p12", "application/x-pkcs12");
      saved = true;
    });
    $("download-cert-pem").addEventListener("click", () => download(text(issued.certificatePem), "certificate.pem", "application/x-pem-file"));
    $("download-cert-der").addEventListener("click", () => download(E.pemToDer(issued.certificatePem, "CERTIFICATE"), "certificate.cer", "application/pkix-cert"));
    $("download-chain").addEventListener("click", () => download(text(issued.chainPem), "ca-chain.pem", "application/x-pem-file"));
    const success = $("enroll-success");
    success.hidden = false;
    $("success-heading").focus();
  }
})();
