#!/usr/bin/env python3
"""Prints the SQL that seeds local development data: the platform admin, demo tenants, and the
agency client's ten priced workflows (their http steps call the mock upstream at
--provider-url, which `make dev` starts) with a few past executions in every state, the inbox
tenant's conversations, and the shop tenant's files, finished job and products.

Idempotent: fixed ids and upserts, so running it again only refreshes passwords from
.dev.vars. Password hashes use the worker's format:
pbkdf2_sha256$100000$<salt base64>$<hash base64> (PBKDF2-HMAC-SHA256, no padding).

usage: seed.py [--vars .dev.vars] [--provider-url http://127.0.0.1:8790]
       (reads ADMIN_EMAIL, ADMIN_PASSWORD, DEMO_PASSWORD)
       seed.py --r2-objects   (key, file and content type of each demo file for local R2)
"""
import argparse
import base64
import datetime
import hashlib
import json
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
    ap.add_argument("--provider-url", default=os.environ.get("MOCK_UPSTREAM_URL", "http://127.0.0.1:8790"))
    ap.add_argument("--r2-objects", action="store_true", help="list the demo files for local R2 instead")
    args = ap.parse_args()
    if args.r2_objects:
        r2_objects()
        return
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
        (STRIPE_TENANT, "Cedar Analytics (Stripe)", "cedar", "free", "active", 0, None, None),
        (REFINERY_TENANT, "Refinery Prompts", "refinery", "starter", "active", 49.0, "2026-09-01T00:00:00.000Z", None),
        (QUOTA_TENANT, "Little Lamp (free, near its quota)", "little-lamp", "free", "active", 0, None, None),
    ]
    users = [
        ("usr_platform_admin", "ten_platform", env["ADMIN_EMAIL"].lower(), "Platform Admin", "platform_admin", env["ADMIN_PASSWORD"]),
        ("usr_demo_agency_owner", "ten_demo_agency", "owner@northwind.demo", "Nora Owner", "owner", demo_pw),
        ("usr_demo_agency_member", "ten_demo_agency", "member@northwind.demo", "Max Member", "member", demo_pw),
        ("usr_demo_inbox_owner", "ten_demo_inbox", "owner@blueharbor.demo", "Olivia Owner", "owner", demo_pw),
        ("usr_demo_inbox_agent", "ten_demo_inbox", "agent@blueharbor.demo", "Aiden Agent", "agent", demo_pw),
        ("usr_demo_shop_owner", "ten_demo_shop", "owner@aldershop.demo", "Sam Owner", "owner", demo_pw),
        ("usr_demo_pro_owner", STRIPE_TENANT, "owner@cedar.demo", "Cleo Owner", "owner", demo_pw),
        ("usr_demo_refinery_owner", REFINERY_TENANT, "owner@refinery.demo", "Rita Owner", "owner", demo_pw),
        ("usr_demo_refinery_member", REFINERY_TENANT, "member@refinery.demo", "Milo Member", "member", demo_pw),
        ("usr_demo_quota_owner", QUOTA_TENANT, "owner@littlelamp.demo", "Lena Owner", "owner", demo_pw),
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
    out.extend(workflow_sql(args.provider_url.rstrip("/"), now))
    out.extend(inbox_sql())
    out.extend(shop_sql())
    out.extend(stripe_sql(env.get("STRIPE_PRICE_PRO") or "price_local_pro"))
    out.extend(optimize_sql())
    out.extend(collaboration_sql())
    print("\n".join(out))


STRIPE_TENANT = "ten_demo_pro"
REFINERY_TENANT = "ten_demo_refinery"
QUOTA_TENANT = "ten_demo_quota"
# The free plan's monthly optimisations; the near-quota tenant starts the month 5 short of it.
FREE_OPTIMIZATIONS = 1000


def tokens(text):
    """`src/optimize/tokens.rs` `estimate`: a run of ASCII letters/digits counts ceil(len/4),
    any other non-space character 1."""
    total, run = 0, 0
    for c in text:
        if c.isascii() and c.isalnum():
            run += 1
            continue
        total += -(-run // 4)
        run = 0
        if not c.isspace():
            total += 1
    return total + -(-run // 4)


def optimization_row(oid, tenant, user, batch, provider, model, original, optimized, at, usage=None):
    before, after = tokens(original), tokens(optimized)
    after = min(after, before)
    pct = round((before - after) * 1000 / before) / 10 if before else 0.0
    attempts = json.dumps([{"provider": provider, "model": model, "outcome": "succeeded",
                            "status": None if provider == "local" else 200, "error": None,
                            "duration_ms": 0 if provider == "local" else 420}])
    return (
        "INSERT OR IGNORE INTO optimizations (id, tenant_id, user_id, api_key_id, batch_id, provider, model, "
        "strategy, compression_level, original_text, optimized_text, tokens_before, tokens_after, tokens_saved, "
        "savings_percent, provider_usage, attempts, note, created_at) VALUES "
        f"({q(oid)}, {q(tenant)}, {q(user)}, NULL, {q(batch)}, {q(provider)}, {q(model)}, 'compress', 2, "
        f"{q(original)}, {q(optimized)}, {before}, {after}, {before - after}, {pct}, "
        f"{q(json.dumps(usage) if usage else None)}, {q(attempts)}, NULL, {q(at)});"
    )


def collaboration_sql():
    """The agency tenant works as a team: a "Design" team (the owner leads, the member is in it),
    a pending invitation, a few notifications (one read), and a week of frontend analytics
    events in five sessions."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    t, owner, member = "ten_demo_agency", "usr_demo_agency_owner", "usr_demo_agency_member"
    at = iso(now - datetime.timedelta(days=6))
    out = [
        "INSERT OR IGNORE INTO teams (id, tenant_id, name, description, created_by, created_at, updated_at) VALUES "
        f"('team_demo_design', {q(t)}, 'Design', 'Moodboards, logos and product shots', {q(owner)}, {q(at)}, {q(at)});",
        "INSERT OR IGNORE INTO team_members (team_id, user_id, tenant_id, role, created_at) VALUES "
        f"('team_demo_design', {q(owner)}, {q(t)}, 'lead', {q(at)}), ('team_demo_design', {q(member)}, {q(t)}, 'member', {q(at)});",
    ]
    # The token itself is not kept anywhere (a real one is only ever shown once); this one is
    # a fixed stand-in whose hash cannot collide with a generated token.
    token_hash = hashlib.sha256(b"seed-only-invitation-token").hexdigest()
    expires = iso(now + datetime.timedelta(days=6))
    out.append(
        "INSERT OR IGNORE INTO invitations (id, tenant_id, email, role, team_ids, token_hash, status, invited_by, "
        "expires_at, created_at, updated_at) VALUES "
        f"('inv_demo_designer', {q(t)}, 'new.designer@northwind.demo', 'member', '[\"team_demo_design\"]', "
        f"{q(token_hash)}, 'pending', {q(owner)}, {q(expires)}, {q(iso(now))}, {q(iso(now))});"
    )
    notes = [
        ("ntf_demo_1", owner, "team.added", "You were added to Design", "You are a lead of the team Design.", "/teams/team_demo_design", 6, True),
        ("ntf_demo_2", owner, "execution.failed", "Image Upscaler Pro failed", "Step upscale answered 500.", None, 2, False),
        ("ntf_demo_3", owner, "usage.threshold", "80 % of this month's executions used", "Plan quota warning.", "/billing/usage", 1, False),
        ("ntf_demo_4", member, "team.added", "You were added to Design", "You are a member of the team Design.", "/teams/team_demo_design", 6, False),
    ]
    for nid, user, kind, title, body, link, days, read in notes:
        created = iso(now - datetime.timedelta(days=days))
        out.append(
            "INSERT OR IGNORE INTO notifications (id, tenant_id, user_id, type, title, body, link, read_at, created_at) VALUES "
            f"({q(nid)}, {q(t)}, {q(user)}, {q(kind)}, {q(title)}, {q(body)}, {q(link)}, {q(created if read else None)}, {q(created)});"
        )
    events = []
    names = ["page.view", "page.view", "workflow.opened", "execution.started", "page.view", "signup.cta"]
    for sess in range(5):
        start = now - datetime.timedelta(days=6 - sess, hours=3)
        user = owner if sess % 2 == 0 else member
        for i, name in enumerate(names[: 2 + sess % 4]):
            occurred = start + datetime.timedelta(minutes=2 * i)
            props = {"path": f"/app/{['dashboard', 'workflows', 'executions', 'billing'][i % 4]}", "plan": "premium_custom"}
            events.append(
                f"('evt_demo_{sess}_{i}', {q(t)}, {q(name)}, {q(user)}, 'ses_demo_{sess}', NULL, "
                f"{q(json.dumps(props))}, {q(iso(occurred))}, {q(iso(occurred))})"
            )
    out.append(
        "INSERT OR IGNORE INTO analytics_events (id, tenant_id, name, user_id, session_id, anonymous_id, properties, "
        "occurred_at, received_at) VALUES " + ", ".join(events) + ";"
    )
    return out


def optimize_sql():
    """Prompt optimisation: the refinery tenant (starter, so the deployment's OPENAI_API_KEY in
    .dev.vars serves it; its default provider is openai, on the mock) with history from both
    providers and a finished batch; and a free tenant 5 optimisations short of its month."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    t, owner, member = REFINERY_TENANT, "usr_demo_refinery_owner", "usr_demo_refinery_member"
    out = [
        "INSERT INTO provider_configs (tenant_id, name, enabled, is_default, created_at, updated_at) "
        f"VALUES ({q(t)}, 'openai', 1, 1, {q(iso(now))}, {q(iso(now))}) ON CONFLICT DO NOTHING;"
    ]
    prompts = [
        ("Please, in order to help the customer {{name}}, write a very short and really friendly reply.",
         "To help the customer {{name}}, write a short, friendly reply."),
        ("You are a helpful assistant. It is important to note that you should basically always answer in English.",
         "You are a helpful assistant. Always answer in English."),
        ("Due to the fact that the report is long, please summarise it in three bullet points.",
         "Because the report is long, summarise it in three bullet points."),
    ]
    for i, (original, optimized) in enumerate(prompts):
        at = iso(now - datetime.timedelta(days=3 - i, hours=2))
        provider, model = ("openai", "gpt-4o-mini") if i % 2 == 0 else ("local", "local")
        usage = {"input_tokens": 64 + tokens(original), "output_tokens": tokens(optimized)} if provider == "openai" else None
        out.append(optimization_row(f"opt_demo_refinery_{i}", t, member if i < 2 else owner, None,
                                    provider, model, original, optimized, at, usage))
    batch, b_at = "obt_demo_refinery", iso(now - datetime.timedelta(days=1))
    out.append(
        "INSERT OR IGNORE INTO optimize_batches (id, tenant_id, user_id, provider, model, strategy, "
        "compression_level, fallbacks, status, total, created_at, updated_at, completed_at) VALUES "
        f"({q(batch)}, {q(t)}, {q(owner)}, 'openai', NULL, 'compress', 2, '[\"local\"]', 'completed', 3, "
        f"{q(b_at)}, {q(b_at)}, {q(b_at)});"
    )
    for i, (original, optimized) in enumerate(prompts):
        oid, item = f"opt_demo_refinery_batch_{i}", f"{batch}_{i:03d}"
        out.append(optimization_row(oid, t, owner, batch, "openai", "gpt-4o-mini", original, optimized, b_at,
                                    {"input_tokens": 64 + tokens(original), "output_tokens": tokens(optimized)}))
        out.append(
            "INSERT OR IGNORE INTO optimize_batch_items (id, batch_id, tenant_id, position, ref, text, status, "
            "attempts, optimization_id, created_at, updated_at) VALUES "
            f"({q(item)}, {q(batch)}, {q(t)}, {i}, {q('row-' + str(i + 1))}, {q(original)}, 'succeeded', 1, "
            f"{q(oid)}, {q(b_at)}, {q(b_at)});"
        )
    # This month's optimisations of the free tenant (the usage meter seeds its count from them).
    month = now.strftime("%Y%m")
    at = iso(month_start(now))
    out.append(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {FREE_OPTIMIZATIONS - 5}) "
        "INSERT OR IGNORE INTO optimizations (id, tenant_id, user_id, provider, model, strategy, compression_level, "
        "original_text, optimized_text, tokens_before, tokens_after, tokens_saved, savings_percent, attempts, created_at) "
        f"SELECT 'opt_demo_quota_{month}_' || i, {q(QUOTA_TENANT)}, 'usr_demo_quota_owner', 'local', 'local', 'compress', 2, "
        "'Please write a very short reply.', 'Write a short reply.', 7, 5, 2, 28.6, '[]', "
        f"{q(at)} FROM n;"
    )
    return out


def month_start(d, back=0):
    """The first instant (UTC) of the month `back` months before `d`'s."""
    y, m = divmod(d.year * 12 + d.month - 1 - back, 12)
    m += 1
    return datetime.datetime(y, m, 1, tzinfo=datetime.timezone.utc)


def stripe_sql(price):
    """The Stripe-managed tenant: on `pro` through an active monthly subscription (as the
    webhook consumer leaves a tenant after checkout.session.completed and
    customer.subscription.created), with two paid invoices and one whose payment failed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = month_start(now), month_start(now, -1)
    out = [
        "UPDATE tenants SET plan = 'pro', subscription_amount = 49.0, "
        f"subscription_start_date = {q(iso(start))}, subscription_end_date = {q(iso(end))}, "
        "stripe_customer_id = 'cus_demo_cedar', stripe_subscription_id = 'sub_demo_cedar', "
        f"stripe_price_id = {q(price)}, subscription_status = 'active', cancel_at_period_end = 0, "
        "subscription_unit_amount = 4900, subscription_currency = 'eur', subscription_interval = 'month', "
        f"current_period_start = {q(iso(start))}, current_period_end = {q(iso(end))}, "
        f"billing_event_created = {int(start.timestamp())} "
        f"WHERE id = {q(STRIPE_TENANT)} AND stripe_customer_id IS NULL;"
    ]
    invoices = [  # months back, number, status, amount paid
        (2, "CEDAR-0001", "paid", 4900),
        (1, "CEDAR-0002", "failed", 0),
        (0, "CEDAR-0003", "paid", 4900),
    ]
    for back, number, status, paid in invoices:
        p_start, p_end = month_start(now, back), month_start(now, back - 1)
        suffix = number.split("-")[1]
        base = f"https://invoice.stripe.com/i/acct_demo/test_cedar{suffix}"
        out.append(
            "INSERT OR IGNORE INTO payments (id, tenant_id, stripe_invoice_id, stripe_customer_id, "
            "stripe_subscription_id, stripe_charge_id, stripe_payment_intent_id, number, amount_due, "
            "amount_paid, currency, status, period_start, period_end, hosted_invoice_url, invoice_pdf, "
            "stripe_created, created_at, updated_at) VALUES "
            f"({q('pay_demo_cedar_' + suffix)}, {q(STRIPE_TENANT)}, {q('in_demo_cedar_' + suffix)}, "
            f"'cus_demo_cedar', 'sub_demo_cedar', {q('ch_demo_cedar_' + suffix)}, {q('pi_demo_cedar_' + suffix)}, "
            f"{q(number)}, 4900, {paid}, 'eur', {q(status)}, {q(iso(p_start))}, {q(iso(p_end))}, "
            f"{q(base)}, {q(base + '/pdf')}, {int(p_start.timestamp())}, {q(iso(p_start))}, {q(iso(p_start))});"
        )
    return out


def http(name, url, body, output=None):
    step = {"name": name, "kind": "http", "method": "POST", "url": url, "body": body, "timeout_seconds": 20}
    if output:
        step["output"] = output
    return step


def transform(name, template):
    return {"name": name, "kind": "transform", "template": template}


def demo_workflows(p):
    """The ten priced workflows of the spec: (id, name, description, price, cost, steps)."""
    img = f"{p}/v1/images"
    return [
        ("wfl_demo_batch_images", "Batch Image Generator", "Generates a batch of images from one prompt.", 250, 60, [
            http("generate", f"{img}/generations", {"prompt": "{{input.prompt}}", "n": "{{input.count}}"}, {"images": "data"}),
            {"name": "settle", "kind": "delay", "seconds": 2},
            transform("result", {"prompt": "{{input.prompt}}", "images": "{{steps.generate.output.images}}"}),
        ]),
        ("wfl_demo_style_transfer", "Style Transfer Pipeline", "Re-renders an image in a reference style.", 180, 45, [
            http("stylize", f"{img}/style-transfer", {"image_url": "{{input.image_url}}", "style": "{{input.style}}"}),
            transform("result", {"image": "{{steps.stylize.output.data.0.url}}", "style": "{{input.style}}"}),
        ]),
        ("wfl_demo_product_photo", "Product Photo Enhancer", "Cleans up lighting and colour of product shots.", 150, 35, [
            http("enhance", f"{img}/enhance", {"image_url": "{{input.image_url}}", "preset": "product"}),
            transform("result", {"image": "{{steps.enhance.output.data.0.url}}"}),
        ]),
        ("wfl_demo_social_content", "Social Media Content Generator", "Writes a post and generates its visual.", 200, 50, [
            http("copy", f"{p}/v1/chat/completions", {"model": "demo", "messages": [
                {"role": "user", "content": "Write a {{input.platform}} post about {{input.topic}}"}]}),
            http("visual", f"{img}/generations", {"prompt": "{{input.topic}}", "n": 1}),
            transform("result", {"caption": "{{steps.copy.output.choices.0.message.content}}",
                                 "image": "{{steps.visual.output.data.0.url}}", "platform": "{{input.platform}}"}),
        ]),
        ("wfl_demo_logo_variations", "Logo Variation Creator", "Creates variations of a logo.", 350, 80, [
            http("vary", f"{img}/variations", {"image_url": "{{input.logo_url}}", "n": "{{input.variations}}"}),
            transform("result", {"variations": "{{steps.vary.output.data}}"}),
        ]),
        ("wfl_demo_moodboard", "Moodboard Generator", "Assembles a moodboard for a theme.", 120, 25, [
            http("tiles", f"{img}/generations", {"prompt": "moodboard tile: {{input.theme}}", "n": 6}, {"tiles": "data"}),
            transform("result", {"theme": "{{input.theme}}", "tiles": "{{steps.tiles.output.tiles}}"}),
        ]),
        ("wfl_demo_upscaler", "Image Upscaler Pro", "Upscales an image 2x or 4x.", 100, 20, [
            http("upscale", f"{img}/upscale", {"image_url": "{{input.image_url}}", "scale": "{{input.scale}}"}),
            transform("result", {"image": "{{steps.upscale.output.data.0.url}}", "scale": "{{input.scale}}"}),
        ]),
        ("wfl_demo_background", "Portrait Background Replacer", "Cuts out a portrait and places it on a new background.", 190, 45, [
            http("cutout", f"{img}/remove-background", {"image_url": "{{input.image_url}}"}),
            http("compose", f"{img}/compose", {"image_url": "{{steps.cutout.output.data.0.url}}", "background": "{{input.background}}"}),
            transform("result", {"image": "{{steps.compose.output.data.0.url}}"}),
        ]),
        ("wfl_demo_watermark", "Batch Watermark Applier", "Stamps a watermark on a batch of images.", 50, 8, [
            http("stamp", f"{img}/watermark", {"images": "{{input.image_urls}}", "text": "{{input.watermark_text}}"}),
            transform("result", {"watermarked": "{{steps.stamp.output.data}}"}),
        ]),
        ("wfl_demo_avatar", "AI Avatar Generator", "Turns a photo into a stylised avatar.", 300, 70, [
            http("avatar", f"{img}/avatar", {"photo_url": "{{input.photo_url}}", "style": "{{input.style}}"}),
            {"name": "settle", "kind": "delay", "seconds": 1},
            transform("result", {"avatar": "{{steps.avatar.output.data.0.url}}"}),
        ]),
    ]


def inbox_sql():
    """The inbox tenant: a channel (credentials are set through the API, sealed by the worker),
    contacts, conversations in every status, and messages in both directions."""
    tenant = "ten_demo_inbox"
    base = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    out = [
        "INSERT INTO channels (tenant_id, phone_number_id, waba_id, display_phone, created_at, updated_at) "
        f"VALUES ({q(tenant)}, '106540352242922', '102290129340398', '+1 555 010 0199', {q(iso(base))}, {q(iso(base))}) "
        "ON CONFLICT(tenant_id) DO NOTHING;"
    ]
    people = [
        # suffix, wa_id, name, status, assigned, unread, messages: (direction, text, status, minutes ago)
        ("kerry", "16315551181", "Kerry Fisher", "open", "usr_demo_inbox_agent", 2, [
            ("inbound", "Hi! My order #1042 has not arrived yet.", "received", 50),
            ("outbound", "Sorry about that, Kerry. Let me check with the courier.", "read", 45),
            ("inbound", "Thanks. It was due on Monday.", "received", 40),
            ("inbound", "Any news?", "received", 5),
        ]),
        ("lena", "4915112345678", "Lena Vogel", "pending", "usr_demo_inbox_agent", 0, [
            ("inbound", "Can I change the delivery address?", "received", 300),
            ("outbound", "Yes: send us the new address and we will update it.", "delivered", 290),
        ]),
        ("omar", "447700900123", "Omar Haddad", "resolved", "usr_demo_inbox_owner", 0, [
            ("inbound", "Do you ship to the UK?", "received", 2000),
            ("outbound", "We do, 3-5 working days.", "read", 1990),
            ("inbound", "Great, thanks!", "received", 1980),
        ]),
        ("ana", "5511987654321", "Ana Souza", "archived", None, 0, [
            ("inbound", "Wrong number, sorry", "received", 9000),
        ]),
        ("noah", "12025550143", "Noah Kim", "open", None, 1, [
            ("inbound", "Is the blue jacket back in stock?", "received", 15),
        ]),
    ]
    for suffix, wa, name, status, assigned, unread, messages in people:
        created = base - datetime.timedelta(minutes=messages[0][3] + 1)
        last = messages[-1]
        last_at = iso(base - datetime.timedelta(minutes=last[3]))
        out.append(
            "INSERT OR IGNORE INTO contacts (id, tenant_id, wa_id, name, created_at, updated_at) VALUES "
            f"({q('ctc_demo_' + suffix)}, {q(tenant)}, {q(wa)}, {q(name)}, {q(iso(created))}, {q(iso(created))});"
        )
        out.append(
            "INSERT OR IGNORE INTO conversations (id, tenant_id, contact_id, status, assigned_to, tags, unread_count, "
            "last_message_at, last_message_preview, created_at, updated_at) VALUES "
            f"({q('cnv_demo_' + suffix)}, {q(tenant)}, {q('ctc_demo_' + suffix)}, {q(status)}, {q(assigned)}, '[]', "
            f"{unread}, {q(last_at)}, {q(last[1])}, {q(iso(created))}, {q(last_at)});"
        )
        for i, (direction, text, mstatus, ago) in enumerate(messages):
            at = iso(base - datetime.timedelta(minutes=ago))
            sender = q(assigned or "usr_demo_inbox_owner") if direction == "outbound" else "NULL"
            out.append(
                "INSERT OR IGNORE INTO messages (id, tenant_id, conversation_id, direction, wamid, type, text, content, "
                "status, sent_by, attempts, created_at, updated_at) VALUES "
                f"({q(f'msg_demo_{suffix}_{i}')}, {q(tenant)}, {q('cnv_demo_' + suffix)}, {q(direction)}, "
                f"{q(f'wamid.demo.{suffix}.{i}')}, 'text', {q(text)}, {q(json.dumps({'body': text}))}, {q(mstatus)}, "
                f"{sender}, {1 if direction == 'outbound' else 0}, {q(at)}, {q(at)});"
            )
    out.append(
        "INSERT OR IGNORE INTO templates (id, tenant_id, name, language, category, components, parameter_count, created_at) "
        f"VALUES ('tpl_demo_order_update', {q(tenant)}, 'order_update', 'en_US', 'UTILITY', "
        f"{q(json.dumps([{'type': 'BODY', 'text': 'Hi {{1}}, your order {{2}} has shipped.'}]))}, 2, {q(iso(base))});"
    )
    return out


ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHOP = "ten_demo_shop"
# id, fixture file (tests/fixtures), filename shown, content type. `make seed` puts the same
# files into local R2 under media_key(id) (see the Makefile's seed target).
SHOP_MEDIA = [
    ("med_demo_price_list_pdf", "price-list.pdf", "alder-supplier-price-list-2026.pdf", "application/pdf"),
    ("med_demo_price_list_csv", "price-list.csv", "linen-price-list.csv", "text/csv"),
    ("med_demo_label_png", "label.png", "mug-label.png", "image/png"),
]


def media_key(media_id):
    return f"tenants/{SHOP}/media/{media_id}"


def shop_sql():
    """The shop tenant: three files (their bytes go to local R2 in `make seed`), a finished
    extract_text job on the supplier PDF with its candidates, and products, two of them made
    from that job's candidates as `POST /products/from-candidates` would make them."""
    base = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    out = []
    for i, (mid, fixture, filename, ctype) in enumerate(SHOP_MEDIA):
        with open(os.path.join(ROOT, "tests", "fixtures", fixture), "rb") as f:
            data = f.read()
        at = iso(base - datetime.timedelta(days=3, minutes=-i))
        out.append(
            "INSERT OR IGNORE INTO media (id, tenant_id, filename, content_type, size, sha256, r2_key, attributes, "
            f"created_by, created_at) VALUES ({q(mid)}, {q(SHOP)}, {q(filename)}, {q(ctype)}, {len(data)}, "
            f"{q(hashlib.sha256(data).hexdigest())}, {q(media_key(mid))}, '{{}}', 'usr_demo_shop_owner', {q(at)});"
        )
    # The result the extractor produces for this PDF; a unit test in src/media/jobs.rs keeps the
    # file equal to the real output.
    with open(os.path.join(ROOT, "scripts", "demo", "price-list-job.json")) as f:
        result = json.load(f)
    job = "job_demo_price_list"
    started = base - datetime.timedelta(days=3, minutes=-5)
    done = started + datetime.timedelta(seconds=2)
    out.append(
        "INSERT OR IGNORE INTO jobs (id, tenant_id, media_id, kind, status, progress, attempts, result, created_by, "
        f"created_at, updated_at, started_at, completed_at) VALUES ({q(job)}, {q(SHOP)}, 'med_demo_price_list_pdf', "
        f"'extract_text', 'completed', 100, 1, {q(json.dumps(result))}, 'usr_demo_shop_owner', {q(iso(started))}, "
        f"{q(iso(done))}, {q(iso(started))}, {q(iso(done))});"
    )
    products = [
        # id, name, sku, price (cents), quantity, category, status, media ids, candidate index
        ("prd_demo_mug", None, None, None, 24, "Kitchen", "active", ["med_demo_price_list_pdf", "med_demo_label_png"], 0),
        ("prd_demo_coasters", None, None, None, 40, "Kitchen", "draft", ["med_demo_price_list_pdf"], 2),
        ("prd_demo_napkin", "Linen napkin", "LIN-NAP-01", 450, 120, "Table linen", "active", ["med_demo_price_list_csv"], None),
        ("prd_demo_board", "Oak board", "OAK-BRD-01", 1990, 15, "Kitchen", "archived", [], None),
        # Found by typing "kyo" in search (issue 17's walkthrough).
        ("prd_demo_kyoto_mug", "Kyoto mug", "KYO-MUG-01", 1450, 30, "Kitchen", "active", ["med_demo_label_png"], None),
    ]
    for n, (pid, name, sku, price, qty, category, status, media, index) in enumerate(products):
        attributes = {}
        source = None
        if index is not None:
            c = result["product_candidates"][index]
            name, price, source = c["name"], c["price"], job
            sku = c["sku"] or f"CAND-{job[4:12]}-{index + 1}".upper()
            attributes = {"source_line": c["text"], "confidence": c["confidence"]}
        at = iso(done + datetime.timedelta(minutes=10 + n))
        out.append(
            "INSERT OR IGNORE INTO products (id, tenant_id, name, sku, price, currency, quantity, category, attributes, "
            f"status, media_ids, source_job_id, created_at, updated_at) VALUES ({q(pid)}, {q(SHOP)}, {q(name)}, "
            f"{q(sku)}, {price}, 'EUR', {qty}, {q(category)}, {q(json.dumps(attributes))}, {q(status)}, "
            f"{q(json.dumps(media))}, {q(source)}, {q(at)}, {q(at)});"
        )
    # Inventory: reorder levels (the napkins sit at theirs, alerted), and the mug's stock as
    # its movements made it (a delivery of 30, two sales).
    out.append("UPDATE products SET reorder_level = 10 WHERE id = 'prd_demo_mug' AND reorder_level IS NULL;")
    out.append(
        "UPDATE products SET reorder_level = 120, low_stock_alerted = 1 "
        "WHERE id = 'prd_demo_napkin' AND reorder_level IS NULL;"
    )
    ledger = 0
    for n, (kind, change, reference) in enumerate([("receipt", 30, "PO-1001"), ("sale", -4, "ORD-2001"), ("sale", -2, "ORD-2002")]):
        ledger += change
        at = iso(done + datetime.timedelta(hours=1 + n))
        out.append(
            "INSERT OR IGNORE INTO stock_movements (id, tenant_id, product_id, kind, quantity, quantity_after, reason, "
            f"reference, user_id, created_at) VALUES ('mov_demo_mug_{n + 1}', {q(SHOP)}, 'prd_demo_mug', {q(kind)}, "
            f"{change}, {ledger}, NULL, {q(reference)}, 'usr_demo_shop_owner', {q(at)});"
        )
    return out


def r2_objects():
    """Lines of `key<TAB>file<TAB>content type` for the Makefile to put into local R2."""
    for mid, fixture, _, ctype in SHOP_MEDIA:
        print(f"{media_key(mid)}\t{os.path.join('tests', 'fixtures', fixture)}\t{ctype}")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def workflow_sql(provider, now):
    out = []
    tenant = "ten_demo_agency"
    base = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    workflows = demo_workflows(provider)
    for i, (wid, name, desc, price, cost, steps) in enumerate(workflows):
        config = json.dumps({"timeout_seconds": 1800, "steps": steps})
        out.append(
            # The agency's priced workflows for its client: managed (pricing is the agency's).
            "INSERT INTO workflows (id, tenant_id, name, description, status, config, cost_per_execution, "
            "revenue_per_execution, created_at, updated_at, deployed_at, managed) VALUES "
            f"({q(wid)}, {q(tenant)}, {q(name)}, {q(desc)}, 'deployed', {q(config)}, {q(float(cost))}, "
            f"{q(float(price))}, {q(iso(base - datetime.timedelta(days=60, minutes=i)))}, {q(now)}, {q(now)}, 1) "
            "ON CONFLICT(id) DO UPDATE SET config = excluded.config, managed = 1;"
        )
    # Past executions of the first workflow, one or more in every state. The running ones have
    # no queue message behind them: the timeout sweep fails them half an hour later, as it
    # would any stuck run.
    wid, _, _, _, _, steps = workflows[0]
    config = json.dumps({"timeout_seconds": 1800, "steps": steps})
    images = [{"url": f"{provider}/files/demo-{k}.png", "revised_prompt": "a lighthouse at dawn"} for k in range(2)]
    final = {"prompt": "a lighthouse at dawn", "images": images}
    history = [
        # suffix, status, minutes ago, next_step, progress, output, error, attempts
        ("done1", "completed", 3 * 24 * 60, 3, 100, final, None, 3),
        ("done2", "completed", 26 * 60, 3, 100, final, None, 4),
        ("failed", "failed", 20 * 60, 0, 0, None, "step `generate` failed: POST /v1/images/generations answered 500", 3),
        ("cancel", "cancelled", 5 * 60, 1, 33, None, None, 1),
        ("running", "processing", 3, 1, 33, None, None, 1),
        ("queued", "pending", 1, 0, 0, None, None, 0),
    ]
    for suffix, status, ago, next_step, progress, output, error, attempts in history:
        created = base - datetime.timedelta(minutes=ago)
        ended = status in ("completed", "failed", "cancelled")
        completed = iso(created + datetime.timedelta(seconds=4)) if ended else None
        started = iso(created + datetime.timedelta(seconds=1)) if status != "pending" else None
        out.append(
            "INSERT OR IGNORE INTO executions (id, workflow_id, tenant_id, status, progress, input_data, output_data, "
            "error_message, attempts, config, step_count, next_step, timeout_at, created_by, created_at, updated_at, "
            "started_at, completed_at, duration_seconds) VALUES "
            f"({q('exe_demo_' + suffix)}, {q(wid)}, {q(tenant)}, {q(status)}, {progress}, "
            f"{q(json.dumps({'prompt': 'a lighthouse at dawn', 'count': 2}))}, "
            f"{q(json.dumps(output) if output else None)}, {q(error)}, {attempts}, {q(config)}, {len(steps)}, "
            f"{next_step}, {q(iso(created + datetime.timedelta(minutes=30)))}, 'usr_demo_agency_member', "
            f"{q(iso(created))}, {q(completed or iso(created))}, {q(started)}, {q(completed)}, "
            f"{q(3.0 if ended else None)});"
        )
    return out


if __name__ == "__main__":
    main()
