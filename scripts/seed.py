#!/usr/bin/env python3
"""Prints the SQL that seeds local development data: the platform admin and demo tenants.

Idempotent: fixed ids and upserts, so running it again only refreshes passwords from
.dev.vars. Password hashes use the worker's format:
pbkdf2_sha256$100000$<salt base64>$<hash base64> (PBKDF2-HMAC-SHA256, no padding).

usage: seed.py [--vars .dev.vars]  (reads ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_PASSWORD)
"""
import argparse
import base64
import datetime
import hashlib
import os
import sys


def read_vars(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


def b64(b):
    return base64.b64encode(b).decode().rstrip("=")


def pw_hash(password, iterations=100_000):
    salt = os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    return f"pbkdf2_sha256${iterations}${b64(salt)}${b64(dk)}"


def q(v):
    if v is None:
        return "NULL"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vars", default=".dev.vars")
    args = ap.parse_args()
    env = read_vars(args.vars)
    for k in ("ADMIN_EMAIL", "ADMIN_PASSWORD", "DEMO_PASSWORD"):
        if not env.get(k):
            sys.exit(f"seed: {k} missing from {args.vars} (run `make dev` to generate it)")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    demo_pw = env["DEMO_PASSWORD"]

    tenants = [
        # id, name, slug, plan, status, amount, start, end
        ("ten_platform", "Tenantry Platform", "platform", "premium_custom", "active", 0, None, None),
        ("ten_demo_agency", "Northwind Studio (agency client)", "northwind", "premium_custom", "active", 1500.0, "2026-01-01T00:00:00.000Z", "2026-12-31T00:00:00.000Z"),
        ("ten_demo_inbox", "Blue Harbor Support (inbox)", "blue-harbor", "pro", "active", 99.0, "2026-03-01T00:00:00.000Z", None),
        ("ten_demo_shop", "Alder & Co. Shop", "alder-shop", "starter", "active", 49.0, "2026-06-01T00:00:00.000Z", None),
    ]
    users = [
        ("usr_platform_admin", "ten_platform", env["ADMIN_EMAIL"].lower(), "Platform Admin", "platform_admin", env["ADMIN_PASSWORD"]),
        ("usr_demo_agency_owner", "ten_demo_agency", "owner@northwind.demo", "Nora Owner", "owner", demo_pw),
        ("usr_demo_agency_member", "ten_demo_agency", "member@northwind.demo", "Max Member", "member", demo_pw),
        ("usr_demo_inbox_owner", "ten_demo_inbox", "owner@blueharbor.demo", "Olivia Owner", "owner", demo_pw),
        ("usr_demo_inbox_agent", "ten_demo_inbox", "agent@blueharbor.demo", "Aiden Agent", "agent", demo_pw),
        ("usr_demo_shop_owner", "ten_demo_shop", "owner@aldershop.demo", "Sam Owner", "owner", demo_pw),
    ]
    out = []
    for t in tenants:
        tid, name, slug, plan, status, amount, start, end = t
        out.append(
            "INSERT INTO tenants (id, name, slug, plan, status, subscription_amount, subscription_start_date, "
            "subscription_end_date, created_at, updated_at) VALUES "
            f"({q(tid)}, {q(name)}, {q(slug)}, {q(plan)}, {q(status)}, {q(amount)}, {q(start)}, {q(end)}, {q(now)}, {q(now)}) "
            "ON CONFLICT(id) DO NOTHING;"
        )
    for uid, tid, email, name, role, password in users:
        h = pw_hash(password)
        out.append(
            "INSERT INTO users (id, tenant_id, email, full_name, role, status, password_hash, created_at, updated_at) VALUES "
            f"({q(uid)}, {q(tid)}, {q(email)}, {q(name)}, {q(role)}, 'active', {q(h)}, {q(now)}, {q(now)}) "
            "ON CONFLICT(id) DO UPDATE SET email = excluded.email, password_hash = excluded.password_hash, status = 'active';"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
