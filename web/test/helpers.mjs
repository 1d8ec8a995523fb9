// Shared helpers for the enroll bundle tests: a throwaway two-level CA made
// with openssl, and the openssl / NSS checks run on the bundle's output.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const BUNDLE_PATH = resolve(here, "..", "..", "wwwroot", "js", "enroll.bundle.js");
export const ALGORITHMS = ["RSA-2048", "RSA-3072", "EC-P256"];
// Space and non-ASCII on purpose: PBES2 takes the UTF-8 bytes, the PKCS#12
// MAC key derivation the BMPString form; both must match OpenSSL and NSS.
export const PASSWORD = "Corr3ct hörse €";

export function readBundle() {
  if (!existsSync(BUNDLE_PATH)) {
    throw new Error(`${BUNDLE_PATH} is missing: run "npm run build" in web/ first`);
  }
  return readFileSync(BUNDLE_PATH, "utf8");
}

/** Run a command; return {status, stdout, stderr} without throwing. */
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Run a command that must succeed; return stdout. */
export function must(cmd, args, opts = {}) {
  const r = run(cmd, args, opts);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

export function hasCommand(name) {
  return spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0;
}

/** Temp dir with a root CA and an issuing CA (EC P-256, fast to make). */
export function makeTestCa() {
  const dir = mkdtempSync(join(tmpdir(), "certportal-web-test-"));
  const p = (f) => join(dir, f);
  writeFileSync(
    p("ext.cnf"),
    [
      "[ca]",
      "basicConstraints=critical,CA:TRUE",
      "keyUsage=critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid",
      "[ee]",
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=emailProtection",
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid",
      "",
    ].join("\n")
  );
  const ecKey = (f) => must("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p(f)]);
  ecKey("root.key");
  must("openssl", ["req", "-x509", "-new", "-key", p("root.key"), "-subj", "/CN=CertPortal Test Root", "-days", "2",
    "-extensions", "ca", "-config", p("ext.cnf"), "-out", p("root.pem")]);
  ecKey("issuing.key");
  must("openssl", ["req", "-new", "-key", p("issuing.key"), "-subj", "/CN=CertPortal Test Issuing CA", "-out", p("issuing.csr")]);
  must("openssl", ["x509", "-req", "-in", p("issuing.csr"), "-CA", p("root.pem"), "-CAkey", p("root.key"),
    "-set_serial", "2", "-days", "2", "-extfile", p("ext.cnf"), "-extensions", "ca", "-out", p("issuing.pem")]);
  let serial = 100;
  return {
    dir,
    path: p,
    rootPem: readFileSync(p("root.pem"), "utf8"),
    issuingPem: readFileSync(p("issuing.pem"), "utf8"),
    /** Issue an S/MIME certificate from a CSR; returns PEM. */
    issue(csrPem, name) {
      writeFileSync(p(`${name}.csr`), csrPem);
      must("openssl", ["x509", "-req", "-in", p(`${name}.csr`), "-CA", p("issuing.pem"), "-CAkey", p("issuing.key"),
        "-set_serial", String(serial++), "-days", "1", "-extfile", p("ext.cnf"), "-extensions", "ee", "-out", p(`${name}.pem`)]);
      return readFileSync(p(`${name}.pem`), "utf8");
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** openssl req -verify on the CSR, subject = CN=<email>, no attributes. */
export function checkCsr(ca, csrPem, name, email) {
  assert.match(csrPem, /^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE REQUEST-----\n$/);
  const f = ca.path(`${name}.check.csr`);
  writeFileSync(f, csrPem);
  const r = run("openssl", ["req", "-in", f, "-verify", "-noout", "-subject", "-nameopt", "RFC2253"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /verify OK/);
  assert.equal(r.stdout.trim(), `subject=CN=${email}`);
  // Version 0, empty attributes set, so no extension request at all.
  const text = must("openssl", ["req", "-in", f, "-noout", "-text"]);
  assert.match(text, /Version: 1 \(0x0\)/);
  assert.match(text, /Attributes:\s*\n\s*\(none\)/);
  assert.doesNotMatch(text, /X509v3|Subject Alternative Name/);
  const asn1 = must("openssl", ["asn1parse", "-in", f]);
  assert.match(asn1, /d=2 +hl=2 l= +0 cons: cont \[ 0 \]/);
}

/**
 * The PKCS#12 opens with OpenSSL (key + leaf + chain in order, attributes set,
 * key matches certificate, PBES2/AES-256/SHA-256 MAC), a wrong password fails,
 * and NSS pk12util imports it.
 */
export function checkPkcs12(ca, p12, name, { algorithm, friendlyName, password = PASSWORD }) {
  const f = ca.path(`${name}.p12`);
  writeFileSync(f, p12);
  const pass = `pass:${password}`;

  const all = must("openssl", ["pkcs12", "-in", f, "-passin", pass, "-nodes"]);
  const info = run("openssl", ["pkcs12", "-in", f, "-passin", pass, "-nodes", "-info", "-noout"]).stderr;
  assert.match(info, /MAC: sha256, Iteration 100000/);
  assert.match(info, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256/);
  assert.match(info, /PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256/);
  assert.match(all, /-----BEGIN PRIVATE KEY-----/);
  assert.equal((all.match(/-----BEGIN CERTIFICATE-----/g) || []).length, 3);

  // Key: friendlyName + localKeyID; leaf cert: the same localKeyID.
  const keyOut = must("openssl", ["pkcs12", "-in", f, "-passin", pass, "-nodes", "-nocerts"]);
  const leafOut = must("openssl", ["pkcs12", "-in", f, "-passin", pass, "-nokeys", "-clcerts"]);
  const keyId = /localKeyID: ([0-9A-F ]+)/.exec(keyOut);
  assert.ok(keyId, "key bag has a localKeyID");
  assert.equal(/localKeyID: ([0-9A-F ]+)/.exec(leafOut)?.[1], keyId[1], "leaf cert has the key's localKeyID");
  // localKeyID is the SHA-1 of the certificate, as OpenSSL does it.
  const fp = must("openssl", ["x509", "-in", ca.path(`${name}.pem`), "-noout", "-fingerprint", "-sha1"]);
  assert.equal(keyId[1].trim().replace(/ /g, ""), fp.split("=")[1].trim().replace(/:/g, ""));
  if (/^[\x20-\x7e]+$/.test(friendlyName)) {
    assert.match(keyOut, new RegExp(`friendlyName: ${friendlyName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\n`));
    assert.match(leafOut, /friendlyName: /);
  }

  // Leaf certificate is the issued one; CA certs follow, issuing CA first.
  const leafFile = ca.path(`${name}.out-leaf.pem`);
  writeFileSync(leafFile, leafOut);
  assert.equal(
    must("openssl", ["x509", "-in", leafFile, "-outform", "DER"], { encoding: "buffer" }).toString("base64"),
    must("openssl", ["x509", "-in", ca.path(`${name}.pem`), "-outform", "DER"], { encoding: "buffer" }).toString("base64")
  );
  const caOut = must("openssl", ["pkcs12", "-in", f, "-passin", pass, "-nokeys", "-cacerts"]);
  const subjects = [...caOut.matchAll(/^subject=(.*)$/gm)].map((m) => m[1]);
  assert.deepEqual(subjects, ["CN = CertPortal Test Issuing CA", "CN = CertPortal Test Root"]);

  // The private key belongs to the certificate.
  const keyFile = ca.path(`${name}.out-key.pem`);
  writeFileSync(keyFile, keyOut);
  const pubFromKey = must("openssl", ["pkey", "-in", keyFile, "-pubout"]);
  const pubFromCert = must("openssl", ["x509", "-in", leafFile, "-pubkey", "-noout"]);
  assert.equal(pubFromKey, pubFromCert);
  assert.match(pubFromKey, /-----BEGIN PUBLIC KEY-----/);

  // The chain verifies up to the root (sanity check of what was packed).
  writeFileSync(ca.path(`${name}.out-ca.pem`), caOut);
  assert.match(
    must("openssl", ["verify", "-CAfile", ca.path("root.pem"), "-untrusted", ca.path("issuing.pem"), leafFile]),
    /: OK/
  );

  // Wrong password: MAC check fails.
  const bad = run("openssl", ["pkcs12", "-in", f, "-passin", "pass:wrong password", "-nodes"]);
  assert.notEqual(bad.status, 0, "wrong password must fail");
  assert.match(bad.stderr, /mac verify (error|failure)|invalid password/i);

  // NSS (Firefox / Thunderbird's library) imports it too.
  if (hasCommand("pk12util") && hasCommand("certutil")) {
    const db = ca.path(`${name}.nssdb`);
    must("mkdir", ["-p", db]);
    must("certutil", ["-N", "-d", `sql:${db}`, "--empty-password"]);
    const badNss = run("pk12util", ["-i", f, "-d", `sql:${db}`, "-W", "wrong password"]);
    assert.notEqual(badNss.status, 0, "pk12util must refuse a wrong password");
    const ok = run("pk12util", ["-i", f, "-d", `sql:${db}`, "-W", password]);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout + ok.stderr, /PKCS12 IMPORT SUCCESSFUL/);
    assert.match(must("certutil", ["-K", "-d", `sql:${db}`]), algorithm.startsWith("EC") ? /<\s*0> ec\b/ : /<\s*0> rsa\b/);
  }
}
