// Builds ../wwwroot/js/enroll.bundle.js (IIFE, window.CertPortalEnroll) from
// src/enroll.js and copies axe-core's axe.min.js to dist/ for the browser tests.
import { build } from "esbuild";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const pkg = JSON.parse(await readFile(resolve(here, "package.json"), "utf8"));
const outfile = resolve(here, "..", "wwwroot", "js", "enroll.bundle.js");

await build({
  entryPoints: [resolve(here, "src", "enroll.js")],
  outfile,
  bundle: true,
  format: "iife",
  globalName: "CertPortalEnroll",
  platform: "browser",
  target: ["es2020", "chrome100", "edge100", "firefox100", "safari15"],
  minify: true,
  legalComments: "eof",
  banner: {
    js:
      `/*! CertPortal enroll bundle: built from web/src/enroll.js by web/build.mjs ` +
      `(esbuild; pkijs ${pkg.dependencies.pkijs}, asn1js ${pkg.dependencies.asn1js}). Do not edit. */`,
  },
  logLevel: "info",
});

const axeSrc = require.resolve("axe-core/axe.min.js");
await mkdir(resolve(here, "dist"), { recursive: true });
await copyFile(axeSrc, resolve(here, "dist", "axe.min.js"));
console.log(`copied ${axeSrc} -> web/dist/axe.min.js`);
