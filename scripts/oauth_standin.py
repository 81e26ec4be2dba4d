"""The OAuth stand-in of the mock upstream (scripts/mock_upstream.py serves it under /oauth/):
a Google-like OpenID provider and a GitHub-like OAuth app provider. Standard library only; the
RS256 key (2048-bit, primes by Miller-Rabin) is made once per process in the background.

Clients (the only credentials the token endpoints accept; `make dev` and the tests use them):
  google  client_id "tenantry-local-google"  client_secret "local-google-secret"
  github  client_id "tenantry-local-github"  client_secret "local-github-secret"

Google (OAUTH_GOOGLE_ISSUER = http://HOST/oauth/google):
  GET  /oauth/google/.well-known/openid-configuration -> {issuer, authorization_endpoint, token_endpoint, jwks_uri}
  GET  /oauth/google/jwks                              -> {keys: [{kty: RSA, kid, use: sig, alg: RS256, n, e}]}
  GET  /oauth/google/authorize?client_id&redirect_uri&state&code_challenge&code_challenge_method=S256&nonce
       -> 302 to redirect_uri?code=…&state=… (auto-approved)
  POST /oauth/google/token  grant_type=authorization_code, code, redirect_uri, client_id,
       client_secret, code_verifier -> {access_token, token_type, expires_in, scope, id_token}
       (400 {"error": "invalid_grant"} for an unknown, used or expired code, another
       redirect_uri or a verifier whose S256 is not the challenge; 401 invalid_client)
GitHub (OAUTH_GITHUB_BASE = http://HOST/oauth/github, OAUTH_GITHUB_API_BASE = …/oauth/github/api):
  GET  /oauth/github/login/oauth/authorize?…            -> 302 back with code and state
  POST /oauth/github/login/oauth/access_token           -> 200 {access_token, token_type, scope}
       or 200 {"error": "bad_verification_code" | "incorrect_client_credentials"} as GitHub does
  GET  /oauth/github/api/user         (Bearer token)    -> {id, login, name, email}
  GET  /oauth/github/api/user/emails  (Bearer token)    -> [{email, primary, verified, visibility}]

Who signs in, and the bad cases: query parameters added to the authorize URL (a test follows the
redirects itself and appends them) pick the approved account and a fault:
  mock_sub (default "local-user-1"), mock_email (default "dev.user@tenantry.local"), mock_name,
  mock_fault = signature (ID token signed, then a byte of the signature flipped) | aud (issued
  to another client) | expired | nonce (another nonce) | iss (another issuer) | unverified
  (email_verified false; GitHub: the primary e-mail unverified, a verified secondary one)
  | no_primary (GitHub: only a verified non-primary e-mail), mock_deny=1 -> back with
  error=access_denied. Calls are recorded under "oauth".
"""
import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse

CLIENTS = {
    "google": ("tenantry-local-google", "local-google-secret"),
    "github": ("tenantry-local-github", "local-github-secret"),
}
KID = "local-" + secrets.token_hex(4)
CODES = {}
TOKENS = {}
LOCK = threading.Lock()
_KEY = {}
_KEY_READY = threading.Event()

SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p ** 0.5) + 1, 2))]


def _probable_prime(n, rounds=40):
    if n < 2:
        return False
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits):
    while True:
        c = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probable_prime(c):
            return c


def _make_key():
    e = 65537
    while True:
        p, q = _prime(1024), _prime(1024)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e != 0:
            break
    n = p * q
    _KEY.update(n=n, e=e, d=pow(e, -1, phi))
    _KEY_READY.set()


threading.Thread(target=_make_key, daemon=True).start()


def key():
    _KEY_READY.wait(120)
    return _KEY


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(i):
    return i.to_bytes((i.bit_length() + 7) // 8, "big")


SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def sign_rs256(payload, fault=None):
    k = key()
    header = {"alg": "RS256", "kid": KID, "typ": "JWT"}
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())).encode()
    size = (k["n"].bit_length() + 7) // 8
    t = SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    em = b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t
    sig = pow(int.from_bytes(em, "big"), k["d"], k["n"]).to_bytes(size, "big")
    if fault == "signature":
        sig = sig[:-1] + bytes([sig[-1] ^ 0x01])
    return signing_input.decode() + "." + b64url(sig)


def jwks():
    k = key()
    return {"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                      "n": b64url(_int_bytes(k["n"])), "e": b64url(_int_bytes(k["e"]))}]}


def _redirect(handler, location):
    handler.send_response(302)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _with_query(url, pairs):
    parts = urllib.parse.urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urllib.parse.urlencode(pairs)
    return urllib.parse.urlunsplit(parts._replace(query=query))


def authorize(handler, provider, query):
    q = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
    redirect_uri = q.get("redirect_uri", "")
    if q.get("client_id") != CLIENTS[provider][0] or not redirect_uri:
        return handler.reply(400, {"error": "invalid_request", "error_description": "unknown client_id or no redirect_uri"})
    if q.get("mock_deny"):
        return _redirect(handler, _with_query(redirect_uri, {"error": "access_denied", "state": q.get("state", "")}))
    code = "mockcode-" + secrets.token_urlsafe(16)
    with LOCK:
        CODES[code] = {
            "provider": provider, "redirect_uri": redirect_uri, "at": time.time(), "used": False,
            "challenge": q.get("code_challenge"), "method": q.get("code_challenge_method"),
            "nonce": q.get("nonce"), "sub": q.get("mock_sub", "local-user-1"),
            "email": q.get("mock_email", "dev.user@tenantry.local"),
            "name": q.get("mock_name", "Dev User"), "fault": q.get("mock_fault"),
        }
    return _redirect(handler, _with_query(redirect_uri, {"code": code, "state": q.get("state", "")}))


def _client_ok(provider, form, headers):
    cid, secret = form.get("client_id"), form.get("client_secret")
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            cid, secret = base64.b64decode(auth[6:]).decode().split(":", 1)
        except ValueError:
            return False
    return (cid, secret) == CLIENTS[provider]


def _spend(provider, form):
    """The code's grant if the code, redirect_uri and PKCE verifier all fit (spent either way)."""
    with LOCK:
        grant = CODES.get(form.get("code", ""))
        if not grant or grant["used"] or grant["provider"] != provider or time.time() - grant["at"] > 60:
            return None
        grant["used"] = True
    verifier = form.get("code_verifier", "")
    if grant["method"] != "S256" or not verifier or \
            b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
        return None
    if form.get("redirect_uri") != grant["redirect_uri"]:
        return None
    return grant


def token(handler, provider, raw, host):
    form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    github = provider == "github"
    if not _client_ok(provider, form, handler.headers):
        if github:
            return handler.reply(200, {"error": "incorrect_client_credentials"})
        return handler.reply(401, {"error": "invalid_client"})
    if form.get("grant_type", "authorization_code" if github else "") != "authorization_code":
        return handler.reply(400, {"error": "unsupported_grant_type"})
    grant = _spend(provider, form)
    if grant is None:
        return handler.reply(200, {"error": "bad_verification_code"}) if github else \
            handler.reply(400, {"error": "invalid_grant"})
    access = ("gho_" if github else "ya29.") + secrets.token_urlsafe(24)
    with LOCK:
        TOKENS[access] = grant
    if github:
        return handler.reply(200, {"access_token": access, "token_type": "bearer", "scope": "read:user,user:email"})
    now = int(time.time())
    fault = grant["fault"]
    claims = {
        "iss": "https://evil.example" if fault == "iss" else f"http://{host}/oauth/google",
        "aud": "someone-else.apps" if fault == "aud" else CLIENTS["google"][0],
        "azp": "someone-else.apps" if fault == "aud" else CLIENTS["google"][0],
        "sub": grant["sub"], "email": grant["email"], "name": grant["name"],
        "email_verified": fault != "unverified",
        "nonce": "not-this-sign-ins-nonce" if fault == "nonce" else grant["nonce"],
        "iat": now - 7200 if fault == "expired" else now,
        "exp": now - 3600 if fault == "expired" else now + 3600,
    }
    return handler.reply(200, {"access_token": access, "token_type": "Bearer", "expires_in": 3599,
                               "scope": "openid email profile", "id_token": sign_rs256(claims, fault)})


def github_api(handler, rest):
    auth = handler.headers.get("Authorization", "")
    with LOCK:
        grant = TOKENS.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
    if grant is None or grant["provider"] != "github":
        return handler.reply(401, {"message": "Bad credentials", "status": "401"})
    digits = "".join(c for c in grant["sub"] if c.isdigit())
    user_id = int(digits) if digits else int(hashlib.sha256(grant["sub"].encode()).hexdigest()[:12], 16)
    if rest == ["user"]:
        return handler.reply(200, {"id": user_id, "login": grant["email"].split("@")[0],
                                   "name": grant["name"], "email": None})
    if rest == ["user", "emails"]:
        fault = grant["fault"]
        if fault == "no_primary":
            return handler.reply(200, [{"email": grant["email"], "primary": False, "verified": True, "visibility": None}])
        emails = [{"email": grant["email"], "primary": True, "verified": fault != "unverified", "visibility": "private"}]
        if fault == "unverified":
            emails.append({"email": "secondary-" + grant["email"], "primary": False, "verified": True, "visibility": None})
        return handler.reply(200, emails)
    return handler.reply(404, {"message": "Not Found"})


def handle(handler, parts, query, raw, host):
    """Serves /oauth/… (parts without the leading "oauth")."""
    if parts[:1] == ["google"]:
        rest = parts[1:]
        base = f"http://{host}/oauth/google"
        if rest == [".well-known", "openid-configuration"]:
            return handler.reply(200, {"issuer": base, "authorization_endpoint": base + "/authorize",
                                       "token_endpoint": base + "/token", "jwks_uri": base + "/jwks",
                                       "response_types_supported": ["code"],
                                       "id_token_signing_alg_values_supported": ["RS256"],
                                       "code_challenge_methods_supported": ["S256"]})
        if rest == ["jwks"]:
            return handler.reply(200, jwks())
        if rest == ["authorize"] and handler.command == "GET":
            return authorize(handler, "google", query)
        if rest == ["token"] and handler.command == "POST":
            return token(handler, "google", raw, host)
    if parts[:1] == ["github"]:
        rest = parts[1:]
        if rest == ["login", "oauth", "authorize"] and handler.command == "GET":
            return authorize(handler, "github", query)
        if rest == ["login", "oauth", "access_token"] and handler.command == "POST":
            return token(handler, "github", raw, host)
        if rest[:1] == ["api"] and handler.command == "GET":
            return github_api(handler, rest[1:])
    return handler.reply(404, {"error": f"no oauth mock for {handler.command} /oauth/{'/'.join(parts)}"})
