// CertPortal "Get A Digital ID" page: browser-side key generation, PKCS#10
// request and PKCS#12 packaging. Bundled by web/build.mjs into
// wwwroot/js/enroll.bundle.js, exposed as window.CertPortalEnroll.
//
// The private key never leaves the browser: the page sends only the CSR to the
// server, receives the certificate and chain back, and packs key + certificates
// into a password-protected PKCS#12 that the user downloads.

import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

/** Key algorithms the page offers. */
export const ALGORITHMS = Object.freeze(["RSA-2048", "RSA-3072", "EC-P256"]);

/** PBKDF2 (key and certificate encryption) and PKCS#12 MAC iteration count. */
export const PKCS12_ITERATIONS = 100000;

const OID_PKCS9_FRIENDLY_NAME = "1.2.840.113549.1.9.20";
const OID_PKCS9_LOCAL_KEY_ID = "1.2.840.113549.1.9.21";
const OID_CERT_BAG_X509 = "1.2.840.113549.1.9.22.1";
const OID_COMMON_NAME = "2.5.4.3";

const KEY_PARAMS = {
  "RSA-2048": {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  },
  "RSA-3072": {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 3072,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  },
  "EC-P256": { name: "ECDSA", namedCurve: "P-256" },
};

// ---------------------------------------------------------------------------
// WebCrypto access

function getSubtleCrypto() {
  const c = globalThis.crypto;
  if (!c || !c.subtle || typeof c.getRandomValues !== "function") {
    throw new Error(
      "This browser does not support WebCrypto (crypto.subtle is unavailable). " +
        "Use a current browser and open this page over HTTPS."
    );
  }
  return c;
}

function getEngine() {
  const c = getSubtleCrypto();
  return new pkijs.CryptoEngine({ name: "webcrypto", crypto: c });
}

// ---------------------------------------------------------------------------
// PEM / DER helpers

function toUint8Array(data, what) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`${what} must be a Uint8Array or ArrayBuffer`);
}

function base64Encode(bytes) {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

function base64Decode(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * All PEM blocks found in text, in order.
 * @param {string} text
 * @returns {{label: string, der: Uint8Array}[]}
 */
export function parsePemBlocks(text) {
  if (typeof text !== "string") throw new TypeError("PEM input must be a string");
  const blocks = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const body = m[2].replace(/[\r\n\t ]/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new Error(`Malformed base64 in PEM block "${m[1]}"`);
    }
    blocks.push({ label: m[1], der: base64Decode(body) });
  }
  return blocks;
}

/**
 * DER bytes of the first PEM block in pem (optionally requiring its label).
 * @param {string} pem
 * @param {string} [expectedLabel] e.g. "CERTIFICATE"
 * @returns {Uint8Array}
 */
export function pemToDer(pem, expectedLabel) {
  const blocks = parsePemBlocks(pem);
  if (blocks.length === 0) {
    throw new Error(`No PEM block found${expectedLabel ? ` (expected ${expectedLabel})` : ""}`);
  }
  if (expectedLabel && blocks[0].label !== expectedLabel) {
    throw new Error(`Expected a PEM "${expectedLabel}" block, found "${blocks[0].label}"`);
  }
  return blocks[0].der;
}

/**
 * PEM text (64-column base64, trailing newline) for DER bytes.
 * @param {Uint8Array|ArrayBuffer} der
 * @param {string} label e.g. "CERTIFICATE REQUEST"
 * @returns {string}
 */
export function derToPem(der, label) {
  if (typeof label !== "string" || !/^[A-Z0-9 ]+$/.test(label)) {
    throw new TypeError("PEM label must be upper-case text such as \"CERTIFICATE\"");
  }
  const b64 = base64Encode(toUint8Array(der, "DER"));
  const lines = b64.match(/.{1,64}/g) || [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------
// Key generation

/**
 * Generate an extractable signing key pair.
 * @param {"RSA-2048"|"RSA-3072"|"EC-P256"} algorithm
 * @returns {Promise<CryptoKeyPair>}
 */
export async function generateKeyPair(algorithm) {
  const params = Object.prototype.hasOwnProperty.call(KEY_PARAMS, algorithm) ? KEY_PARAMS[algorithm] : null;
  if (!params) {
    throw new Error(
      `Unsupported key algorithm "${String(algorithm)}"; expected one of ${ALGORITHMS.join(", ")}`
    );
  }
  const c = getSubtleCrypto();
  // extractable = true: the private key has to be exported into the PKCS#12.
  return c.subtle.generateKey(params, true, ["sign", "verify"]);
}

function assertKeyPair(keyPair) {
  if (!keyPair || !keyPair.privateKey || !keyPair.publicKey) {
    throw new TypeError("keyPair must be a CryptoKeyPair from generateKeyPair()");
  }
}

function normaliseEmail(email) {
  if (typeof email !== "string") throw new TypeError("email must be a string");
  const e = email.trim();
  // Deliberately loose: the server validates the address; this only rejects
  // input that cannot be an address or could not be encoded sensibly.
  if (e.length === 0 || e.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(e)) {
    throw new Error(`"${email}" is not an e-mail address`);
  }
  if (/[\u0000-\u001f\u007f]/.test(e)) throw new Error("email contains control characters");
  return e;
}

// ---------------------------------------------------------------------------
// PKCS#10

/**
 * PKCS#10 certificate request, subject CN=<email>, self-signed with the
 * private key (SHA-256). No attributes or extension requests: the server
 * decides every certificate extension.
 * @param {CryptoKeyPair} keyPair
 * @param {string} email
 * @returns {Promise<string>} PEM "CERTIFICATE REQUEST"
 */
export async function createCsrPem(keyPair, email) {
  assertKeyPair(keyPair);
  const cn = normaliseEmail(email);
  const engine = getEngine();

  const csr = new pkijs.CertificationRequest();
  csr.version = 0;
  csr.subject.typesAndValues.push(
    new pkijs.AttributeTypeAndValue({
      type: OID_COMMON_NAME,
      value: new asn1js.Utf8String({ value: cn }),
    })
  );
  await csr.subjectPublicKeyInfo.importKey(keyPair.publicKey, engine);
  csr.attributes = []; // encodes the mandatory (empty) [0] attributes set
  await csr.sign(keyPair.privateKey, "SHA-256", engine);

  const der = csr.toSchema(true).toBER(false);
  return derToPem(der, "CERTIFICATE REQUEST");
}

// ---------------------------------------------------------------------------
// PKCS#12

function parseCertificate(pem, what) {
  let der;
  try {
    der = pemToDer(pem, "CERTIFICATE");
  } catch (err) {
    throw new Error(`${what}: ${err.message}`);
  }
  try {
    return { der, cert: pkijs.Certificate.fromBER(der) };
  } catch (err) {
    throw new Error(`${what} is not a valid X.509 certificate (${err.message})`);
  }
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function commonNameOf(cert) {
  for (const tv of cert.subject.typesAndValues) {
    if (tv.type === OID_COMMON_NAME && tv.value && tv.value.valueBlock) {
      return String(tv.value.valueBlock.value);
    }
  }
  return "";
}

function bagAttributes(friendlyName, localKeyId) {
  const attrs = [
    new pkijs.Attribute({
      type: OID_PKCS9_LOCAL_KEY_ID,
      values: [new asn1js.OctetString({ valueHex: localKeyId })],
    }),
  ];
  if (friendlyName) {
    attrs.unshift(
      new pkijs.Attribute({
        type: OID_PKCS9_FRIENDLY_NAME,
        values: [new asn1js.BmpString({ value: friendlyName })],
      })
    );
  }
  return attrs;
}

/**
 * Password-protected PKCS#12 holding the private key (PKCS#8 shrouded key
 * bag) and the certificates (cert bags): PBES2 / PBKDF2-HMAC-SHA256 /
 * AES-256-CBC for both, HMAC-SHA256 MAC, localKeyId + friendlyName on the key
 * and the end-entity certificate.
 * @param {CryptoKeyPair} keyPair
 * @param {string} certificatePem the issued end-entity certificate
 * @param {string[]} chainPems issuing CA first, then up to the root
 * @param {string} password
 * @param {string} [friendlyName] defaults to the certificate's CN
 * @returns {Promise<Uint8Array>} DER PKCS#12 (PFX)
 */
export async function buildPkcs12(keyPair, certificatePem, chainPems, password, friendlyName) {
  assertKeyPair(keyPair);
  if (typeof password !== "string" || password.length === 0) {
    throw new Error("A non-empty password is required to protect the PKCS#12 file");
  }
  if (chainPems == null) chainPems = [];
  if (!Array.isArray(chainPems)) throw new TypeError("chainPems must be an array of PEM strings");
  if (friendlyName != null && typeof friendlyName !== "string") {
    throw new TypeError("friendlyName must be a string");
  }

  const c = getSubtleCrypto();
  const engine = getEngine();

  const leaf = parseCertificate(certificatePem, "certificate");
  const chain = [];
  chainPems.forEach((pem, i) => {
    // Accept one PEM per element or a bundle of several in one element.
    const blocks = parsePemBlocks(pem).filter((b) => b.label === "CERTIFICATE");
    if (blocks.length === 0) throw new Error(`chain certificate ${i + 1}: no CERTIFICATE PEM block`);
    for (const b of blocks) {
      try {
        chain.push({ der: b.der, cert: pkijs.Certificate.fromBER(b.der) });
      } catch (err) {
        throw new Error(`chain certificate ${i + 1} is not a valid X.509 certificate (${err.message})`);
      }
    }
  });

  // The certificate must be for this key pair, or the file would be useless.
  const spki = new Uint8Array(await c.subtle.exportKey("spki", keyPair.publicKey));
  const ourKey = pkijs.PublicKeyInfo.fromBER(spki);
  const certKey = leaf.cert.subjectPublicKeyInfo;
  if (
    ourKey.algorithm.algorithmId !== certKey.algorithm.algorithmId ||
    !bytesEqual(
      new Uint8Array(ourKey.subjectPublicKey.valueBlock.valueHexView),
      new Uint8Array(certKey.subjectPublicKey.valueBlock.valueHexView)
    )
  ) {
    throw new Error("The certificate does not match the generated key pair");
  }

  const pkcs8 = new Uint8Array(await c.subtle.exportKey("pkcs8", keyPair.privateKey));
  // Same convention as OpenSSL: localKeyId = SHA-1 of the certificate DER.
  const localKeyId = new Uint8Array(await c.subtle.digest("SHA-1", leaf.der));
  const name = (friendlyName && friendlyName.trim()) || commonNameOf(leaf.cert) || "CertPortal Digital ID";
  const passwordBytes = new TextEncoder().encode(password);

  const pbes2 = {
    password: passwordBytes,
    contentEncryptionAlgorithm: { name: "AES-CBC", length: 256 },
    hmacHashAlgorithm: "SHA-256",
    iterationCount: PKCS12_ITERATIONS,
  };

  const keyBag = new pkijs.SafeBag({
    bagId: "1.2.840.113549.1.12.10.1.2", // pkcs8ShroudedKeyBag
    bagValue: new pkijs.PKCS8ShroudedKeyBag({
      parsedValue: pkijs.PrivateKeyInfo.fromBER(pkcs8),
    }),
    bagAttributes: bagAttributes(name, localKeyId),
  });
  await keyBag.bagValue.makeInternalValues({ ...pbes2 }, engine);

  const certBags = [
    new pkijs.SafeBag({
      bagId: "1.2.840.113549.1.12.10.1.3", // certBag
      bagValue: new pkijs.CertBag({ certId: OID_CERT_BAG_X509, parsedValue: leaf.cert }),
      bagAttributes: bagAttributes(name, localKeyId),
    }),
    ...chain.map(
      (entry) =>
        new pkijs.SafeBag({
          bagId: "1.2.840.113549.1.12.10.1.3",
          bagValue: new pkijs.CertBag({ certId: OID_CERT_BAG_X509, parsedValue: entry.cert }),
        })
    ),
  ];

  // Layout as OpenSSL writes it: encrypted certificate SafeContents, then a
  // plain-data SafeContents holding the (already shrouded) key.
  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0, // password-based MAC
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) },
            { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [keyBag] }) },
          ],
        },
      }),
    },
  });

  await pfx.parsedValue.authenticatedSafe.makeInternalValues(
    { safeContents: [{ ...pbes2 }, {}] },
    engine
  );
  await pfx.makeInternalValues(
    {
      password: passwordBytes,
      iterations: PKCS12_ITERATIONS,
      pbkdf2HashAlgorithm: "SHA-256", // required by PKI.js, unused for the PKCS#12 MAC KDF
      hmacHashAlgorithm: "SHA-256",
    },
    engine
  );

  return new Uint8Array(pfx.toSchema().toBER(false));
}

// ---------------------------------------------------------------------------
// Page helper

/**
 * Offer bytes to the user as a file download.
 * @param {Uint8Array|ArrayBuffer} bytes
 * @param {string} filename
 * @param {string} [mime="application/x-pkcs12"]
 */
export function downloadBlob(bytes, filename, mime = "application/x-pkcs12") {
  if (typeof document === "undefined") throw new Error("downloadBlob needs a browser document");
  const blob = new Blob([toUint8Array(bytes, "bytes")], { type: mime });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.rel = "noopener";
  a.style.display = "none";
  document.body.appendChild(a);
  try {
    a.click();
  } finally {
    a.remove();
    // Give the browser time to start the download before revoking.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }
}
