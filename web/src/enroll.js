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
// Renewal: open the current digital ID, prove its key

const OID_PKCS8_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2";
const OID_KEY_BAG = "1.2.840.113549.1.12.10.1.1";
const OID_CERT_BAG = "1.2.840.113549.1.12.10.1.3";
const OID_RSA = "1.2.840.113549.1.1.1";
const OID_EC = "1.2.840.10045.2.1";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_CMS_DATA = "1.2.840.113549.1.7.1";
const OID_CMS_SIGNED_DATA = "1.2.840.113549.1.7.2";
const CURVES = { "1.2.840.10045.3.1.7": "P-256", "1.3.132.0.34": "P-384" };

function attributeValue(attrs, type) {
  const a = (attrs || []).find((x) => x.type === type);
  return a && a.values && a.values[0];
}

function mailboxOf(cert) {
  const ext = (cert.extensions || []).find((e) => e.extnID === OID_SUBJECT_ALT_NAME);
  const names = ext && ext.parsedValue && ext.parsedValue.altNames ? ext.parsedValue.altNames : [];
  const rfc822 = names.find((n) => n.type === 1);
  return rfc822 ? String(rfc822.value) : commonNameOf(cert);
}

function isCa(cert) {
  const ext = (cert.extensions || []).find((e) => e.extnID === OID_BASIC_CONSTRAINTS);
  return !!(ext && ext.parsedValue && ext.parsedValue.cA);
}

function importParamsFor(privateKeyInfo) {
  const alg = privateKeyInfo.privateKeyAlgorithm;
  if (alg.algorithmId === OID_RSA) return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  if (alg.algorithmId === OID_EC) {
    const curve = alg.algorithmParams && CURVES[alg.algorithmParams.valueBlock.toString()];
    if (curve) return { name: "ECDSA", namedCurve: curve };
  }
  throw new Error("The key in this file is neither RSA nor an EC P-256/P-384 key.");
}

/**
 * Opens a password-protected PKCS#12 (PBES2, as this page, CertPortal and OpenSSL 3 write them) in the
 * browser; nothing leaves the page. Returns the private key (usable for signing only), its certificate and
 * the mailbox it is for.
 * @param {Uint8Array|ArrayBuffer} bytes the .p12 file
 * @param {string} password
 * @returns {Promise<{privateKey: CryptoKey, certificateDer: Uint8Array, serialNumber: string, email: string, friendlyName: string}>}
 */
export async function openPkcs12(bytes, password) {
  const engine = getEngine();
  const c = getSubtleCrypto();
  const passwordBytes = new TextEncoder().encode(password);
  let pfx;
  try {
    pfx = pkijs.PFX.fromBER(toUint8Array(bytes, "PKCS#12"));
  } catch {
    throw new Error("This file is not a digital ID (.p12 / .pfx) file.");
  }
  try {
    await pfx.parseInternalValues({ password: passwordBytes, checkIntegrity: true }, engine);
  } catch {
    throw new Error("The password does not open this file (or the file is damaged).");
  }
  const safe = pfx.parsedValue.authenticatedSafe;
  const parts = safe.safeContents.length;
  try {
    await safe.parseInternalValues({ safeContents: Array.from({ length: parts }, () => ({ password: passwordBytes })) }, engine);
  } catch {
    throw new Error("This file's contents cannot be opened here (it may use old encryption: export it again with AES).");
  }
  const keys = [];
  const certs = [];
  for (const part of safe.parsedValue.safeContents) {
    for (const bag of part.value.safeBags) {
      const localKeyId = attributeValue(bag.bagAttributes, OID_PKCS9_LOCAL_KEY_ID);
      const friendly = attributeValue(bag.bagAttributes, OID_PKCS9_FRIENDLY_NAME);
      const ids = {
        localKeyId: localKeyId ? new Uint8Array(localKeyId.valueBlock.valueHexView) : null,
        friendlyName: friendly ? String(friendly.valueBlock.value) : "",
      };
      if (bag.bagId === OID_PKCS8_SHROUDED_KEY_BAG) {
        await bag.bagValue.parseInternalValues({ password: passwordBytes }, engine);
        keys.push({ info: bag.bagValue.parsedValue, ...ids });
      } else if (bag.bagId === OID_KEY_BAG) {
        keys.push({ info: bag.bagValue, ...ids });
      } else if (bag.bagId === OID_CERT_BAG && bag.bagValue.parsedValue) {
        certs.push({ cert: bag.bagValue.parsedValue, ...ids });
      }
    }
  }
  if (keys.length !== 1) throw new Error("This file does not hold exactly one private key.");
  const key = keys[0];
  const match = (key.localKeyId && certs.find((x) => x.localKeyId && bytesEqual(x.localKeyId, key.localKeyId))) ||
    certs.find((x) => !isCa(x.cert));
  if (!match) throw new Error("This file holds no certificate for its key.");
  const pkcs8 = new Uint8Array(key.info.toSchema().toBER(false));
  const privateKey = await c.subtle.importKey("pkcs8", pkcs8, importParamsFor(key.info), false, ["sign"]);
  return {
    privateKey,
    certificateDer: new Uint8Array(match.cert.toSchema(true).toBER(false)),
    // Upper-case hex as CertPortal and openssl print it (the page asks the server how this ID renews).
    serialNumber: Array.from(new Uint8Array(match.cert.serialNumber.valueBlock.valueHexView),
      (b) => b.toString(16).padStart(2, "0")).join("").toUpperCase(),
    email: mailboxOf(match.cert),
    friendlyName: key.friendlyName || match.friendlyName,
  };
}

/**
 * The renewal request CertPortal's POST /api/v1/renewals takes: a CMS SignedData (RFC 5652) whose content
 * is the new CSR (DER), signed by the current certificate's key with signingTime, carrying that certificate.
 * The same as `openssl cms -sign -nodetach -binary -in new.csr.der -signer old.pem -inkey old.key`.
 * @param {CryptoKey} privateKey the current key (from openPkcs12)
 * @param {Uint8Array} certificateDer the current certificate
 * @param {string} csrPem the new request (from createCsrPem)
 * @returns {Promise<string>} base64 DER ContentInfo
 */
export async function signRenewalRequest(privateKey, certificateDer, csrPem) {
  return signRenewalContent(privateKey, certificateDer, pemToDer(csrPem, "CERTIFICATE REQUEST"));
}

/**
 * The same CMS SignedData over any content: for an ID whose key the server generates and escrows, the content is
 * the JSON text {"keyAlgorithm":"RSA-2048","requestIdAndPasswordSha256":"…"} instead of a CSR (renew-page.js).
 * @param {CryptoKey} privateKey the current key (from openPkcs12)
 * @param {Uint8Array} certificateDer the current certificate
 * @param {Uint8Array} content what is signed (encapsulated, not detached)
 * @returns {Promise<string>} base64 DER ContentInfo
 */
export async function signRenewalContent(privateKey, certificateDer, content) {
  const engine = getEngine();
  const c = getSubtleCrypto();
  const cert = pkijs.Certificate.fromBER(toUint8Array(certificateDer, "certificate"));
  const signed = toUint8Array(content, "content");
  const digest = await c.subtle.digest("SHA-256", signed);
  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: OID_CMS_DATA,
      eContent: new asn1js.OctetString({ valueHex: signed }),
    }),
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({
          type: 0,
          attributes: [
            new pkijs.Attribute({ type: "1.2.840.113549.1.9.3", values: [new asn1js.ObjectIdentifier({ value: OID_CMS_DATA })] }),
            new pkijs.Attribute({ type: "1.2.840.113549.1.9.5", values: [new asn1js.UTCTime({ valueDate: new Date() })] }),
            new pkijs.Attribute({ type: "1.2.840.113549.1.9.4", values: [new asn1js.OctetString({ valueHex: digest })] }),
          ],
        }),
      }),
    ],
    certificates: [cert],
  });
  await signedData.sign(privateKey, 0, "SHA-256", undefined, engine);
  const contentInfo = new pkijs.ContentInfo({ contentType: OID_CMS_SIGNED_DATA, content: signedData.toSchema(true) });
  return base64Encode(new Uint8Array(contentInfo.toSchema().toBER(false)));
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
