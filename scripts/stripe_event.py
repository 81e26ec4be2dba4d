#!/usr/bin/env python3
"""Builds a Stripe-shaped webhook event and signs it exactly as Stripe does: the header
`Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, one `v1` per
secret given (Stripe sends one per active endpoint secret while a secret is rolled).

Without --send it prints `{"headers": {...}, "body": "<the exact bytes signed>"}` as JSON (the
Rust integration tests build and sign their events with it); with --send URL it posts the event
there and prints the answer.

    scripts/stripe_event.py customer.subscription.created --tenant ten_demo_pro \\
        --price price_local_pro --send http://localhost:8787/api/v1/webhooks/stripe

The secret defaults to the first of STRIPE_WEBHOOK_SECRET (environment, else `.dev.vars`).
Objects follow the API version 2025-03-31 (item-level subscription periods, invoice
`payments` and `parent`); --legacy gives the earlier shapes (top-level periods, invoice
`charge`/`payment_intent`/`subscription`).

usage: stripe_event.py TYPE --tenant ID [--customer ID] [--subscription ID] [--price ID]
           [--invoice ID] [--charge ID] [--payment-intent ID] [--amount MINOR] [--currency C]
           [--interval month|year] [--interval-count N] [--quantity N] [--status S]
           [--refunded MINOR] [--refund-amount MINOR] [--refund ID] [--cancel-at-period-end] [--no-customer]
           [--created UNIX] [--id EVT] [--legacy] [--secret S ...] [--timestamp UNIX]
           [--send URL]
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_VERSION = "2025-03-31.basil"
LEGACY_VERSION = "2024-06-20"
DAY = 86_400


def sign(secret, timestamp, body):
    """Stripe's v1 scheme: hex HMAC-SHA256 of "<t>.<body>" under the endpoint secret."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secrets_, timestamp, body):
    return ",".join([f"t={timestamp}"] + [f"v1={sign(s, timestamp, body)}" for s in secrets_])


def default_secret():
    value = os.environ.get("STRIPE_WEBHOOK_SECRET")
    if not value:
        try:
            with open(os.path.join(ROOT, ".dev.vars")) as f:
                for line in f:
                    key, _, v = line.strip().partition("=")
                    if key == "STRIPE_WEBHOOK_SECRET":
                        value = v.strip().strip('"')
        except FileNotFoundError:
            pass
    first = (value or "").split(",")[0].strip()
    if not first:
        sys.exit("no secret: pass --secret or set STRIPE_WEBHOOK_SECRET (make dev writes .dev.vars)")
    return first


def derived(prefix, tenant, n=14):
    """A stable id per tenant (the same tenant gets the same customer and subscription)."""
    return f"{prefix}_{hashlib.sha256(tenant.encode()).hexdigest()[:n]}"


def rand(prefix, n=24):
    return f"{prefix}_{secrets.token_hex(n // 2)}"


def period_days(a):
    days = {"day": 1, "week": 7, "month": 30, "year": 365}.get(a.interval, 30)
    return days * a.interval_count


def price(a):
    return {
        "id": a.price, "object": "price", "active": True, "billing_scheme": "per_unit",
        "created": a.created - 90 * DAY, "currency": a.currency, "livemode": False,
        "lookup_key": None, "metadata": {}, "nickname": None, "product": derived("prod", a.price),
        "recurring": {"interval": a.interval, "interval_count": a.interval_count,
                      "meter": None, "trial_period_days": None, "usage_type": "licensed"},
        "tax_behavior": "unspecified", "type": "recurring",
        "unit_amount": a.amount, "unit_amount_decimal": str(a.amount),
    }


def subscription(a, kind):
    start = a.created
    end = start + period_days(a) * DAY
    status = a.status or {"customer.subscription.deleted": "canceled",
                          "customer.subscription.paused": "paused"}.get(kind, "active")
    item = {"id": derived("si", a.subscription), "object": "subscription_item",
            "created": start, "metadata": {}, "price": price(a), "quantity": a.quantity,
            "subscription": a.subscription, "tax_rates": []}
    sub = {
        "id": a.subscription, "object": "subscription", "billing_cycle_anchor": start,
        "cancel_at": end if a.cancel_at_period_end else None,
        "cancel_at_period_end": a.cancel_at_period_end,
        "canceled_at": a.created if status == "canceled" else None,
        "collection_method": "charge_automatically", "created": start, "currency": a.currency,
        "customer": a.customer, "default_payment_method": derived("pm", a.customer),
        "ended_at": a.created if status == "canceled" else None,
        "items": {"object": "list", "data": [item], "has_more": False, "total_count": 1,
                  "url": f"/v1/subscription_items?subscription={a.subscription}"},
        "latest_invoice": a.invoice, "livemode": False, "metadata": {"tenant_id": a.tenant},
        "pause_collection": None, "start_date": start, "status": status,
        "trial_end": None, "trial_start": None,
    }
    if a.legacy:
        sub["current_period_start"], sub["current_period_end"] = start, end
    else:
        item["current_period_start"], item["current_period_end"] = start, end
    return sub


def invoice(a, kind):
    status = a.status or {"invoice.paid": "paid", "invoice.voided": "void"}.get(kind, "open")
    paid = kind == "invoice.paid"
    start = a.created
    end = start + period_days(a) * DAY
    base = f"acct_1Nv0FGQ9RKHgCVdK/test_{hashlib.sha256(a.invoice.encode()).hexdigest()[:40]}"
    inv = {
        "id": a.invoice, "object": "invoice", "account_country": "DE",
        "amount_due": a.amount, "amount_paid": a.amount if paid else 0,
        "amount_remaining": 0 if paid else a.amount, "attempt_count": 1,
        "attempted": kind in ("invoice.paid", "invoice.payment_failed"),
        "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
        "created": a.created, "currency": a.currency, "customer": a.customer,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{base}?s=ap",
        "invoice_pdf": f"https://pay.stripe.com/invoice/{base}/pdf?s=ap",
        "lines": {"object": "list", "has_more": False, "total_count": 1,
                  "url": f"/v1/invoices/{a.invoice}/lines",
                  "data": [{"id": derived("il", a.invoice), "object": "line_item",
                            "amount": a.amount, "currency": a.currency,
                            "description": f"{a.quantity} × {a.price}",
                            "period": {"start": start, "end": end}, "quantity": a.quantity}]},
        "livemode": False, "metadata": {},
        "number": f"{derived('', a.customer, 8)[1:].upper()}-{a.created % 10000:04d}",
        "period_end": start, "period_start": start - period_days(a) * DAY, "status": status,
        "status_transitions": {"finalized_at": a.created, "paid_at": a.created if paid else None},
        "subtotal": a.amount, "total": a.amount,
    }
    if a.legacy:
        inv.update({"charge": a.charge, "payment_intent": a.payment_intent,
                    "subscription": a.subscription, "paid": paid})
    else:
        inv["parent"] = {"type": "subscription_details", "quote_details": None,
                         "subscription_details": {"metadata": {"tenant_id": a.tenant},
                                                  "subscription": a.subscription}}
        inv["payments"] = {"object": "list", "has_more": False, "total_count": 1,
                           "url": "/v1/invoice_payments",
                           "data": [{"id": derived("inpay", a.invoice), "object": "invoice_payment",
                                     "amount_paid": a.amount if paid else None,
                                     "amount_requested": a.amount, "currency": a.currency,
                                     "invoice": a.invoice, "is_default": True, "livemode": False,
                                     "payment": {"type": "payment_intent",
                                                 "payment_intent": a.payment_intent},
                                     "status": "paid" if paid else "open"}]}
    return inv


def charge(a):
    refunded = a.amount if a.refunded is None else a.refunded
    ch = {
        "id": a.charge, "object": "charge", "amount": a.amount, "amount_captured": a.amount,
        "amount_refunded": refunded, "captured": True, "created": a.created - DAY,
        "currency": a.currency, "customer": a.customer, "livemode": False, "metadata": {},
        "paid": True, "payment_intent": a.payment_intent, "refunded": refunded >= a.amount,
        "status": "succeeded",
        "refunds": {"object": "list", "has_more": False, "total_count": 1,
                    "url": f"/v1/charges/{a.charge}/refunds",
                    "data": [{"id": a.refund, "object": "refund",
                              "amount": refunded if a.refund_amount is None else a.refund_amount,
                              "charge": a.charge, "created": a.created, "currency": a.currency,
                              "metadata": {}, "payment_intent": a.payment_intent,
                              "reason": "requested_by_customer", "status": "succeeded"}]},
    }
    if a.legacy:
        ch["invoice"] = a.invoice
    return ch


def checkout(a):
    return {
        "id": rand("cs_test", 56), "object": "checkout.session", "amount_subtotal": a.amount,
        "amount_total": a.amount, "cancel_url": "https://app.example.com/billing",
        "client_reference_id": a.tenant, "created": a.created - 60, "currency": a.currency,
        "customer": None if a.no_customer else a.customer,
        "customer_details": {"email": "owner@example.com", "name": "Owner"},
        "expires_at": a.created + DAY, "livemode": False, "metadata": {"tenant_id": a.tenant},
        "mode": "subscription", "payment_status": "paid", "status": "complete",
        "subscription": a.subscription, "success_url": "https://app.example.com/billing?done=1",
        "url": None,
    }


def build(a):
    kind = a.type
    if kind == "checkout.session.completed":
        obj = checkout(a)
    elif kind.startswith("customer.subscription."):
        obj = subscription(a, kind)
    elif kind.startswith("invoice."):
        obj = invoice(a, kind)
    elif kind.startswith("charge."):
        obj = charge(a)
    else:
        obj = {"id": rand(kind.split(".")[0][:8] or "obj", 24), "object": kind.split(".")[0],
               "metadata": {"tenant_id": a.tenant}}
    return {
        "id": a.id, "object": "event", "api_version": LEGACY_VERSION if a.legacy else API_VERSION,
        "created": a.created, "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": kind,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("type", help="the event type, e.g. invoice.paid")
    p.add_argument("--tenant", required=True, help="the tenant id (client_reference_id, metadata)")
    p.add_argument("--customer")
    p.add_argument("--no-customer", action="store_true", help="a session without a customer")
    p.add_argument("--subscription")
    p.add_argument("--price", default="price_local_pro")
    p.add_argument("--invoice")
    p.add_argument("--charge")
    p.add_argument("--payment-intent")
    p.add_argument("--refund")
    p.add_argument("--amount", type=int, default=4900, help="minor units per interval")
    p.add_argument("--refunded", type=int, help="charge.refunded: amount refunded in all")
    p.add_argument("--refund-amount", type=int, help="charge.refunded: this refund's amount")
    p.add_argument("--currency", default="eur")
    p.add_argument("--interval", default="month", choices=["day", "week", "month", "year"])
    p.add_argument("--interval-count", type=int, default=1)
    p.add_argument("--quantity", type=int, default=1)
    p.add_argument("--status", help="the object's status (default from the type)")
    p.add_argument("--cancel-at-period-end", action="store_true")
    p.add_argument("--created", type=int, help="the event's created (default now)")
    p.add_argument("--id", help="the event id (default a new evt_…)")
    p.add_argument("--legacy", action="store_true", help="shapes before API version 2025-03-31")
    p.add_argument("--secret", action="append", help="signing secret (repeat: one v1 each)")
    p.add_argument("--timestamp", type=int, help="the signature's t= (default now)")
    p.add_argument("--send", metavar="URL", help="post it there and print the answer")
    a = p.parse_args(argv)
    now = int(time.time())
    a.created = now if a.created is None else a.created
    a.id = a.id or rand("evt", 24)
    a.customer = a.customer or derived("cus", a.tenant)
    a.subscription = a.subscription or derived("sub", a.tenant, 24)
    a.invoice = a.invoice or rand("in", 24)
    a.charge = a.charge or derived("ch", a.invoice, 24)
    a.payment_intent = a.payment_intent or derived("pi", a.invoice, 24)
    a.refund = a.refund or derived("re", a.charge + str(a.refunded), 24)
    body = json.dumps(build(a), indent=2).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": signature_header(a.secret or [default_secret()],
                                             now if a.timestamp is None else a.timestamp, body),
    }
    if not a.send:
        print(json.dumps({"headers": headers, "body": body.decode()}))
        return 0
    req = urllib.request.Request(a.send, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            print(r.status, r.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())
        return 1


if __name__ == "__main__":
    sys.exit(main())
