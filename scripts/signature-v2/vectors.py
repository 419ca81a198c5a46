#!/usr/bin/env python3
"""Reference implementation and test-vector generator for gateway signature v2.

This script implements docs/signature-v2.md (label
``connect-gateway-signature-v2``) from the specification alone, independently
of the TypeScript code, using only the Python standard library. It computes
default key ids (spec section 3), canonical requests and signatures (section 5)
and verifies requests (section 6, steps 1-7), then writes the test vectors to
test/fixtures/gateway-hmac-v2.json.

Usage:
    python3 scripts/signature-v2/vectors.py          # self-test, write the file
    python3 scripts/signature-v2/vectors.py --check  # self-test, compare byte for byte

Conventions: header values, method and request-target are Python ``str``
where each character is one octet (ISO-8859-1 / latin1); bodies are ``bytes``;
secrets are ``str`` used as their UTF-8 bytes.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys

LABEL = "connect-gateway-signature-v2"
KEY_ID_MESSAGE = b"connect-gateway key id v2"
DEFAULT_MAX_SKEW = 30

H_TIMESTAMP = "X-Gateway-Timestamp"
H_REQUEST_ID = "X-Gateway-Request-Id"
H_SIGNATURE = "X-Gateway-Signature-V2"

# Spec section 4, in canonical order.
IDENTITY_HEADERS = [
    "X-Client-Id",
    "X-User-Id",
    "X-User-Email",
    "X-User-First-Name",
    "X-User-Last-Name",
    "X-User-Scopes",
    "X-Org-Id",
    "X-User-Role",
]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(name):
    """ASCII-only lower-casing of a header name (header names are case-insensitive)."""
    return name.translate(_ASCII_LOWER)


IDENTITY_LOWER = [_lower(h) for h in IDENTITY_HEADERS]
# Step 1: headers that must appear at most once.
SINGLETON_LOWER = [_lower(h) for h in (H_TIMESTAMP, H_REQUEST_ID, H_SIGNATURE,
                                       "Content-Type", "Content-Encoding")] + IDENTITY_LOWER

RE_DIGITS = re.compile(r"[0-9]+")
RE_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{22,128}")
RE_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
RE_SIG_HEADER = re.compile(r"([A-Za-z0-9._-]{1,64}):([0-9a-f]{64})")
RE_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
RE_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# --------------------------------------------------------------------------
# Section 3: key id
# --------------------------------------------------------------------------

def key_id(secret: str) -> str:
    """Default key id: first 16 hex chars of HMAC-SHA256(secret, "connect-gateway key id v2")."""
    mac = hmac.new(secret.encode("utf-8"), KEY_ID_MESSAGE, hashlib.sha256).hexdigest()
    return mac[:16]


# --------------------------------------------------------------------------
# Section 5: canonical request and signature
# --------------------------------------------------------------------------

def _octets(value: str) -> bytes:
    """Map a str to octets one character per octet; raises UnicodeEncodeError above U+00FF."""
    return value.encode("latin-1")


def _field(value) -> bytes:
    if value is None:
        return b"-\n"
    data = value if isinstance(value, bytes) else _octets(value)
    return str(len(data)).encode("ascii") + b":" + data + b"\n"


def canonical_request(kid, method, target, timestamp, request_id, body_sha256,
                      content_type, content_encoding, identity) -> bytes:
    """Build the canonical request octets.

    ``identity`` is a list of 8 values (str or None for absent) in the order of
    IDENTITY_HEADERS. ``content_type`` / ``content_encoding`` are str or None.
    """
    if len(identity) != len(IDENTITY_HEADERS):
        raise ValueError("identity must have 8 entries")
    fields = [kid, method, target, timestamp, request_id, body_sha256,
              content_type, content_encoding] + list(identity)
    for i in range(6):
        if fields[i] is None:
            raise ValueError("field %d may not be absent" % (i + 1))
    if identity[0] is None:
        raise ValueError("X-Client-Id may not be absent")
    return (LABEL + "\n").encode("ascii") + b"".join(_field(f) for f in fields)


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _group_headers(headers):
    groups = {}
    for name, value in headers:
        groups.setdefault(_lower(name), []).append(value)
    return groups


def _signed_values(groups):
    """Content-Type, Content-Encoding and the 8 identity values (None if absent)."""
    def one(lname):
        vals = groups.get(lname)
        return None if vals is None else vals[0]
    return one("content-type"), one("content-encoding"), [one(h) for h in IDENTITY_LOWER]


def _check_header_value(value):
    """Section 2 signer rule for header values."""
    try:
        data = _octets(value)
    except UnicodeEncodeError:
        raise ValueError("header value has a character above U+00FF: %r" % value)
    for b in data:
        if not (b == 0x09 or b == 0x20 or 0x21 <= b <= 0x7E or b >= 0x80):
            raise ValueError("header value has a forbidden octet: %r" % value)
    if data[:1] in (b" ", b"\t") or data[-1:] in (b" ", b"\t"):
        raise ValueError("header value begins or ends with SP/HTAB: %r" % value)


def canonical_for_signing(secret, method, target, headers, body, timestamp, request_id, kid=None):
    """Apply the section 2 signer checks and return (key_id, body_sha256, canonical request)."""
    kid = key_id(secret) if kid is None else kid
    if not RE_TOKEN.fullmatch(method):
        raise ValueError("method is not a token: %r" % method)
    try:
        tdata = _octets(target)
    except UnicodeEncodeError:
        raise ValueError("target has a character above U+00FF")
    if not tdata or any(not (0x21 <= b <= 0x7E or b >= 0x80) for b in tdata):
        raise ValueError("bad request-target: %r" % target)
    if not RE_DIGITS.fullmatch(timestamp):
        raise ValueError("timestamp is not digits")
    if not RE_REQUEST_ID.fullmatch(request_id):
        raise ValueError("bad request id")
    if not RE_KEY_ID.fullmatch(kid):
        raise ValueError("bad key id")
    for _, value in headers:
        _check_header_value(value)
    groups = _group_headers(headers)
    for lname in SINGLETON_LOWER:
        if len(groups.get(lname, [])) > 1:
            raise ValueError("header repeated: %s" % lname)
    for lname in (_lower(H_TIMESTAMP), _lower(H_REQUEST_ID), _lower(H_SIGNATURE)):
        if lname in groups:
            raise ValueError("gateway header already present: %s" % lname)
    content_type, content_encoding, identity = _signed_values(groups)
    if identity[0] is None or identity[0] == "":
        raise ValueError("X-Client-Id is required")
    body_sha = hashlib.sha256(body).hexdigest()
    assert RE_SHA256_HEX.fullmatch(body_sha)
    canon = canonical_request(kid, method, target, timestamp, request_id, body_sha,
                              content_type, content_encoding, identity)
    return kid, body_sha, canon


def sign(secret, method, target, headers, body, timestamp, request_id, kid=None) -> str:
    """Return the 64-hex signature of a request (headers exclude the gateway headers)."""
    _, _, canon = canonical_for_signing(secret, method, target, headers, body,
                                        timestamp, request_id, kid)
    return _hmac_hex(secret, canon)


# --------------------------------------------------------------------------
# Section 6: verification
# --------------------------------------------------------------------------

def verify(request, secrets, now, max_skew=DEFAULT_MAX_SKEW, seen_request_ids=()):
    """Verify a received request; returns (ok, reason).

    ``request``: {"method": str, "target": str, "headers": [[name, value], ...],
    and "body": bytes or "body_hex": str}. ``secrets``: list of str, looked up
    by their default key ids. If ``seen_request_ids`` is a set, an accepted
    request id is added to it (step 7's memory).
    """
    headers = request["headers"]
    body = request["body"] if "body" in request else bytes.fromhex(request["body_hex"])
    groups = _group_headers(headers)

    # 1. No repeats.
    for lname in SINGLETON_LOWER:
        if len(groups.get(lname, [])) > 1:
            return False, "malformed_gateway_headers"

    def get(name):
        vals = groups.get(_lower(name))
        return None if vals is None else vals[0]

    # 2. Presence.
    for name in (H_TIMESTAMP, H_REQUEST_ID, H_SIGNATURE, "X-Client-Id"):
        v = get(name)
        if v is None or v == "":
            return False, "missing_gateway_headers"
    timestamp = get(H_TIMESTAMP)
    request_id = get(H_REQUEST_ID)
    sig_header = get(H_SIGNATURE)

    # 3. Format.
    if not RE_DIGITS.fullmatch(timestamp):
        return False, "malformed_gateway_headers"
    if not RE_REQUEST_ID.fullmatch(request_id):
        return False, "malformed_gateway_headers"
    m = RE_SIG_HEADER.fullmatch(sig_header)
    if not m:
        return False, "malformed_gateway_headers"
    kid, signature = m.group(1), m.group(2)

    # 4. Nothing unsigned that looks like identity.
    for name, _ in headers:
        lname = _lower(name)
        norm = lname.replace("_", "-")
        if norm in ("x-client-id", "x-org-id") or norm.startswith("x-user-"):
            if lname not in IDENTITY_LOWER:
                return False, "unsigned_identity"

    # 5. Window.
    if abs(now - int(timestamp)) > max_skew:
        return False, "timestamp_out_of_window"

    # 6. Signature.
    by_kid = {}
    for s in secrets:
        by_kid.setdefault(key_id(s), s)
    secret = by_kid.get(kid)
    if secret is None:
        return False, "invalid_signature"
    content_type, content_encoding, identity = _signed_values(groups)
    try:
        canon = canonical_request(kid, request["method"], request["target"], timestamp,
                                  request_id, hashlib.sha256(body).hexdigest(),
                                  content_type, content_encoding, identity)
    except UnicodeEncodeError:
        # Section 2: a value above U+00FF cannot have come from the wire.
        return False, "invalid_signature"
    expected = _hmac_hex(secret, canon)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        return False, "invalid_signature"

    # 7. Replay.
    if request_id in seen_request_ids:
        return False, "replayed_request"
    if isinstance(seen_request_ids, set):
        seen_request_ids.add(request_id)
    return True, None


# --------------------------------------------------------------------------
# Vector generation
# --------------------------------------------------------------------------

SECRET = "gateway-test-hmac-secret-0123456789"
SECRET_OTHER = "another-service-secret-for-negative-tests"
SECRET_OLD = "rotation-secret-2025-old"
SECRET_NEW = "rotation-secret-2026-new"
SECRET_UNICODE = "cl\u00e9-secr\u00e8te-\u043a\u043b\u044e\u0447-\U0001f511"
T0 = 1767225600  # 2026-01-01T00:00:00Z


def rid(name, nbytes=16):
    """Deterministic base64url request id (no padding) derived from a name."""
    raw = hashlib.sha256(("request-id:" + name).encode("utf-8")).digest()
    while len(raw) < nbytes:
        raw += hashlib.sha256(raw).digest()
    return base64.urlsafe_b64encode(raw[:nbytes]).decode("ascii").rstrip("=")


def _full_headers(vector):
    return [list(h) for h in vector["request"]["headers"]] + [list(h) for h in vector["gateway_headers"]]


class Builder:
    def __init__(self):
        self.valid = []
        self.invalid = []
        self.by_name = {}

    def add_valid(self, name, method, target, headers, body=b"", secret=SECRET,
                  ts=T0, now=None, request_id=None):
        timestamp = str(ts)
        request_id = rid(name) if request_id is None else request_id
        now = ts + 2 if now is None else now
        kid, body_sha, canon = canonical_for_signing(secret, method, target, headers, body,
                                                     timestamp, request_id)
        signature = sign(secret, method, target, headers, body, timestamp, request_id)
        assert signature == _hmac_hex(secret, canon)
        v = {
            "name": name,
            "secret": secret,
            "now": now,
            "timestamp": timestamp,
            "request_id": request_id,
            "request": {
                "method": method,
                "target": target,
                "headers": [list(h) for h in headers],
                "body_hex": body.hex(),
            },
            "body_sha256": body_sha,
            "canonical_hex": canon.hex(),
            "signature": signature,
            "gateway_headers": [
                [H_TIMESTAMP, timestamp],
                [H_REQUEST_ID, request_id],
                [H_SIGNATURE, "%s:%s" % (kid, signature)],
            ],
        }
        assert name not in self.by_name, name
        self.by_name[name] = v
        self.valid.append(v)
        return v

    def add_invalid(self, name, source, reason, headers=None, method=None, target=None,
                    body=None, secrets=None, now=None, seen=None, edit=None):
        """Derive an invalid vector from valid vector ``source``.

        ``edit`` is a function taking and returning the full received header list.
        """
        v = self.by_name[source]
        full = _full_headers(v)
        if headers is not None:
            full = headers
        if edit is not None:
            full = edit(full)
        inv = {
            "name": name,
            "secrets": list(secrets) if secrets is not None else [v["secret"]],
            "now": v["now"] if now is None else now,
            "seen_request_ids": list(seen) if seen is not None else [],
            "request": {
                "method": v["request"]["method"] if method is None else method,
                "target": v["request"]["target"] if target is None else target,
                "headers": [list(h) for h in full],
                "body_hex": v["request"]["body_hex"] if body is None else body.hex(),
            },
            "reason": reason,
        }
        assert all(i["name"] != name for i in self.invalid), name
        self.invalid.append(inv)
        return inv


# Header-list edit helpers -------------------------------------------------

def set_value(name, value):
    def f(hs):
        out, done = [], False
        for n, v in hs:
            if _lower(n) == _lower(name) and not done:
                out.append([n, value])
                done = True
            else:
                out.append([n, v])
        assert done, name
        return out
    return f


def remove(name):
    def f(hs):
        out = [[n, v] for n, v in hs if _lower(n) != _lower(name)]
        assert len(out) < len(hs), name
        return out
    return f


def add(name, value, before_gateway=True):
    def f(hs):
        out = [list(h) for h in hs]
        if before_gateway:
            idx = next(i for i, (n, _) in enumerate(out) if _lower(n).startswith("x-gateway-"))
            out.insert(idx, [name, value])
        else:
            out.append([name, value])
        return out
    return f


def repeat(name):
    def f(hs):
        out = [list(h) for h in hs]
        src = next(h for h in out if _lower(h[0]) == _lower(name))
        out.append([src[0], src[1]])
        return out
    return f


def chain(*fs):
    def f(hs):
        for g in fs:
            hs = g(hs)
        return hs
    return f


def get_header(hs, name):
    return next(v for n, v in hs if _lower(n) == _lower(name))


def set_sig(fn):
    """Rewrite the X-Gateway-Signature-V2 value with fn(kid, sig)."""
    def f(hs):
        kid, sig = get_header(hs, H_SIGNATURE).split(":", 1)
        return set_value(H_SIGNATURE, fn(kid, sig))(hs)
    return f


def build():
    b = Builder()
    JSON = "application/json"
    PROTO = "application/proto"

    # ---------------------------------------------------------------- valid
    b.add_valid("service call: POST JSON with only X-Client-Id", "POST",
                "/acme.billing.v1.InvoiceService/ListInvoices",
                [["Content-Type", JSON], ["X-Client-Id", "billing-batch-service"]],
                b'{"pageSize":50}')

    user_all = [
        ["Content-Type", JSON],
        ["Accept", JSON],
        ["X-Client-Id", "web-frontend"],
        ["X-User-Id", "user-7f3a9c"],
        ["X-User-Email", "ada@example.com"],
        ["X-User-First-Name", "Ada"],
        ["X-User-Last-Name", "Lovelace"],
        ["X-User-Scopes", "orders.read orders.write"],
        ["X-Org-Id", "org-42"],
        ["X-User-Role", "member"],
    ]
    b.add_valid("user call: POST JSON with all 8 identity headers", "POST",
                "/acme.orders.v1.OrderService/CreateOrder", user_all,
                b'{"sku":"ABC-123","quantity":2}', ts=T0 + 100)

    b.add_valid("GET with empty body and no Content-Type", "GET", "/healthz/details",
                [["Accept", JSON], ["X-Client-Id", "monitoring"]], b"", ts=T0 + 200)

    b.add_valid("Connect GET with query string", "GET",
                "/pkg.v1.Svc/Method?encoding=proto&message=CgVoZWxsbw&connect=v1",
                [["X-Client-Id", "web-frontend"], ["X-User-Id", "user-7f3a9c"]],
                b"", ts=T0 + 300)

    b.add_valid("target with a trailing empty query '?'", "POST", "/pkg.v1.Svc/Method?",
                [["Content-Type", JSON], ["X-Client-Id", "web-frontend"], ["X-User-Id", "user-1"]],
                b"{}", ts=T0 + 400)

    b.add_valid("target with percent-encodings and a literal '..' segment, signed as sent", "GET",
                "/files/a%2Fb/../c%20d/%E2%9C%93?q=%3D%26&path=..%2F..",
                [["X-Client-Id", "file-browser"]], b"", ts=T0 + 500)

    b.add_valid("latin1 octets in header values (first name Jos\u00e9 = 0xE9)", "POST",
                "/acme.users.v1.UserService/UpdateProfile",
                [["Content-Type", JSON], ["X-Client-Id", "web-frontend"], ["X-User-Id", "user-jose"],
                 ["X-User-First-Name", "Jos\u00e9"], ["X-User-Last-Name", "Mu\u00f1oz"]],
                b'{"locale":"es"}', ts=T0 + 600)

    b.add_valid("values containing '|', ':' and digits", "POST",
                "/acme.orders.v1.OrderService/GetOrder",
                [["Content-Type", JSON], ["X-Client-Id", "client|1:2"], ["X-User-Id", "123:456|789"],
                 ["X-User-Last-Name", "5:hello"], ["X-User-Role", "admin|owner:42"]],
                b'{"id":"1|2:3"}', ts=T0 + 700)

    email_headers = [["Content-Type", JSON], ["X-Client-Id", "web-frontend"], ["X-User-Id", "user-noemail"]]
    twin_rid = rid("empty vs absent X-User-Email")
    b.add_valid("empty-but-present X-User-Email", "POST", "/acme.users.v1.UserService/GetMe",
                email_headers + [["X-User-Email", ""]], b"{}", ts=T0 + 800, request_id=twin_rid)
    b.add_valid("absent X-User-Email (twin of the empty one, same timestamp and request id)", "POST",
                "/acme.users.v1.UserService/GetMe", email_headers, b"{}", ts=T0 + 800,
                request_id=twin_rid)

    gz_body = bytes([0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]) + bytes(range(256)) + b"\r\n\x00\n"
    b.add_valid("Content-Encoding gzip with a binary body", "POST",
                "/acme.blobs.v1.BlobService/Upload",
                [["Content-Type", PROTO], ["Content-Encoding", "gzip"], ["X-Client-Id", "uploader"],
                 ["X-User-Id", "user-7f3a9c"]], gz_body, ts=T0 + 900)

    b.add_valid("PATCH method", "PATCH", "/v1/users/user-7f3a9c?update_mask=email",
                [["Content-Type", JSON], ["X-Client-Id", "web-frontend"], ["X-User-Id", "user-7f3a9c"]],
                b'{"email":"new@example.com"}', ts=T0 + 1000)

    pattern = b"0123456789abcdef-connect-gateway\n"
    large = (pattern * (102400 // len(pattern) + 1))[:102400]
    b.add_valid("large body: 100 KiB of a repeated pattern", "POST",
                "/acme.blobs.v1.BlobService/Upload",
                [["Content-Type", "application/octet-stream"], ["X-Client-Id", "uploader"]],
                large, ts=T0 + 1100)

    b.add_valid("mixed-case header names", "POST", "/acme.orgs.v1.OrgService/GetOrg",
                [["content-TYPE", JSON], ["x-CLIENT-id", "web-frontend"], ["X-USER-ID", "user-7f3a9c"],
                 ["x-org-ID", "org-42"], ["X-User-role", "owner"]],
                b'{"orgId":"org-42"}', ts=T0 + 1200)

    b.add_valid("secret with non-ASCII characters (UTF-8 key)", "POST",
                "/acme.billing.v1.InvoiceService/ListInvoices",
                [["Content-Type", JSON], ["X-Client-Id", "billing-batch-service"]],
                b'{"pageSize":50}', secret=SECRET_UNICODE, ts=T0 + 1300)

    rot_headers = [["Content-Type", JSON], ["X-Client-Id", "web-frontend"], ["X-User-Id", "user-7f3a9c"]]
    rot_rid = rid("rotation")
    b.add_valid("rotation: signed with the old secret", "POST", "/acme.orders.v1.OrderService/ListOrders",
                rot_headers, b"{}", secret=SECRET_OLD, ts=T0 + 1400, request_id=rot_rid)
    b.add_valid("rotation: same request signed with the new secret", "POST",
                "/acme.orders.v1.OrderService/ListOrders",
                rot_headers, b"{}", secret=SECRET_NEW, ts=T0 + 1400, request_id=rot_rid)

    b.add_valid("scopes 'read write admin'", "POST", "/acme.admin.v1.AdminService/ListUsers",
                [["Content-Type", JSON], ["X-Client-Id", "admin-console"], ["X-User-Id", "user-root"],
                 ["X-User-Scopes", "read write admin"], ["X-Org-Id", "org-1"], ["X-User-Role", "admin"]],
                b"{}", ts=T0 + 1500)

    b.add_valid("window edge: timestamp exactly 30 s in the past", "POST",
                "/acme.billing.v1.InvoiceService/ListInvoices",
                [["Content-Type", JSON], ["X-Client-Id", "billing-batch-service"]],
                b'{"pageSize":10}', ts=T0 + 1600, now=T0 + 1630)

    b.add_valid("window edge: timestamp exactly 30 s in the future", "POST",
                "/acme.billing.v1.InvoiceService/ListInvoices",
                [["Content-Type", JSON], ["X-Client-Id", "billing-batch-service"]],
                b'{"pageSize":20}', ts=T0 + 1700, now=T0 + 1670)

    b.add_valid("request id of 128 characters using '-' and '_'", "POST",
                "/acme.billing.v1.InvoiceService/ListInvoices",
                [["Content-Type", JSON], ["X-Client-Id", "billing-batch-service"]],
                b"{}", ts=T0 + 1800, request_id=("Ab-_" + rid("long id", 96))[:128])

    b.add_valid("unrelated headers resembling identity ones (X-Username, X-Users-Count, X-Client)", "POST",
                "/acme.billing.v1.InvoiceService/ListInvoices",
                [["Content-Type", JSON], ["X-Client-Id", "billing-batch-service"], ["X-Username", "ada"],
                 ["X-Users-Count", "3"], ["X-Client", "curl"], ["X-Organisation", "acme"]],
                b"{}", ts=T0 + 1900)

    # -------------------------------------------------------------- invalid
    SVC = "service call: POST JSON with only X-Client-Id"
    USR = "user call: POST JSON with all 8 identity headers"
    svc = b.by_name[SVC]
    usr = b.by_name[USR]
    R = "invalid_signature"
    M = "malformed_gateway_headers"
    MISS = "missing_gateway_headers"
    U = "unsigned_identity"
    W = "timestamp_out_of_window"

    # Field 1: key id.
    b.add_invalid("field 1: unknown (well-formed) key id, signature unchanged [service call]", SVC, R,
                  edit=set_sig(lambda k, s: "0123456789abcdef:" + s))
    # Field 2: method.
    b.add_invalid("field 2: method POST changed to PUT [service call]", SVC, R, method="PUT")
    b.add_invalid("field 2: method case changed to 'post' [service call]", SVC, R, method="post")
    b.add_invalid("field 2: method PATCH changed to PUT [PATCH method]", "PATCH method", R, method="PUT")
    # Field 3: target.
    b.add_invalid("field 3: target case changed [service call]", SVC, R,
                  target="/acme.billing.v1.invoiceservice/ListInvoices")
    b.add_invalid("field 3: '?' added to target [service call]", SVC, R,
                  target="/acme.billing.v1.InvoiceService/ListInvoices?")
    b.add_invalid("field 3: trailing '?' removed from target [target with a trailing empty query '?']",
                  "target with a trailing empty query '?'", R, target="/pkg.v1.Svc/Method")
    b.add_invalid("field 3: query parameter changed [Connect GET with query string]",
                  "Connect GET with query string", R,
                  target="/pkg.v1.Svc/Method?encoding=proto&message=CgVoZWxsbA&connect=v1")
    b.add_invalid("field 3: '..' segment normalised away [percent-encodings target]",
                  "target with percent-encodings and a literal '..' segment, signed as sent", R,
                  target="/files/c%20d/%E2%9C%93?q=%3D%26&path=..%2F..")
    b.add_invalid("field 3: percent-encoding case changed %2F -> %2f [percent-encodings target]",
                  "target with percent-encodings and a literal '..' segment, signed as sent", R,
                  target="/files/a%2fb/../c%20d/%E2%9C%93?q=%3D%26&path=..%2F..")
    # Field 4: timestamp.
    b.add_invalid("field 4: timestamp changed by +5 s (inside the window), signature unchanged [service call]",
                  SVC, R, edit=set_value(H_TIMESTAMP, str(T0 + 5)))
    # Field 5: request id.
    b.add_invalid("field 5: request id changed, signature unchanged [service call]", SVC, R,
                  edit=set_value(H_REQUEST_ID, rid("another request id")))
    # Field 6: body.
    body = bytearray(bytes.fromhex(svc["request"]["body_hex"]))
    body[-2] ^= 0x01
    b.add_invalid("field 6: one body byte changed [service call]", SVC, R, body=bytes(body))
    large = bytearray(bytes.fromhex(b.by_name["large body: 100 KiB of a repeated pattern"]["request"]["body_hex"]))
    large[-1] ^= 0x20
    b.add_invalid("field 6: last byte of the 100 KiB body changed [large body]",
                  "large body: 100 KiB of a repeated pattern", R, body=bytes(large))
    b.add_invalid("field 6: 100 KiB body truncated by one byte [large body]",
                  "large body: 100 KiB of a repeated pattern", R, body=bytes(large[:-1]))
    b.add_invalid("field 6: body emptied [service call]", SVC, R, body=b"")
    # Field 7: content type.
    b.add_invalid("field 7: Content-Type changed [service call]", SVC, R,
                  edit=set_value("Content-Type", "application/json; charset=utf-8"))
    b.add_invalid("field 7: Content-Type removed [service call]", SVC, R, edit=remove("Content-Type"))
    b.add_invalid("field 7: Content-Type added [GET with empty body and no Content-Type]",
                  "GET with empty body and no Content-Type", R, edit=add("Content-Type", "application/json"))
    # Field 8: content encoding.
    b.add_invalid("field 8: Content-Encoding gzip added [service call]", SVC, R,
                  edit=add("Content-Encoding", "gzip"))
    b.add_invalid("field 8: Content-Encoding removed [Content-Encoding gzip]",
                  "Content-Encoding gzip with a binary body", R, edit=remove("Content-Encoding"))
    b.add_invalid("field 8: Content-Encoding changed gzip -> br [Content-Encoding gzip]",
                  "Content-Encoding gzip with a binary body", R, edit=set_value("Content-Encoding", "br"))
    # Fields 9-16: each identity value changed.
    changed = {
        "X-Client-Id": "web-frontenD",
        "X-User-Id": "user-7f3a9d",
        "X-User-Email": "eve@example.com",
        "X-User-First-Name": "Eve",
        "X-User-Last-Name": "Byron",
        "X-User-Scopes": "orders.read orders.write admin",
        "X-Org-Id": "org-43",
        "X-User-Role": "admin",
    }
    for i, h in enumerate(IDENTITY_HEADERS):
        b.add_invalid("field %d: %s value changed [user call]" % (9 + i, h), USR, R,
                      edit=set_value(h, changed[h]))
    b.add_invalid("field 12: first name Jos\u00e9 changed to Jose [latin1]",
                  "latin1 octets in header values (first name Jos\u00e9 = 0xE9)", R,
                  edit=set_value("X-User-First-Name", "Jose"))
    b.add_invalid("field 12: first name as UTF-8 octets 'Jos\u00c3\u00a9' instead of latin1 0xE9 [latin1]",
                  "latin1 octets in header values (first name Jos\u00e9 = 0xE9)", R,
                  edit=set_value("X-User-First-Name", "Jos\u00c3\u00a9"))
    b.add_invalid("field 15: '|' and ':' moved in X-User-Role [values containing '|', ':']",
                  "values containing '|', ':' and digits", R,
                  edit=set_value("X-User-Role", "admin:owner|42"))
    # Presence changes of identity headers.
    b.add_invalid("identity header removed: X-User-Scopes present -> absent [user call]", USR, R,
                  edit=remove("X-User-Scopes"))
    b.add_invalid("identity header removed: X-User-Role present -> absent [user call]", USR, R,
                  edit=remove("X-User-Role"))
    b.add_invalid("identity header added: X-User-Email absent -> present [service call]", SVC, R,
                  edit=add("X-User-Email", "admin@example.com"))
    b.add_invalid("identity header added: X-User-Id absent -> present [service call]", SVC, R,
                  edit=add("X-User-Id", "user-root"))
    b.add_invalid("identity header added empty: X-User-Scopes absent -> '' [service call]", SVC, R,
                  edit=add("X-User-Scopes", ""))
    b.add_invalid("X-User-Email empty -> absent [empty-but-present X-User-Email]",
                  "empty-but-present X-User-Email", R, edit=remove("X-User-Email"))
    b.add_invalid("X-User-Email absent -> empty [absent X-User-Email twin]",
                  "absent X-User-Email (twin of the empty one, same timestamp and request id)", R,
                  edit=add("X-User-Email", ""))
    b.add_invalid("X-User-Email empty -> value [empty-but-present X-User-Email]",
                  "empty-but-present X-User-Email", R, edit=set_value("X-User-Email", "a@b.c"))
    # Unsigned identity.
    b.add_invalid("extra X-User-Admin: true [service call]", SVC, U, edit=add("X-User-Admin", "true"))
    b.add_invalid("extra X-User-Admin: true after the gateway headers [user call]", USR, U,
                  edit=add("X-User-Admin", "true", before_gateway=False))
    b.add_invalid("extra X_User_Scopes (underscore spelling) [service call]", SVC, U,
                  edit=add("X_User_Scopes", "admin"))
    b.add_invalid("extra x_org_id (underscore spelling) [service call]", SVC, U,
                  edit=add("x_org_id", "org-1"))
    b.add_invalid("extra X-USER-IMPERSONATE (upper case) [user call]", USR, U,
                  edit=add("X-USER-IMPERSONATE", "user-root"))
    b.add_invalid("extra X-User- (empty suffix) [service call]", SVC, U, edit=add("X-User-", "x"))
    # Repeats (step 1).
    b.add_invalid("X-Org-Id repeated with the same value [user call]", USR, M, edit=repeat("X-Org-Id"))
    b.add_invalid("X-Org-Id repeated with another case x-org-id [user call]", USR, M,
                  edit=add("x-org-id", "org-42", before_gateway=False))
    b.add_invalid("X-User-Id repeated [user call]", USR, M, edit=repeat("X-User-Id"))
    b.add_invalid("X-Client-Id repeated [service call]", SVC, M, edit=repeat("X-Client-Id"))
    b.add_invalid("Content-Type repeated [service call]", SVC, M, edit=repeat("Content-Type"))
    b.add_invalid("Content-Encoding repeated [Content-Encoding gzip]",
                  "Content-Encoding gzip with a binary body", M, edit=repeat("Content-Encoding"))
    b.add_invalid("X-Gateway-Timestamp repeated [service call]", SVC, M, edit=repeat(H_TIMESTAMP))
    b.add_invalid("X-Gateway-Request-Id repeated [service call]", SVC, M, edit=repeat(H_REQUEST_ID))
    b.add_invalid("X-Gateway-Signature-V2 repeated [service call]", SVC, M, edit=repeat(H_SIGNATURE))
    # Signature header format (step 3).
    b.add_invalid("signature in upper-case hex [service call]", SVC, M,
                  edit=set_sig(lambda k, s: k + ":" + s.upper()))
    b.add_invalid("signature 63 hex characters [service call]", SVC, M,
                  edit=set_sig(lambda k, s: k + ":" + s[:63]))
    b.add_invalid("signature 65 hex characters [service call]", SVC, M,
                  edit=set_sig(lambda k, s: k + ":" + s + "0"))
    b.add_invalid("signature without key id and colon [service call]", SVC, M,
                  edit=set_sig(lambda k, s: s))
    b.add_invalid("signature with empty key id ':<sig>' [service call]", SVC, M,
                  edit=set_sig(lambda k, s: ":" + s))
    b.add_invalid("key id with a character outside its alphabet ('/') [service call]", SVC, M,
                  edit=set_sig(lambda k, s: k[:8] + "/" + k[9:] + ":" + s))
    b.add_invalid("key id of 65 characters [service call]", SVC, M,
                  edit=set_sig(lambda k, s: (k * 5)[:65] + ":" + s))
    b.add_invalid("key id and signature separated by '=' instead of ':' [service call]", SVC, M,
                  edit=set_sig(lambda k, s: k + "=" + s))
    # Request id format.
    b.add_invalid("request id too short (21 characters) [service call]", SVC, M,
                  edit=set_value(H_REQUEST_ID, svc["request_id"][:21]))
    b.add_invalid("request id with '==' padding [service call]", SVC, M,
                  edit=set_value(H_REQUEST_ID, svc["request_id"] + "=="))
    b.add_invalid("request id with '+' (base64, not base64url) [service call]", SVC, M,
                  edit=set_value(H_REQUEST_ID, "+" + svc["request_id"][1:]))
    b.add_invalid("request id with '/' (base64, not base64url) [service call]", SVC, M,
                  edit=set_value(H_REQUEST_ID, svc["request_id"][:-1] + "/"))
    b.add_invalid("request id of 129 characters [service call]", SVC, M,
                  edit=set_value(H_REQUEST_ID, (svc["request_id"] * 6)[:129]))
    # Timestamp format.
    b.add_invalid("timestamp with a leading space [service call]", SVC, M,
                  edit=set_value(H_TIMESTAMP, " " + svc["timestamp"]))
    b.add_invalid("timestamp '1e9' [service call]", SVC, M, edit=set_value(H_TIMESTAMP, "1e9"))
    b.add_invalid("timestamp negative [service call]", SVC, M,
                  edit=set_value(H_TIMESTAMP, "-" + svc["timestamp"]))
    b.add_invalid("timestamp with fraction '.0' [service call]", SVC, M,
                  edit=set_value(H_TIMESTAMP, svc["timestamp"] + ".0"))
    b.add_invalid("timestamp with latin1 superscript one U+00B9 (not an ASCII digit) [service call]", SVC, M,
                  edit=set_value(H_TIMESTAMP, "\u00b9" + svc["timestamp"][1:]))
    # Presence (step 2).
    b.add_invalid("missing X-Gateway-Request-Id [service call]", SVC, MISS, edit=remove(H_REQUEST_ID))
    b.add_invalid("missing X-Gateway-Timestamp [service call]", SVC, MISS, edit=remove(H_TIMESTAMP))
    b.add_invalid("missing X-Client-Id [service call]", SVC, MISS, edit=remove("X-Client-Id"))
    b.add_invalid("missing X-Client-Id [user call]", USR, MISS, edit=remove("X-Client-Id"))
    b.add_invalid("empty X-Client-Id [service call]", SVC, MISS, edit=set_value("X-Client-Id", ""))
    b.add_invalid("empty X-Gateway-Request-Id [service call]", SVC, MISS, edit=set_value(H_REQUEST_ID, ""))
    b.add_invalid("empty X-Gateway-Timestamp [service call]", SVC, MISS, edit=set_value(H_TIMESTAMP, ""))
    b.add_invalid("empty X-Gateway-Signature-V2 [service call]", SVC, MISS, edit=set_value(H_SIGNATURE, ""))
    # Window (step 5).
    b.add_invalid("timestamp 31 s old [service call]", SVC, W, now=T0 + 31)
    b.add_invalid("timestamp 31 s in the future [service call]", SVC, W, now=T0 - 31)
    b.add_invalid("timestamp one hour old [user call]", USR, W, now=usr["now"] + 3600)
    # Wrong key (step 6).
    b.add_invalid("verifier holds only another secret [service call]", SVC, R, secrets=[SECRET_OTHER])
    b.add_invalid("verifier holds no secret [service call]", SVC, R, secrets=[])
    b.add_invalid("rotation: new-secret request, verifier holds only the old secret [rotation new]",
                  "rotation: same request signed with the new secret", R, secrets=[SECRET_OLD])
    old = b.by_name["rotation: signed with the old secret"]
    new = b.by_name["rotation: same request signed with the new secret"]
    b.add_invalid("rotation: old key id with the new secret's signature, verifier holds both [rotation]",
                  "rotation: same request signed with the new secret", R, secrets=[SECRET_OLD, SECRET_NEW],
                  edit=set_value(H_SIGNATURE, "%s:%s" % (key_id(SECRET_OLD), new["signature"])))
    b.add_invalid("rotation: new key id with the old secret's signature, verifier holds both [rotation]",
                  "rotation: signed with the old secret", R, secrets=[SECRET_OLD, SECRET_NEW],
                  edit=set_value(H_SIGNATURE, "%s:%s" % (key_id(SECRET_NEW), old["signature"])))
    b.add_invalid("UTF-8 secret: verifier holds an ASCII transliteration of the secret [non-ASCII secret]",
                  "secret with non-ASCII characters (UTF-8 key)", R,
                  secrets=["cle-secrete-klyuch-key"])
    # Replay (step 7).
    b.add_invalid("replayed request id [service call]", SVC, "replayed_request", seen=[svc["request_id"]])
    b.add_invalid("replayed request id [user call]", USR, "replayed_request",
                  seen=[rid("some other id"), usr["request_id"]])
    # Order of the checks.
    b.add_invalid("order: repeated Content-Type and missing request id -> step 1 first [service call]",
                  SVC, M, edit=chain(repeat("Content-Type"), remove(H_REQUEST_ID)))
    b.add_invalid("order: missing X-Client-Id and upper-case signature -> step 2 first [service call]",
                  SVC, MISS, edit=chain(remove("X-Client-Id"), set_sig(lambda k, s: k + ":" + s.upper())))
    b.add_invalid("order: X-User-Admin added and malformed timestamp -> step 3 first [service call]",
                  SVC, M, edit=chain(add("X-User-Admin", "true"), set_value(H_TIMESTAMP, "1e9")))
    b.add_invalid("order: X-User-Admin added and timestamp 31 s old -> step 4 first [service call]",
                  SVC, U, now=T0 + 31, edit=add("X-User-Admin", "true"))
    b.add_invalid("order: timestamp 31 s old and wrong secret -> step 5 first [service call]",
                  SVC, W, now=T0 + 31, secrets=[SECRET_OTHER])
    b.add_invalid("order: replayed id and body changed -> step 6 first [service call]",
                  SVC, R, seen=[svc["request_id"]], body=b'{"pageSize":51}')

    key_ids = [{"secret": s, "key_id": key_id(s)}
               for s in (SECRET, SECRET_OTHER, SECRET_OLD, SECRET_NEW, SECRET_UNICODE)]

    return {
        "description": (
            "Test vectors for gateway signature v2 (label connect-gateway-signature-v2), produced by "
            "scripts/signature-v2/vectors.py, an independent Python standard-library implementation of "
            "docs/signature-v2.md. key_ids lists secrets (used as UTF-8 bytes) and their default key ids. "
            "Each valid vector gives a request (method, request-target as sent, headers in order before the "
            "gateway adds its own, body as hex) with its body hash, canonical request octets (hex), signature "
            "and the gateway headers; request.headers followed by gateway_headers must verify with "
            "secrets=[secret] at now, max_skew_seconds=30 and no seen request ids. Each invalid vector is a "
            "mutation of a valid one, with all headers as received, the verifier's secrets, now and "
            "already-accepted request ids, and the reason of spec section 6 with which it must be refused. "
            "Header values, method and target are strings of one character per octet (latin1)."
        ),
        "label": LABEL,
        "max_skew_seconds": DEFAULT_MAX_SKEW,
        "key_ids": key_ids,
        "valid": b.valid,
        "invalid": b.invalid,
    }


def self_test(data):
    errors = []
    max_skew = data["max_skew_seconds"]
    names = [v["name"] for v in data["valid"]] + [v["name"] for v in data["invalid"]]
    if len(set(names)) != len(names):
        errors.append("vector names are not unique")
    for k in data["key_ids"]:
        if key_id(k["secret"]) != k["key_id"] or not re.fullmatch(r"[0-9a-f]{16}", k["key_id"]):
            errors.append("key id mismatch for %r" % k["secret"])
    for v in data["valid"]:
        req = dict(v["request"])
        req["headers"] = _full_headers(v)
        seen = set()
        ok, reason = verify(req, [v["secret"]], v["now"], max_skew, seen)
        if not ok:
            errors.append("valid vector %r refused: %s" % (v["name"], reason))
        # A second delivery of the same request must be refused as a replay.
        ok2, reason2 = verify(req, [v["secret"]], v["now"], max_skew, seen)
        if ok2 or reason2 != "replayed_request":
            errors.append("valid vector %r: replay not detected" % v["name"])
        body = bytes.fromhex(v["request"]["body_hex"])
        if hashlib.sha256(body).hexdigest() != v["body_sha256"]:
            errors.append("valid vector %r: body hash" % v["name"])
        if _hmac_hex(v["secret"], bytes.fromhex(v["canonical_hex"])) != v["signature"]:
            errors.append("valid vector %r: signature does not match canonical" % v["name"])
    for v in data["invalid"]:
        ok, reason = verify(v["request"], v["secrets"], v["now"], max_skew, set(v["seen_request_ids"]))
        if ok or reason != v["reason"]:
            errors.append("invalid vector %r: expected %s, got %s" % (v["name"], v["reason"], reason))
    by_name = {v["name"]: v for v in data["valid"]}
    a = by_name["empty-but-present X-User-Email"]["canonical_hex"]
    b = by_name["absent X-User-Email (twin of the empty one, same timestamp and request id)"]["canonical_hex"]
    if a == b:
        errors.append("empty and absent X-User-Email have the same canonical request")
    o = by_name["rotation: signed with the old secret"]["gateway_headers"][2][1].split(":")[0]
    n = by_name["rotation: same request signed with the new secret"]["gateway_headers"][2][1].split(":")[0]
    if o == n:
        errors.append("rotation secrets have the same key id")
    return errors


def render(data):
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "..", "test", "fixtures", "gateway-hmac-v2.json"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and fail if the file differs")
    ap.add_argument("--output", default=default_out, help="vector file (default: %(default)s)")
    args = ap.parse_args(argv)

    data = build()
    errors = self_test(data)
    if errors:
        for e in errors:
            print("self-test FAILED: " + e, file=sys.stderr)
        return 1
    text = render(data).encode("ascii")
    if args.check:
        try:
            with open(args.output, "rb") as f:
                current = f.read()
        except OSError as e:
            print("%s: cannot read (%s); run scripts/signature-v2/vectors.py to generate it"
                  % (args.output, e), file=sys.stderr)
            return 1
        if current != text:
            print("%s differs from what scripts/signature-v2/vectors.py generates; "
                  "run it without --check to regenerate" % args.output, file=sys.stderr)
            return 1
        print("%s is up to date (%d valid, %d invalid vectors)"
              % (args.output, len(data["valid"]), len(data["invalid"])))
        return 0
    with open(args.output, "wb") as f:
        f.write(text)
    print("wrote %s (%d valid, %d invalid vectors)" % (args.output, len(data["valid"]), len(data["invalid"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
