#!/usr/bin/env python3
"""oss-front: reverse proxy in front of a real S3 server (SeaweedFS from
scripts/s3-server.sh) that behaves like Alibaba OSS where OSS differs from S3,
so tests can use it as a migration destination and see OSS behaviour.

  python3 scripts/oss-front.py --upstream http://127.0.0.1:PORT [--port 0]
      [--throttle-every N] [--max-rps N] [--access-key testkey] [--secret-key testsecret]
      [--verbose]

Binds 127.0.0.1 (port 0: a free one), prints exactly one line
`OSS_ENDPOINT=http://127.0.0.1:PORT` once listening, serves until SIGTERM or
SIGINT (exit 0). --verbose: one stderr line per request (method path status).
Python 3.11, standard library only.

Emulated:
- Forwarding: method, path+query, body and headers unchanged except hop-by-hop
  ones (Host kept as sent: SigV4 covers it). HTTP/1.1 keep-alive, chunked
  request bodies and `Expect: 100-continue`; every answer has Content-Length.
- 400 InvalidArgument (body read and discarded first) for any `x-amz-checksum-*`
  header (`x-amz-checksum-mode` included), `x-amz-sdk-checksum-algorithm`,
  `Content-Encoding: aws-chunked` or `x-amz-content-sha256: STREAMING-...`.
- Upper-case ETags inside their quotes: the ETag header of every response, and
  <ETag> elements (also &quot; forms) of every XML answer but object data.
- `x-oss-hash-crc64ecma` (CRC-64/XZ, decimal) on PUT object, UploadPart,
  CompleteMultipartUpload, HEAD object and full GET object (200, no Range).
  Approach: PUT/UploadPart hash the request body as it streams through; the
  proxy remembers (bucket, key) -> (etag, size, crc) and per uploadId each
  part's (etag, size, crc). Complete combines the CRCs of the parts its body
  names, in order (crc64_combine, GF(2) algebra as zlib's crc32_combine). When
  a HEAD/GET finds no record whose ETag matches the answer (object written
  elsewhere or before the proxy started), or a Complete names unknown parts,
  the proxy GETs the object from the upstream itself (SigV4 with --access-key/
  --secret-key), hashes it, and only then answers.
  CRC speed: the 256-entry table is the reference (small inputs, start-up
  self-test); bigger buffers use the same CRC as big-integer GF(2) arithmetic
  (mod P by folding halves, carry-less multiply with 4-bit windows), 60-100 MB/s.
- ETags are case-insensitive like OSS's: <ETag>s in a CompleteMultipartUpload
  body and `If-Match`/`If-None-Match` headers are lower-cased for SeaweedFS
  (which compares case), and the request is re-signed (same signed headers and
  date) with --access-key/--secret-key.
- User metadata answered as `x-oss-meta-*` (OSS's name for it) where the
  upstream says `x-amz-meta-*`; a request carrying more than 8 KiB of user
  metadata (names and values) is refused 400 MetadataTooLarge, as OSS does.
- --throttle-every N: request k (all counted, from 1) with k % N == 0 gets 503
  ServiceUnavailable + `x-oss-qos-delay-time: 1`, not forwarded (body drained);
  except that a request (method, path, query) throttled before and not seen
  since is never throttled: a retry always passes.
- --max-rps N: a bucket's QPS limit. Requests are admitted from a token bucket
  refilled at N per second holding a tenth of a second's worth (at least 1);
  a request that finds it empty gets 503 SlowDown ("Please reduce your
  request rate."), not forwarded (body drained). `GET /__front/stats` (never
  limited or forwarded) answers JSON {"accepted": [...], "refused": [...]}:
  requests per second since the front started, one entry per second.
- Every answer gets an `x-oss-request-id`.

Not emulated: OSS's own auth (clients sign SigV4, path style, region
us-east-1), virtual-hosted style, OSS-only APIs and x-oss-* request headers,
other OSS error codes, CRC on CopyObject/UploadPartCopy answers, versioning
(records are per key), If-Modified-Since & co.; SeaweedFS's own headers
(Seaweed-*) pass through.
"""
import argparse, base64, hashlib, hmac, http.client, http.server, re, signal, socket, sys, threading, time, uuid  # noqa: E401
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

# ---------------------------------------------------------------- CRC-64/XZ
M64 = (1 << 64) - 1
POLY_REFLECTED = 0xC96C5795D7870F42
P = (1 << 64) | 0x42F0E1EBA9EA3693  # the polynomial, normal bit order
TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ POLY_REFLECTED if _c & 1 else _c >> 1
    TABLE.append(_c)
REV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))  # bit-reverse a byte


def crc64_table(data, crc=0):
    c, t = crc ^ M64, TABLE
    for b in memoryview(data).cast("B"):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ M64


def _rev64(v):
    return int.from_bytes(v.to_bytes(8, "little").translate(REV), "big")


def _pmod_small(a):  # a mod P for a few hundred bits at most
    while (n := a.bit_length()) > 64:
        a ^= P << (n - 65)
    return a


def _clmul(h, k):  # carry-less h*k, k < 2^64, 4-bit windows
    t = [0, h]
    for i in range(2, 16):
        t.append(t[i >> 1] << 1 if not i & 1 else t[i - 1] ^ h)
    r = sh = 0
    while k:
        if k & 15:
            r ^= t[k & 15] << sh
        k >>= 4
        sh += 4
    return r


XP = [2]  # XP[k] = x^(2^k) mod P
for _ in range(64):
    XP.append(_pmod_small(_clmul(XP[-1], XP[-1])))


def _pmod(a):  # a mod P for any size: fold the top half down
    while (n := a.bit_length()) > 128:
        k = (n - 1).bit_length() - 1
        a = _clmul(a >> (1 << k), XP[k]) ^ (a & ((1 << (1 << k)) - 1))
    return _pmod_small(a)


def _xpow(n):  # x^n mod P
    r, k = 1, 0
    while n:
        if n & 1:
            r = _pmod_small(_clmul(r, XP[k]))
        n >>= 1
        k += 1
    return r


def crc64(data, crc=0):
    """CRC-64/XZ of data, continuing from crc (the CRC of what came before)."""
    if len(data) < 256:
        return crc64_table(data, crc)
    # Reflected CRC == normal CRC over bit-reversed bytes; register after the
    # message M (n bits) from init I: (I*x^n + M*x^64) mod P.
    n = len(data) * 8
    m = int.from_bytes(bytes(data).translate(REV), "big")
    return _rev64(_pmod((_rev64(crc ^ M64) << n) ^ (m << 64))) ^ M64


def crc64_combine(crc_a, crc_b, len_b):
    """CRC of A+B from CRC(A), CRC(B) and len(B) in bytes."""
    ra = _rev64(crc_a ^ M64) ^ M64  # register of A minus the init value
    return _rev64(_rev64(crc_b ^ M64) ^ _pmod_small(_clmul(ra, _xpow(8 * len_b)))) ^ M64


# ------------------------------------------------------------------- state
LOCK = threading.Lock()
OBJECTS = {}  # (bucket, key) -> (etag, size, crc)
PARTS = {}  # uploadId -> {part number: (etag, size, crc)}
THROTTLE = {"count": 0, "last": set()}
LIMIT = {"tokens": 0.0, "last": 0.0, "start": 0.0, "accepted": [], "refused": []}
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
       "transfer-encoding", "upgrade", "expect", "content-length"}
CHUNK = 256 << 10
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
HEXRUN = re.compile(rb"[0-9a-fA-F]{8,}")
ETAG_XML = re.compile(rb"(<ETag>)(.*?)(</ETag>)", re.S)
OPTS = None


META_LIMIT = 8192  # OSS's limit on user metadata, names and values


def oss_name(k):  # user metadata answered as OSS names it
    return "x-oss-meta-" + k[len("x-amz-meta-"):] if k.lower().startswith("x-amz-meta-") else k


def norm_etag(v):
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return v.replace("&quot;", "").replace("&#34;", "").strip().strip('"').lower()


def upper_hex(b):  # runs of >= 8 hex digits upper-cased (never touches &quot;)
    return HEXRUN.sub(lambda m: m.group().upper(), b)


def error_xml(code, message):
    rid = uuid.uuid4().hex[:24].upper()
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>{rid}</RequestId>"
            f"<HostId>oss-front</HostId></Error>").encode()


def sigv4(method, raw_path, raw_query, hdrs, signed, amzdate, scope):
    """Signature of a request; hdrs: lower-case name -> value."""
    enc = lambda s: quote(unquote(s), safe="-_.~")  # noqa: E731
    pairs = sorted((enc(k), enc(v)) for k, _, v in (p.partition("=") for p in raw_query.split("&") if p))
    creq = "\n".join([method, quote(unquote(raw_path or "/"), safe="/-_.~"),
                      "&".join(f"{k}={v}" for k, v in pairs),
                      "".join(f"{n}:{' '.join(hdrs.get(n, '').split())}\n" for n in signed),
                      ";".join(signed), hdrs.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")])
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + OPTS.secret_key).encode()
    for part in scope.split("/"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def fetch_crc(raw_path, region):
    """GETs an object from the upstream itself; (etag, size, crc) or None."""
    conn = http.client.HTTPConnection(OPTS.up_host, OPTS.up_port, timeout=300)
    try:
        amzdate = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        scope = f"{amzdate[:8]}/{region}/s3/aws4_request"
        hdrs = {"host": OPTS.up_netloc, "x-amz-content-sha256": EMPTY_SHA, "x-amz-date": amzdate}
        signed = sorted(hdrs)
        sig = sigv4("GET", raw_path, "", hdrs, signed, amzdate, scope)
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={OPTS.access_key}/{scope}, "
                                 f"SignedHeaders={';'.join(signed)}, Signature={sig}")
        del hdrs["host"]
        conn.request("GET", raw_path, headers=hdrs)
        r = conn.getresponse()
        crc = size = 0
        while chunk := r.read(CHUNK):
            crc, size = crc64(chunk, crc), size + len(chunk)
        return (norm_etag(r.getheader("ETag", "")), size, crc) if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# ----------------------------------------------------------------- handler
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 600
    upstream = None
    last_used = 0.0

    def log_message(self, fmt, *args):
        if OPTS.verbose:
            sys.stderr.write("oss-front: " + (fmt % args) + "\n")

    def body_chunks(self):
        """Yields the request body (Content-Length or chunked)."""
        def take(n):
            while n > 0:
                data = self.rfile.read(min(n, CHUNK))
                if not data:
                    raise ConnectionError("client body truncated")
                n -= len(data)
                yield data
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while size := int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16):
                yield from take(size)
                self.rfile.readline(65537)
            while self.rfile.readline(65537).strip():  # trailers
                pass
        else:
            yield from take(int(self.headers.get("Content-Length") or 0))

    def reply(self, status, headers, body=b"", length=None):
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("x-oss-request-id", uuid.uuid4().hex[:24].upper())
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.log_message("%s %s %d", self.command, self.path, status)

    def refuse(self, status, code, message, extra=()):
        for _ in self.body_chunks():
            pass
        self.reply(status, [("Content-Type", "application/xml"), *extra], error_xml(code, message))

    def connect_upstream(self):
        if self.upstream is None or time.monotonic() - self.last_used > 2:
            if self.upstream is not None:
                self.upstream.close()
            self.upstream = http.client.HTTPConnection(OPTS.up_host, OPTS.up_port, timeout=600)
            self.upstream.connect()
            self.upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return False
        return True

    def auth_parts(self):
        m = re.match(r"AWS4-HMAC-SHA256\s+Credential=([^/]+)/([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=(\w+)",
                     self.headers.get("Authorization", ""))
        return m.groups() if m else None

    def handle_any(self):
        url = urlsplit(self.path)
        raw_path, raw_query = url.path, url.query
        q = dict(parse_qsl(raw_query, keep_blank_values=True))
        q.pop("x-id", None)  # the Rust SDK adds ?x-id=PutObject etc.
        bucket, _, key = unquote(raw_path).lstrip("/").partition("/")
        h = {k.lower(): v for k, v in self.headers.items()}
        m = self.command
        auth = self.auth_parts()
        region = auth[1].split("/")[1] if auth and auth[1].count("/") >= 3 else "us-east-1"

        if m == "GET" and raw_path == "/__front/stats":
            with LOCK:
                body = ('{"accepted": %s, "refused": %s}' % (LIMIT["accepted"], LIMIT["refused"])).encode()
            return self.reply(200, [("Content-Type", "application/json")], body)

        # Throttling and refusals: answered here, body drained, nothing forwarded.
        if OPTS.max_rps:
            with LOCK:
                now = time.monotonic()
                cap = max(1.0, OPTS.max_rps / 10)
                LIMIT["tokens"] = min(cap, LIMIT["tokens"] + (now - LIMIT["last"]) * OPTS.max_rps)
                LIMIT["last"] = now
                taken = LIMIT["tokens"] >= 1.0
                if taken:
                    LIMIT["tokens"] -= 1.0
                sec = int(now - LIMIT["start"])
                for k in ("accepted", "refused"):
                    LIMIT[k].extend([0] * (sec + 1 - len(LIMIT[k])))
                LIMIT["accepted" if taken else "refused"][sec] += 1
            if not taken:
                return self.refuse(503, "SlowDown", "Please reduce your request rate.")
        if OPTS.throttle_every:  # a request seen throttled passes next time (retries)
            rk = (m, self.path)
            with LOCK:
                THROTTLE["count"] += 1
                hit = THROTTLE["count"] % OPTS.throttle_every == 0 and rk not in THROTTLE["last"]
                THROTTLE["last"].discard(rk)
                if hit:
                    THROTTLE["last"].add(rk)
            if hit:
                return self.refuse(503, "ServiceUnavailable", "Please reduce your request rate.",
                                   [("x-oss-qos-delay-time", "1")])
        if (any(k.startswith("x-amz-checksum-") for k in h) or "x-amz-sdk-checksum-algorithm" in h
                or "aws-chunked" in h.get("content-encoding", "").lower()
                or h.get("x-amz-content-sha256", "").upper().startswith("STREAMING-")):
            return self.refuse(400, "InvalidArgument",
                               "aws-chunked encoding and x-amz-checksum headers are not supported.")

        meta_bytes = sum(len(k) - len("x-amz-meta-") + len(v) for k, v in h.items()
                         if k.startswith(("x-amz-meta-", "x-oss-meta-")))
        if meta_bytes > META_LIMIT:
            return self.refuse(400, "MetadataTooLarge",
                               f"Your metadata headers exceed the maximum allowed metadata size ({META_LIMIT}).")

        copy = "x-amz-copy-source" in h
        put_obj = m == "PUT" and key and not copy and not q
        upload_part = m == "PUT" and not copy and "partNumber" in q and "uploadId" in q
        complete = m == "POST" and key and "uploadId" in q
        plain_q = all(k.startswith("response-") for k in q)
        read_obj = m in ("GET", "HEAD") and key and plain_q and "range" not in h
        object_data = m == "GET" and key and all(k.startswith("response-") or k in ("versionId", "partNumber") for k in q)

        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP]
        signed = auth[2].split(";") if auth else []
        if "expect" in signed:  # forward Expect only if the signature covers it
            headers.append(("Expect", h["expect"]))
        chunked = "chunked" in h.get("transfer-encoding", "").lower()
        if not chunked and "content-length" in h:
            headers.append(("Content-Length", h["content-length"]))
        body = self.body_chunks()
        parts_named = []
        if complete:  # small XML body: read it, lower-case its ETags, re-sign if changed
            data = b"".join(body)
            for blk in re.findall(rb"<Part>(.*?)</Part>", data, re.S):
                n, e = re.search(rb"<PartNumber>\s*(\d+)\s*<", blk), ETAG_XML.search(blk)
                parts_named.append((int(n.group(1)) if n else -1, norm_etag(e.group(2)) if e else ""))
            new = ETAG_XML.sub(lambda x: x.group(1) + x.group(2).lower() + x.group(3), data)
            if new != data and auth:
                data, fix = new, {}
                if "content-md5" in h:
                    fix["content-md5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
                if re.fullmatch(r"[0-9a-f]{64}", h.get("x-amz-content-sha256", "")):
                    fix["x-amz-content-sha256"] = hashlib.sha256(data).hexdigest()
                sig = sigv4(m, raw_path, raw_query, {**h, **fix}, signed, h.get("x-amz-date", ""), auth[1])
                fix["authorization"] = (f"AWS4-HMAC-SHA256 Credential={OPTS.access_key}/{auth[1]}, "
                                        f"SignedHeaders={auth[2]}, Signature={sig}")
                headers = [(k, fix.get(k.lower(), v)) for k, v in headers]
            body, chunked = iter([data]), False
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))

        # OSS compares ETags in conditions without regard to case (it sends
        # them upper case); SeaweedFS does not: lower-case them, re-signed.
        conds = {k: h[k].lower() for k in ("if-match", "if-none-match") if k in h and h[k] != h[k].lower()}
        if conds:
            fix = dict(conds)
            if auth and any(k in signed for k in conds):
                sig = sigv4(m, raw_path, raw_query, {**h, **fix}, signed, h.get("x-amz-date", ""), auth[1])
                fix["authorization"] = (f"AWS4-HMAC-SHA256 Credential={OPTS.access_key}/{auth[1]}, "
                                        f"SignedHeaders={auth[2]}, Signature={sig}")
            headers = [(k, fix.get(k.lower(), v)) for k, v in headers]

        # Forward.
        hashing = put_obj or upload_part
        crc = size = 0
        has_body = chunked or int(h.get("content-length") or 0) > 0
        for attempt in (0, 1):
            reused = False
            try:
                reused = self.connect_upstream()
                conn = self.upstream
                conn.putrequest(m, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                failed = None
                for data in body:
                    if hashing:
                        crc, size = crc64(data, crc), size + len(data)
                    if failed is None:
                        try:
                            conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                        except OSError as e:
                            failed = e  # keep draining the client's body, then read the answer
                if chunked and failed is None:
                    conn.send(b"0\r\n\r\n")
                resp = conn.getresponse()
                break
            except (http.client.HTTPException, OSError) as e:
                if self.upstream is not None:
                    self.upstream.close()
                self.upstream = None
                if attempt == 0 and reused and not has_body and not isinstance(e, TimeoutError):
                    continue
                for _ in body:
                    pass
                self.close_connection = True
                return self.reply(502, [("Content-Type", "application/xml")],
                                  error_xml("InternalError", f"upstream: {e!r}"))
        self.last_used = time.monotonic()

        status, ok, xml = resp.status, 200 <= resp.status < 300, "xml" in (resp.getheader("Content-Type") or "")
        out = [(oss_name(k), upper_hex(v.encode("latin-1")).decode("latin-1") if k.lower() == "etag" else v)
               for k, v in resp.getheaders() if k.lower() not in HOP]
        no_body = m == "HEAD" or status in (204, 304) or status < 200
        buffered = complete or not no_body and (resp.length is None or xml and not object_data)
        data = resp.read() if buffered else None
        etag, record = norm_etag(resp.getheader("ETag", "")), None
        if ok and hashing:
            record = (etag, size, crc)
            with LOCK:
                if put_obj:
                    OBJECTS[(bucket, key)] = record
                else:
                    PARTS.setdefault(q["uploadId"], {})[int(q["partNumber"])] = record
        elif ok and complete and b"<CompleteMultipartUploadResult" in data:
            etag = norm_etag(mm.group(2)) if (mm := ETAG_XML.search(data)) else ""
            with LOCK:
                known = PARTS.pop(q["uploadId"], {})
            if parts_named and all(known.get(n, ("",))[0] == e for n, e in parts_named):
                crc = size = 0
                for n, _ in parts_named:
                    crc, size = crc64_combine(crc, known[n][2], known[n][1]), size + known[n][1]
                record = (etag, size, crc)
            else:
                record = fetch_crc(raw_path, region)
        elif status == 200 and read_obj:
            with LOCK:
                record = OBJECTS.get((bucket, key))
            if not record or record[0] != etag:
                record = fetch_crc(raw_path, region)
        elif ok and (m == "DELETE" or copy and m == "PUT"):
            with LOCK:
                PARTS.pop(q.get("uploadId") if m == "DELETE" else None, None)
                if not q:
                    OBJECTS.pop((bucket, key), None)
        if record and record[0] == etag:  # (a fetched object may have changed since)
            if complete or read_obj:
                with LOCK:
                    OBJECTS[(bucket, key)] = record
            out.append(("x-oss-hash-crc64ecma", str(record[2])))

        if buffered:
            if xml and not object_data:
                data = ETAG_XML.sub(lambda x: x.group(1) + upper_hex(x.group(2)) + x.group(3), data)
            return self.reply(status, out, data)
        if no_body:
            resp.read()
            return self.reply(status, out, length=resp.getheader("Content-Length", "0"))
        self.reply(status, out, length=resp.length)
        try:
            while chunk := resp.read(CHUNK):
                self.wfile.write(chunk)
        except (http.client.HTTPException, OSError):
            self.close_connection = True  # the client sees a short body
            raise
        finally:
            if resp.will_close or not resp.isclosed():
                self.upstream.close()
                self.upstream = None

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = handle_any

    def finish(self):
        super().finish()
        if self.upstream is not None:
            self.upstream.close()


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if OPTS.verbose and not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    global OPTS
    ap = argparse.ArgumentParser(description="OSS-behaving reverse proxy in front of an S3 server")
    ap.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT of the S3 server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--throttle-every", type=int, default=0)
    ap.add_argument("--max-rps", type=float, default=0)
    ap.add_argument("--access-key", default="testkey")
    ap.add_argument("--secret-key", default="testsecret")
    ap.add_argument("--verbose", action="store_true")
    OPTS = ap.parse_args()
    u = urlsplit(OPTS.upstream)
    if u.scheme != "http" or not u.hostname:
        ap.error("--upstream must be http://HOST:PORT")
    OPTS.up_host, OPTS.up_port, OPTS.up_netloc = u.hostname, u.port or 80, u.netloc
    # Self-test: fold == table, combine, check value.
    probe = bytes(range(256)) * 9 + b"xyz"
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA
    assert crc64(probe) == crc64_table(probe) == crc64_combine(crc64(probe[:700]), crc64(probe[700:]), len(probe) - 700)
    for sig in (signal.SIGTERM, signal.SIGINT):  # also when started with SIGINT ignored (`cmd &`)
        signal.signal(sig, lambda *_: sys.exit(0))
    LIMIT["start"] = LIMIT["last"] = time.monotonic()
    srv = Server(("127.0.0.1", OPTS.port), Handler)
    print(f"OSS_ENDPOINT=http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
