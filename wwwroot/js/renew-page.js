// "Renew your digital ID" page: opens the current PKCS#12 in the browser with window.CertPortalEnroll
// (web/src/enroll.js), makes a new key pair and CSR, signs the CSR with the current key (CMS, as the API takes it),
// and packs the new certificate with the new key. Only the signed CSR is sent. An escrowed encryption ID (the server
// says so for its serial) renews through the server instead: the page signs {"keyAlgorithm":...,"requestIdAndPasswordSha256":...}
// with the current key (the signature names the request, so a copy of it is worth nothing with another requestId or password)
// and sends it with the requestId and the password, and the server returns the new key, escrowed, in a PKCS#12 under that
// password.
// Opened from a reminder's link (/renew?serial=…, the form's data-serial), the page renews that ID only: a file that holds
// another one (the person's other ID, signing where the link is about encryption) is refused before anything is sent, and
// the request names the ID (expectedSerialNumber), so the server refuses it too should the page's own check be bypassed.
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
  // text: a string, or the nodes of a message with more than one paragraph.
  const fail = (text) => {
    say("");
    if (typeof text === "string") errorBox.textContent = text;
    else errorBox.replaceChildren(...text);
    errorBox.hidden = false;
    errorBox.focus();
    submit.disabled = false;
  };

  // Serials compared as the server keys them: upper-case hex without separators, here also without leading zero octets
  // (a DER integer's padding 00 or a padded form of the same number names the same certificate).
  const normalizeSerial = (serial) => {
    let hex = String(serial).replace(/[\s:]/g, "").toUpperCase();
    if (hex.length % 2 === 1) hex = "0" + hex;
    while (hex.length > 2 && hex.startsWith("00")) hex = hex.slice(2);
    return hex;
  };
  const namedSerial = form.dataset.serial || "";
  const namedUse = form.dataset.use || "";
  const named = (serial, use) => use ? `${serial} (${use})` : serial;
  const expected = namedSerial ? { expectedSerialNumber: namedSerial } : {};

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
      const source = await keySource(current.serialNumber);
      if (namedSerial && normalizeSerial(current.serialNumber) !== normalizeSerial(namedSerial)) {
        return fail(otherIdMessage(current.serialNumber, source.use));
      }
      const algorithm = $("key-algorithm").value;
      let issued, p12;
      if (source.serverGeneratesKey === true) {
        say("Signing the request with your current key…");
        // A requestId lets the retry below collect the same file if the first answer is lost on the way.
        const requestId = crypto.randomUUID();
        const content = new TextEncoder().encode(JSON.stringify({
          keyAlgorithm: algorithm, requestIdAndPasswordSha256: await requestBinding(requestId, password),
        }));
        const cms = await E.signRenewalContent(current.privateKey, current.certificateDer, content);
        say("The service is making your new key and keeping a copy in escrow…");
        issued = await renew({ cms, pkcs12Password: password, requestId, ...expected });
        p12 = Uint8Array.from(atob(issued.pkcs12), (c) => c.charCodeAt(0));
      } else {
        say("Creating your new key pair…");
        const keys = await E.generateKeyPair(algorithm);
        const csr = await E.createCsrPem(keys, current.email);
        say("Signing the request with your current key…");
        const cms = await E.signRenewalRequest(current.privateKey, current.certificateDer, csr);
        say("Asking the CA for your new certificate…");
        issued = await renew({ cms, ...expected });
        say("Packing your new digital ID into a password-protected file…");
        p12 = await E.buildPkcs12(keys, issued.certificatePem, [issued.chainPem], password, current.friendlyName);
      }
      say("");
      showSuccess(issued, p12, current.email);
    } catch (e) {
      fail(e.message || String(e));
    }
  });

  // What the signature names for a server-made key: SHA-256 (hex) of the requestId, a zero byte and the password, UTF-8
  // (ServerKeyRenewal.SignatureCovers). The requestId is random and sent only beside the signed content, never in it, so a copy
  // of the signed request tells nobody the password and authorises nothing else.
  async function requestBinding(requestId, password) {
    const utf8 = new TextEncoder();
    const id = utf8.encode(requestId);
    const pw = utf8.encode(password);
    const bytes = new Uint8Array(id.length + 1 + pw.length);
    bytes.set(id, 0);
    bytes.set(pw, id.length + 1);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    bytes.fill(0);
    return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // {serverGeneratesKey, use}: how the ID in the file renews, and what it is for (null if this service did not issue it).
  async function keySource(serial) {
    const response = await fetch(`/renew?handler=KeySource&serial=${encodeURIComponent(serial)}`, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`The server answered ${response.status} when asked how this digital ID renews.`);
    return await response.json();
  }

  // The file holds another ID than the link names. Renewing it would leave the named one to expire unrenewed (and the
  // other ID's own reminder link would then say it was renewed already): say which is which, and renew nothing. A person
  // who does mean the ID in this file renews it from the page for any ID, choosing the file there on purpose.
  function otherIdMessage(fileSerial, fileUse) {
    const p = (...parts) => {
      const el = document.createElement("p");
      el.append(...parts);
      return el;
    };
    const link = document.createElement("a");
    link.href = "/renew";
    link.id = "renew-any-id";
    link.textContent = "renew it on the page for any digital ID";
    return [
      p(`This file holds your digital ID ${named(fileSerial, fileUse)}, but this link is about ${named(namedSerial, namedUse)}. ` +
        "Choose the file of that digital ID. Nothing was renewed."),
      p(`If you meant to renew ${fileSerial} instead, `, link, " and choose this file there."),
    ];
  }

  async function renew(body) {
    const attempt = () => fetch("/api/v1/renewals", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let response;
    try {
      response = await attempt();
    } catch {
      // The connection failed (the answer may have been lost): the same request once more, which collects it.
      response = await attempt();
    }
    // A reverse proxy that gave up waiting (502, 503, 504) says nothing of whether the renewal was made: the same request
    // once more collects it if it was (a server-made key by its requestId), and makes it if it was not.
    if ([502, 503, 504].includes(response.status)) response = await attempt();
    const json = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((json.title ? json.title + " " : "") + (json.detail || `The server answered ${response.status}.`));
    return json;
  }

  function showSuccess(issued, p12, email) {
    form.hidden = true;
    if (issued.keyEscrowed) {
      $("key-in-page").hidden = true;
      $("key-escrowed").hidden = false;
    }
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
