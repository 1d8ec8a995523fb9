// Runs the built bundle in the real Debian Chromium (headless, via
// playwright-core; no downloaded browser) on a loopback HTTP server, which is
// a secure context, so WebCrypto is available exactly as on the real page.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { ALGORITHMS, PASSWORD, checkCsr, checkPkcs12, makeTestCa, readBundle } from "./helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
];
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`;

const PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>enroll test</title>
<script src="/js/enroll.bundle.js"></script></head><body><main><h1>enroll test</h1></main></body></html>`;

describe("enroll bundle in Chromium", { skip }, () => {
  let server, browser, page, ca, origin;
  const pageErrors = [];

  before(async () => {
    const bundle = readBundle();
    server = createServer((req, res) => {
      if (req.url === "/") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(PAGE);
      } else if (req.url === "/js/enroll.bundle.js") {
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
        res.end(bundle);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    origin = `http://127.0.0.1:${server.address().port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    page = await browser.newPage();
    page.on("pageerror", (e) => pageErrors.push(e));
    await page.goto(`${origin}/`);
    ca = makeTestCa();
  });

  after(async () => {
    await browser?.close();
    await new Promise((r) => (server ? server.close(r) : r()));
    ca?.cleanup();
  });

  test("page is a secure context and exposes window.CertPortalEnroll", async () => {
    const shape = await page.evaluate(() => ({
      secure: window.isSecureContext,
      fns: Object.keys(window.CertPortalEnroll)
        .filter((k) => typeof window.CertPortalEnroll[k] === "function")
        .sort(),
      algorithms: window.CertPortalEnroll.ALGORITHMS,
    }));
    assert.equal(shape.secure, true);
    for (const fn of ["buildPkcs12", "createCsrPem", "derToPem", "downloadBlob", "generateKeyPair", "openPkcs12", "pemToDer", "signRenewalContent", "signRenewalRequest"]) {
      assert.ok(shape.fns.includes(fn), `missing ${fn}`);
    }
    assert.deepEqual(shape.algorithms, ALGORITHMS);
  });

  for (const alg of ALGORITHMS) {
    test(`${alg}: key pair, CSR, PKCS#12`, async () => {
      const email = `user.${alg.toLowerCase()}@example.org`;
      const gen = await page.evaluate(
        async ({ alg, email }) => {
          const E = window.CertPortalEnroll;
          const kp = await E.generateKeyPair(alg);
          (window.__keys ||= {})[alg] = kp;
          return {
            extractable: kp.privateKey.extractable,
            algName: kp.privateKey.algorithm.name,
            csr: await E.createCsrPem(kp, email),
          };
        },
        { alg, email }
      );
      assert.equal(gen.extractable, true);
      assert.equal(gen.algName, alg.startsWith("RSA") ? "RSASSA-PKCS1-v1_5" : "ECDSA");
      checkCsr(ca, gen.csr, alg, email);

      const certPem = ca.issue(gen.csr, alg);
      const friendlyName = `CertPortal ${alg}`;
      const b64 = await page.evaluate(
        async ({ alg, certPem, chain, password, friendlyName }) => {
          const E = window.CertPortalEnroll;
          const bytes = await E.buildPkcs12(window.__keys[alg], certPem, chain, password, friendlyName);
          if (!(bytes instanceof Uint8Array)) throw new Error("buildPkcs12 did not return a Uint8Array");
          let s = "";
          for (const b of bytes) s += String.fromCharCode(b);
          return btoa(s);
        },
        { alg, certPem, chain: [ca.issuingPem, ca.rootPem], password: PASSWORD, friendlyName }
      );
      checkPkcs12(ca, Buffer.from(b64, "base64"), alg, { algorithm: alg, friendlyName });
    });
  }

  test("rejects an unknown algorithm and a certificate for another key", async () => {
    const otherCert = ca.issue(
      await page.evaluate(async () => {
        const E = window.CertPortalEnroll;
        return E.createCsrPem(await E.generateKeyPair("EC-P256"), "other@example.org");
      }),
      "other"
    );
    const errors = await page.evaluate(async ({ otherCert, chain }) => {
      const E = window.CertPortalEnroll;
      const msg = async (f) => {
        try {
          await f();
          return null;
        } catch (e) {
          return String(e && e.message);
        }
      };
      return {
        alg: await msg(() => E.generateKeyPair("DSA-1024")),
        email: await msg(() => E.createCsrPem(window.__keys["EC-P256"], "not an address")),
        mismatch: await msg(() => E.buildPkcs12(window.__keys["EC-P256"], otherCert, chain, "pw", "x")),
        nopw: await msg(() => E.buildPkcs12(window.__keys["EC-P256"], otherCert, chain, "", "x")),
      };
    }, { otherCert, chain: [ca.issuingPem, ca.rootPem] });
    assert.match(errors.alg, /Unsupported key algorithm "DSA-1024"/);
    assert.match(errors.email, /not an e-mail address/);
    assert.match(errors.mismatch, /does not match the generated key pair/);
    assert.match(errors.nopw, /non-empty password/);
  });

  test("downloadBlob offers the file for download", async () => {
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.evaluate(() => window.CertPortalEnroll.downloadBlob(new Uint8Array([1, 2, 3]), "id.p12")),
    ]);
    assert.equal(download.suggestedFilename(), "id.p12");
  });

  test("no uncaught page errors", () => {
    assert.deepEqual(pageErrors.map(String), []);
  });
});
