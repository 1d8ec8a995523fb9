-- wrk script for bench/compare.sh's "OCSP POST with nonce" row (issue 12): every request POSTs the same OCSP request
-- (application/ocsp-request, DER) read from a file. The request carries a nonce (RFC 8954), so the responder cannot
-- answer from its cache: it signs a fresh response for each request, and the row measures that signing path.
-- Sending one nonce again and again is fine for this: CertPortal echoes nonces and keeps no record of them.
--
--   wrk -t2 -c32 -d5s -s bench/ocsp-post.lua http://HOST:PORT -- REQUEST.der

local formatted

function init(args)
  local file = assert(io.open(assert(args[1], "ocsp-post.lua: the request file is missing"), "rb"))
  local body = file:read("*a")
  file:close()
  -- Formatted once: request() then costs nothing.
  formatted = wrk.format("POST", "/ocsp", { ["Content-Type"] = "application/ocsp-request" }, body)
end

function request()
  return formatted
end
