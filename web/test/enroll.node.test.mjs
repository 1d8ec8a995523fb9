// Runs the same built bundle under Node's WebCrypto (globalThis.crypto), so
// the crypto path is covered even where no Chromium is installed.
import assert from "node:assert/strict";
import vm from "node:vm";
import { after, before, describe, test } from "node:test";
import { ALGORITHMS, PASSWORD, checkCsr, checkPkcs12, makeTestCa, readBundle } from "./helpers.mjs";

/** Evaluate the IIFE bundle in a context; return its CertPortalEnroll. */
function loadBundle(globals) {
  const context = vm.createContext(globals);
  vm.runInContext(readBundle(), context, { filename: "enroll.bundle.js" });
  return context.CertPortalEnroll;
}

const nodeGlobals = () => ({ crypto: globalThis.crypto, TextEncoder, TextDecoder, atob, btoa, setTimeout, console });

describe("enroll bundle in Node WebCrypto", () => {
  let E, ca;
  before(() => {
    E = loadBundle(nodeGlobals());
    ca = makeTestCa();
  });
  after(() => ca?.cleanup());

  for (const alg of ALGORITHMS) {
    test(`${alg}: key pair, CSR, PKCS#12`, async () => {
      const email = `node.${alg.toLowerCase()}@example.org`;
      const kp = await E.generateKeyPair(alg);
      assert.equal(kp.privateKey.extractable, true);
      const csr = await E.createCsrPem(kp, `  ${email} `); // trimmed
      checkCsr(ca, csr, `node-${alg}`, email);
      const certPem = ca.issue(csr, `node-${alg}`);
      // Chain may also come as one PEM bundle string; friendlyName defaults to the CN.
      const p12 = await E.buildPkcs12(kp, certPem, [ca.issuingPem + ca.rootPem], PASSWORD);
      assert.ok(p12 instanceof Uint8Array || p12.constructor.name === "Uint8Array");
      checkPkcs12(ca, Buffer.from(p12), `node-${alg}`, { algorithm: alg, friendlyName: email });
    });
  }

  test("PEM helpers round-trip", () => {
    const der = E.pemToDer(ca.rootPem, "CERTIFICATE");
    assert.equal(E.derToPem(der, "CERTIFICATE"), ca.rootPem);
    assert.throws(() => E.pemToDer(ca.rootPem, "CERTIFICATE REQUEST"), /Expected a PEM "CERTIFICATE REQUEST" block/);
    assert.throws(() => E.pemToDer("hello"), /No PEM block found/);
  });

  test("unknown algorithms are rejected with a clear error", async () => {
    for (const bad of ["RSA-1024", "EC-P384", "", undefined, "toString"]) {
      await assert.rejects(E.generateKeyPair(bad), /Unsupported key algorithm/);
    }
  });

  test("missing crypto.subtle gives the WebCrypto error", async () => {
    // An insecure (http://non-localhost) page has crypto but no crypto.subtle.
    const insecure = loadBundle({ ...nodeGlobals(), crypto: { getRandomValues: (a) => globalThis.crypto.getRandomValues(a) } });
    await assert.rejects(insecure.generateKeyPair("EC-P256"), /This browser does not support WebCrypto/);
    const none = loadBundle({ TextEncoder, TextDecoder, atob, btoa });
    await assert.rejects(none.generateKeyPair("RSA-2048"), /This browser does not support WebCrypto/);
  });
});
