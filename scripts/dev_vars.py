#!/usr/bin/env python3
"""Writes .dev.vars for local development: fresh random secrets and the local mock URLs.

A new file gets every key. An existing file keeps all its values (a developer may have pointed
GRAPH_API_BASE at the real Graph API, say); keys a newer version needs are appended. Both
Workers read this one file (queues/.dev.vars is a link to it, made here), and `make dev` passes
no `--var` overrides, so editing it is the one way to change a local setting.

Values are plain [A-Za-z0-9_-@.:/] so the file can also be sourced by a shell
(`set -a; . ./.dev.vars; set +a`), as the README's curl walk-through does.

Usage: dev_vars.py PATH [--mock-url URL]
"""
import argparse
import base64
import os
import re
import secrets
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("path", nargs="?", default=".dev.vars")
parser.add_argument("--mock-url", default="http://127.0.0.1:8790",
                    help="the local mock upstream (scripts/mock_upstream.py) make dev starts")
args = parser.parse_args()

# The order of the P-256 group: a private key is a scalar in [1, n).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def vapid_private_key():
    """A fresh VAPID (web push) private key, base64url of the 32-byte scalar. The workers
    derive the public key from it, so only this one is kept."""
    while True:
        raw = secrets.token_bytes(32)
        if 0 < int.from_bytes(raw, "big") < P256_ORDER:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


defaults = {
    "JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "ENCRYPTION_KEY": lambda: secrets.token_urlsafe(32),
    "ADMIN_EMAIL": lambda: "admin@tenantry.local",
    "ADMIN_PASSWORD": lambda: "admin-" + secrets.token_urlsafe(12),
    "DEMO_PASSWORD": lambda: "demo-" + secrets.token_urlsafe(12),
    # Local stand-ins for the outside services (edit to use the real ones).
    "GRAPH_API_BASE": lambda: args.mock_url,
    "OCR_API_URL": lambda: args.mock_url + "/ocr",
    # The mock's host:port is the one internal destination outbound calls (workflow steps,
    # callbacks, the Graph API, OCR) may reach, over plain http; production leaves it empty.
    "EGRESS_ALLOW": lambda: urllib.parse.urlsplit(args.mock_url).netloc,
    # Billing against the mock's Stripe stand-in (/stripe/v1/...): a local secret key, a
    # webhook signing secret (scripts/stripe_event.py signs with it) and the plans' price ids.
    "STRIPE_API_BASE": lambda: args.mock_url + "/stripe",
    "STRIPE_SECRET_KEY": lambda: "sk_test_local_" + secrets.token_hex(12),
    "STRIPE_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(24),
    "STRIPE_PRICE_STARTER": lambda: "price_local_starter",
    "STRIPE_PRICE_PRO": lambda: "price_local_pro",
    "STRIPE_PRICE_PREMIUM_CUSTOM": lambda: "price_local_premium_custom",
    # Prompt optimisation against the mock's LLM stand-ins (/llm/<provider>/...).
    "OPENAI_API_BASE": lambda: args.mock_url + "/llm/openai",
    "ANTHROPIC_API_BASE": lambda: args.mock_url + "/llm/anthropic",
    "DEEPSEEK_API_BASE": lambda: args.mock_url + "/llm/deepseek",
    "GEMINI_API_BASE": lambda: args.mock_url + "/llm/gemini",
    # The deployment's own OpenAI key (the mock accepts any but sk-bad…): it serves tenants
    # without a key of their own on plans with `operator_llm_keys` (the refinery demo tenant).
    "OPENAI_API_KEY": lambda: "sk-local-mock-" + secrets.token_hex(12),
    # E-mail through the mock's SendGrid v3 stand-in (its calls: /_calls/email).
    "EMAIL_API_URL": lambda: args.mock_url + "/email/v3/mail/send",
    "EMAIL_API_KEY": lambda: "SG.local-" + secrets.token_hex(12),
    "EMAIL_FROM": lambda: "no-reply@tenantry.local",
    "APP_BASE_URL": lambda: "http://localhost:5173",
    # The most rows one GET /export streams (more: 422); lower it to try the refusal locally.
    "EXPORT_MAX_ROWS": lambda: "100000",
    # Web push: the VAPID signing key (secret) and the subject push services may contact. The
    # mock's /push/<id> stands in for a push service (EGRESS_ALLOW lets the workers reach it).
    "VAPID_PRIVATE_KEY": vapid_private_key,
    "VAPID_SUBJECT": lambda: "mailto:admin@tenantry.local",
    # Sign in with Google and GitHub against the mock's stand-in provider (/oauth/...; its
    # client credentials are fixed in scripts/oauth_standin.py), returning to the frontend.
    "OAUTH_GOOGLE_CLIENT_ID": lambda: "tenantry-local-google",
    "OAUTH_GOOGLE_CLIENT_SECRET": lambda: "local-google-secret",
    "OAUTH_GOOGLE_ISSUER": lambda: args.mock_url + "/oauth/google",
    "OAUTH_GITHUB_CLIENT_ID": lambda: "tenantry-local-github",
    "OAUTH_GITHUB_CLIENT_SECRET": lambda: "local-github-secret",
    "OAUTH_GITHUB_BASE": lambda: args.mock_url + "/oauth/github",
    "OAUTH_GITHUB_API_BASE": lambda: args.mock_url + "/oauth/github/api",
    "OAUTH_REDIRECT_ALLOW": lambda: "http://localhost:5173/oauth/callback",
}

existing = set()
if os.path.exists(args.path):
    with open(args.path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*([A-Z0-9_]+)\s*=", line)
            if m:
                existing.add(m.group(1))
missing = [k for k in defaults if k not in existing]

if not existing:
    with open(args.path, "w", encoding="utf-8") as f:
        f.write("# Local development settings and secrets, generated by `make dev`. Never commit this file.\n")
        for k in defaults:
            f.write(f'{k}="{defaults[k]()}"\n')
    os.chmod(args.path, 0o600)
    print(f"wrote {args.path} with fresh secrets")
elif missing:
    with open(args.path, "a", encoding="utf-8") as f:
        for k in missing:
            f.write(f'{k}="{defaults[k]()}"\n')
    print(f"{args.path}: added {', '.join(missing)}; kept the rest")
else:
    print(f"{args.path} exists; keeping its values")

# The jobs Worker's config lives in queues/; wrangler reads .dev.vars beside each config.
here = os.path.dirname(os.path.abspath(args.path))
link = os.path.join(here, "queues", ".dev.vars")
if os.path.isdir(os.path.dirname(link)):
    target = os.path.relpath(os.path.abspath(args.path), os.path.dirname(link))
    if os.path.islink(link) and os.readlink(link) != target:
        os.remove(link)
    if not os.path.lexists(link):
        os.symlink(target, link)
