#!/usr/bin/env python3
"""Creates the first platform admin in a deployment's D1 database (`make admin`), so a real
deployment needs no hand-written SQL.

The password is hashed here, with seed.py's pw_hash (PBKDF2-HMAC-SHA256, 100,000 iterations,
the Worker's `pbkdf2_sha256$100000$<salt>$<hash>` format), so the Worker only ever sees the
hash and nothing changes per request. The platform tenant (`ten_platform`, as seed.py makes it)
is created if missing. The script asks D1 first and refuses (exit 1) if any platform_admin user
exists; the insert itself is conditional too, so two racing runs cannot create two. Further
admins are made by this one through `POST /api/v1/admin/users`.

No secret is left behind: the password is read with getpass (asked twice) or from an
environment variable the caller names (--password-env, for scripts; never from argv), the SQL
goes to wrangler with --command (no file on disk), wrangler's output is not shown unless it
fails (and then without the hash), and only the e-mail and the result are printed.

usage: create_admin.py [EMAIL] [--name NAME] [--password-env VAR]
                       [--remote | --local [--persist-to DIR]] [-c CONFIG] [--wrangler PATH]
"""
import argparse
import datetime
import getpass
import json
import os
import secrets
import subprocess
import sys
import unicodedata

sys.dont_write_bytecode = True  # importing seed.py leaves no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed import pw_hash, q  # noqa: E402  (one hash function for the seed and this script)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TENANT = "ten_platform"


def is_control(c):
    return unicodedata.category(c) == "Cc"


def check_email(value):
    """src/http/json.rs `email`: lower-cased, one plausible `local@domain.tld`, no spaces."""
    v = value.strip().lower()
    local, at, domain = v.partition("@")
    ok = (
        len(v.encode()) <= 254
        and at == "@"
        and local != ""
        and len(local.encode()) <= 64
        and "." in domain
        and not domain.startswith(".")
        and not domain.endswith(".")
        and ".." not in domain
        and "@" not in domain
        and not any(c.isspace() or is_control(c) for c in v)
    )
    if not ok:
        raise ValueError("email: must be a valid email address")
    return v


def check_password(value):
    """src/http/json.rs `password`: 8-128 characters."""
    if len(value) < 8:
        raise ValueError("password: must be at least 8 characters")
    if len(value) > 128:
        raise ValueError("password: must be at most 128 characters")
    return value


def check_name(value):
    """src/http/json.rs `text(_, 1, 200)`, as for a user's full_name."""
    v = value.strip()
    if not v:
        raise ValueError("name: must not be empty")
    if len(v) > 200:
        raise ValueError("name: must be at most 200 characters")
    if any(is_control(c) for c in v):
        raise ValueError("name: must not contain control characters")
    return v


def read_password(env_name):
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            sys.exit(f"create_admin: the environment variable {env_name} is not set or empty")
        return value
    if not sys.stdin.isatty():
        sys.exit("create_admin: no terminal to ask for the password; pass --password-env VAR")
    first = getpass.getpass("Password (8-128 characters): ")
    if getpass.getpass("Password again: ") != first:
        sys.exit("create_admin: the passwords differ; nothing was created")
    return first


class Wrangler:
    def __init__(self, args):
        self.exe = args.wrangler
        self.target = ["--remote"] if not args.local else ["--local"]
        if args.local and args.persist_to:
            self.target += ["--persist-to", args.persist_to]
        if args.config:
            self.target += ["-c", args.config]
        self.where = "local" if args.local else "remote"

    def execute(self, sql, redact=()):
        """Runs SQL (one or more statements) and returns wrangler's JSON results."""
        cmd = [self.exe, "d1", "execute", "DB", *self.target, "--json", "--command", sql]
        env = dict(os.environ, WRANGLER_SEND_METRICS="false")
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            sys.exit(f"create_admin: {self.exe} not found (run `make tools`)")
        if out.returncode != 0:
            try:  # with --json, wrangler reports {"error": {"text": ...}} on stdout
                text = json.loads(out.stdout)["error"]["text"]
            except (ValueError, KeyError, TypeError):
                text = (out.stdout + out.stderr).strip()
            for s in redact:
                text = text.replace(s, "<redacted>")
            hint = ""
            if "no such table" in text:
                hint = f"\n(apply the migrations first: wrangler d1 migrations apply DB --{self.where})"
            elif self.where == "remote":
                hint = "\n(not logged in? run `npx wrangler login` first)"
            sys.exit(f"create_admin: wrangler d1 execute ({self.where}) failed: {text}{hint}")
        try:
            return json.loads(out.stdout[out.stdout.index("[") :])
        except ValueError:
            sys.exit(f"create_admin: unexpected output from wrangler d1 execute:\n{out.stdout.strip()}")


def main():
    ap = argparse.ArgumentParser(description="Create the first platform admin in D1.")
    ap.add_argument("email", nargs="?", help="the admin's e-mail (asked for if omitted)")
    ap.add_argument("--name", default="Platform Admin", help="the admin's full name")
    ap.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--remote", action="store_true", help="the deployed database (default)")
    where.add_argument("--local", action="store_true", help="the local database of wrangler dev")
    ap.add_argument("--persist-to", metavar="DIR", help="local state directory (with --local)")
    ap.add_argument("-c", "--config", metavar="CONFIG", help="wrangler configuration file")
    ap.add_argument("--wrangler", default=os.path.join(ROOT, "node_modules", ".bin", "wrangler"))
    args = ap.parse_args()
    if args.persist_to and not args.local:
        ap.error("--persist-to needs --local")

    try:
        email = check_email(args.email if args.email is not None else input("E-mail: "))
        name = check_name(args.name)
    except ValueError as e:
        sys.exit(f"create_admin: {e}")
    try:
        password = check_password(read_password(args.password_env))
    except ValueError as e:
        sys.exit(f"create_admin: {e}")

    wr = Wrangler(args)
    print(f"platform admin {email} ({wr.where} database)")
    found = wr.execute(
        "SELECT (SELECT COUNT(*) FROM users WHERE role = 'platform_admin') AS admins, "
        f"(SELECT COUNT(*) FROM users WHERE email = {q(email)}) AS taken, "
        f"(SELECT COUNT(*) FROM tenants WHERE slug = 'platform' AND id <> {q(TENANT)}) AS slug_taken"
    )[0]["results"][0]
    if found["admins"]:
        sys.exit(
            "refused: a platform admin already exists; nothing was changed. Log in as it and "
            "create further admins with POST /api/v1/admin/users."
        )
    if found["taken"]:
        sys.exit(f"refused: a user with the e-mail {email} already exists; nothing was changed.")
    if found["slug_taken"]:
        sys.exit("refused: another tenant has the slug 'platform'; nothing was changed.")

    hashed = pw_hash(password)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    user = "usr_" + secrets.token_hex(12)
    audit = "aud_" + secrets.token_hex(12)
    meta = json.dumps({"tenant_id": TENANT, "role": "platform_admin", "email": email, "via": "create_admin.py"})
    sql = ";\n".join([
        # As seed.py makes it; untouched if it exists.
        "INSERT INTO tenants (id, name, slug, plan, status, subscription_amount, created_at, updated_at) "
        f"VALUES ({q(TENANT)}, 'Tenantry Platform', 'platform', 'premium_custom', 'active', 0, {q(now)}, {q(now)}) "
        "ON CONFLICT(id) DO NOTHING",
        # Conditional in itself: a run that lost a race inserts nothing.
        "INSERT INTO users (id, tenant_id, email, full_name, role, status, password_hash, created_at, updated_at) "
        f"SELECT {q(user)}, {q(TENANT)}, {q(email)}, {q(name)}, 'platform_admin', 'active', {q(hashed)}, {q(now)}, {q(now)} "
        "WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'platform_admin') "
        f"AND NOT EXISTS (SELECT 1 FROM users WHERE email = {q(email)})",
        "INSERT INTO audit_logs (id, tenant_id, actor_email, action, target_type, target_id, metadata, created_at) "
        f"SELECT {q(audit)}, {q(TENANT)}, {q(email)}, 'user.created', 'user', {q(user)}, {q(meta)}, {q(now)} "
        f"WHERE EXISTS (SELECT 1 FROM users WHERE id = {q(user)})",
        f"SELECT COUNT(*) AS created FROM users WHERE id = {q(user)}",
    ])
    results = wr.execute(sql, redact=(hashed, password))
    if not results[-1]["results"][0]["created"]:
        sys.exit("refused: a platform admin was created meanwhile (another run?); nothing was added.")
    print(f"created: {email} ({user}) can now log in at /api/v1/auth/login")


if __name__ == "__main__":
    main()
