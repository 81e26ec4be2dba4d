#!/usr/bin/env python3
"""A local stand-in for the external services workflow steps call, used by `make dev` and the
integration tests. Standard library only. Every request is recorded and can be read back.

Provider API (what the demo workflows call):
  POST /v1/images/generations  {prompt, n?, size?}     -> {"created", "data": [{"url", "revised_prompt"}]}
  POST /v1/images/<operation>  {image_url?, ...}        -> {"operation", "data": [{"url"}], "params"}
  POST /v1/chat/completions    {messages, model?}       -> {"choices": [{"message": {"content"}}], "usage"}

Test behaviours (KEY is any string; calls are recorded under it):
  ANY  /echo/KEY[?status=N]    -> 200 (or N) {"method", "path", "received": <json body>, "headers", "call"}
  ANY  /flaky/KEY/N            -> 500 for the first N calls, then 200 {"ok": true, "call"}
  ANY  /fail/KEY               -> 500 {"error": "upstream failure"} always
  ANY  /hook/KEY               -> 200, a callback receiver
  ANY  /redirect/KEY?to=URL    -> 302 to URL (a step must not follow it)
  GET  /_calls/KEY             -> {"calls": [{"method", "path", "headers", "body", "at"}]}

E-mail (EMAIL_API_URL points at /email/v3/mail/send, SendGrid v3; calls recorded under "email",
with the parsed body as "json"):
  POST /email/v3/mail/send -> 202 (X-Message-Id); no bearer token -> 401; no personalizations ->
       400; a recipient starting "bounce" -> 500 always, "flaky" -> 503 on its first message.

Web push service (subscription endpoints point at /push/ID; calls recorded under "push" with
their headers and the encrypted body as "body_b64"):
  POST /push/ID -> 201 (Location: /push-messages/N); without `Authorization: vapid t=…, k=…` -> 401,
       without `Content-Encoding: aes128gcm` or a TTL header -> 400. Ids starting "gone" answer
       410 (an expired subscription), "busy" 429 with Retry-After: 1 on their first call then 201,
       "down" 500 always.

OCR service (OCR_API_URL points at /ocr; calls recorded under "ocr"):
  POST /ocr  <image bytes>  -> {"text", "confidence", "pages"}; bytes containing FAIL-OCR -> 500

WhatsApp Graph API (GRAPH_API_BASE points here; calls recorded under "graph-PHONE_NUMBER_ID"):
  POST /VERSION/PHONE_NUMBER_ID/messages -> {"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}
       phone number ids starting with "reject" answer 400 with a Meta error (131030),
       "flaky" ones 500 on their first call, "slow" ones answer after 3 s, "hang" ones after
       25 s (past the sender's deadline); a missing bearer token is 401.
  GET  /VERSION/MEDIA_ID (or /MEDIA_ID)  -> {"url", "mime_type", "sha256", "file_size", "id"}
  GET  /media-files/MEDIA_ID             -> the file's bytes (calls recorded under "graph-media")
       both need a bearer token (401 without); the id's prefix picks the file: "png" a PNG image,
       "pdf" a PDF, "ogg" an Ogg/Opus voice note, "mp4" a video; "broken" ids answer 500 always,
       "flaky" ids 500 on their first look-up.

Stripe API (STRIPE_API_BASE points at /stripe; calls recorded under "stripe" with their
"form": the form body parsed into {"line_items[0][price]": ..., ...}):
  POST /stripe/v1/checkout/sessions        -> a checkout.session {id: "cs_test_…", url, mode, customer,
       customer_email, client_reference_id, metadata}; needs mode, success_url and in subscription
       mode line_items[0][price]; customer and customer_email are exclusive (400 as on Stripe)
  POST /stripe/v1/billing_portal/sessions  -> a billing_portal.session {id: "bps_…", url, customer, return_url}
  GET  /stripe/v1/subscriptions/ID         -> a subscription {id, status, customer, cancel_at_period_end,
       items: {data: [{id: "si_…", price: {id, unit_amount, currency, recurring}, current_period_*}]}},
       made up on first sight (price "price_mock_default") and kept in memory
  POST /stripe/v1/subscriptions/ID         -> the same, changed: items[0][id] must be the current item
       (400 resource_missing otherwise), items[0][price], cancel_at_period_end, proration_behavior
  POST /stripe/v1/refunds                  -> a refund {id: "re_…", status: "pending", amount, charge,
       payment_intent, reason, metadata} (charge or payment_intent required; reason one of
       duplicate, fraudulent, requested_by_customer; the mock knows no charges: no amount is 0)
  GET  /stripe/checkout/ID, /stripe/portal/ID -> a small HTML page (the links the sessions give)
  Every API call needs `Authorization: Bearer sk_test_…` (401 with Stripe's error shape otherwise)
  and a POST a form body (`application/x-www-form-urlencoded`, 400 otherwise). An Idempotency-Key
  seen before replays the first answer (header `Idempotent-Replayed: true`); with other
  parameters it is 400 idempotency_error, as on Stripe. Errors are {"error": {type, code?, message,
  param?}}. Test triggers: a customer id starting "cus_missing", price "price_missing", charge
  "ch_missing" or subscription "sub_missing" -> 400/404 resource_missing; a customer id starting
  "cus_down" or a customer_email starting "stripe-down" -> 500 api_error.
Sign in with Google and GitHub (OAUTH_GOOGLE_ISSUER=…/oauth/google, OAUTH_GITHUB_BASE=…/oauth/github,
OAUTH_GITHUB_API_BASE=…/oauth/github/api): a stand-in OpenID provider and GitHub, described in
scripts/oauth_standin.py (its clients, endpoints and the mock_* knobs for the bad cases).
LLM providers (OPENAI_API_BASE=…/llm/openai, DEEPSEEK_API_BASE=…/llm/deepseek,
ANTHROPIC_API_BASE=…/llm/anthropic, GEMINI_API_BASE=…/llm/gemini, an openai-compatible base
…/llm/compatible; calls recorded under "llm-PROVIDER" with their headers):
  POST /llm/{openai,deepseek,compatible}/chat/completions  {model, messages, ...}  (Authorization: Bearer KEY)
       -> a chat.completion {id, object, created, model, choices: [{index, message: {role, content},
          finish_reason}], usage: {prompt_tokens, completion_tokens, total_tokens}}
  POST /llm/anthropic/v1/messages  {model, max_tokens, system?, messages}  (x-api-key, anthropic-version: 2023-06-01)
       -> a message {id, type, role, model, content: [{type: "text", text}], stop_reason, usage: {input_tokens, output_tokens}}
  POST /llm/gemini/v1beta/models/MODEL:generateContent  {systemInstruction?, contents}  (x-goog-api-key)
       -> {candidates: [{content: {parts: [{text}], role: "model"}, finishReason, safetyRatings}],
           usageMetadata: {promptTokenCount, candidatesTokenCount, totalTokenCount}, modelVersion: MODEL}
  The answer is a deterministic compression of the last user message: whitespace collapsed, the
  words please/kindly/really/very/just/basically/actually dropped (any case, with a trailing comma),
  "in order to" -> "to", everything else (placeholders included) kept. Usage: input = words of
  system + user, output = words of the answer (each at least 1). Errors use each provider's own
  shape: a missing key or one starting "sk-bad" -> 401 (OpenAI's message echoes the key masked,
  DeepSeek's its last 4 characters, as the real ones do); Gemini answers as Google does: no key
  -> 403 PERMISSION_DENIED, a key starting "sk-bad" -> 400 API_KEY_INVALID; Anthropic without
  anthropic-version: 2023-06-01 -> 400; no model or messages (Anthropic: or max_tokens; Gemini:
  contents) -> 400. Triggers in the user text: MOCK-429 -> 429 (rate-limit shape, retry-after: 1)
  the first time that exact text is seen (by any provider), then normal; MOCK-500 -> 500 always;
  MOCK-SLOW -> the answer after 40 s; MOCK-DROP -> the answer without its placeholders ({{x}}, {x},
  $VAR); MOCK-LONGER -> the answer twice; MOCK-FENCE -> the answer in ```text fences.
"""
import argparse
import base64
import hashlib
import secrets
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import oauth_standin

CALLS = {}
LOCK = threading.Lock()


def record(key, entry):
    with LOCK:
        CALLS.setdefault(key, []).append(entry)
        return len(CALLS[key])


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a1e5b6d80000000049454e44ae426082")
MEDIA_FILES = {
    "png": ("image/png", PNG_1PX),
    "pdf": ("application/pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"),
    "ogg": ("audio/ogg", b"OggS\x00\x02" + b"\x00" * 20 + b"OpusHead" + b"\x01" * 16),
    "mp4": ("video/mp4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 16),
}


def media_file(media_id):
    for prefix, file in MEDIA_FILES.items():
        if media_id.startswith(prefix):
            return file
    return MEDIA_FILES["png"]


def image_url(host, seed, i):
    digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:16]
    return f"http://{host}/files/{digest}.png"


STRIPE_SUBSCRIPTIONS = {}
STRIPE_IDEMPOTENCY = {}
STRIPE_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
STRIPE_PRORATIONS = ("create_prorations", "none", "always_invoice")


def stripe_error(status, kind, message, code=None, param=None):
    error = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}


def stripe_missing(what, value, param):
    return stripe_error(400, "invalid_request_error", f"No such {what}: '{value}'", "resource_missing", param)


def stripe_nested(form, name):
    """`metadata[tenant_id]=x` -> {"tenant_id": "x"} for one level of nesting."""
    prefix = f"{name}["
    return {k[len(prefix):-1]: v for k, v in form.items() if k.startswith(prefix) and k.endswith("]")
            and "[" not in k[len(prefix):-1]}


def stripe_subscription(sub_id):
    with LOCK:
        sub = STRIPE_SUBSCRIPTIONS.get(sub_id)
        if sub is None:
            now = int(time.time())
            digest = hashlib.sha256(sub_id.encode()).hexdigest()
            sub = {"id": sub_id, "object": "subscription", "status": "active",
                   "customer": f"cus_mock{digest[:14]}", "cancel_at_period_end": False, "metadata": {},
                   "created": now, "currency": "eur",
                   "items": {"object": "list", "data": [{
                       "id": f"si_{digest[14:28]}", "object": "subscription_item", "quantity": 1,
                       "current_period_start": now, "current_period_end": now + 30 * 86400,
                       "price": {"id": "price_mock_default", "object": "price", "unit_amount": 4900,
                                 "currency": "eur", "recurring": {"interval": "month", "interval_count": 1}}}]}}
            STRIPE_SUBSCRIPTIONS[sub_id] = sub
        return json.loads(json.dumps(sub))


def stripe_api(method, parts, form, host):
    """One Stripe call (after the key and content type checks): (status, payload)."""
    if method == "POST" and parts == ["checkout", "sessions"]:
        mode = form.get("mode")
        if mode not in ("payment", "setup", "subscription"):
            return stripe_error(400, "invalid_request_error", "Missing required param: mode.", "parameter_missing", "mode")
        if not form.get("success_url"):
            return stripe_error(400, "invalid_request_error", "Missing required param: success_url.",
                                "parameter_missing", "success_url")
        price = form.get("line_items[0][price]")
        if mode == "subscription" and not price:
            return stripe_error(400, "invalid_request_error", "Missing required param: line_items[0][price].",
                                "parameter_missing", "line_items[0][price]")
        if price and (price.startswith("price_missing") or not price.startswith("price_")):
            return stripe_missing("price", price, "line_items[0][price]")
        customer, email = form.get("customer"), form.get("customer_email")
        if customer and email:
            return stripe_error(400, "invalid_request_error",
                                "You may only specify one of these parameters: customer, customer_email.")
        if (customer or "").startswith("cus_down") or (email or "").startswith("stripe-down"):
            return stripe_error(500, "api_error", "An unknown error occurred")
        if (customer or "").startswith("cus_missing"):
            return stripe_missing("customer", customer, "customer")
        session_id = f"cs_test_{secrets.token_hex(16)}"
        return 200, {"id": session_id, "object": "checkout.session", "mode": mode, "status": "open",
                     "url": f"http://{host}/stripe/checkout/{session_id}", "customer": customer,
                     "customer_email": email, "client_reference_id": form.get("client_reference_id"),
                     "metadata": stripe_nested(form, "metadata"), "success_url": form.get("success_url"),
                     "cancel_url": form.get("cancel_url"), "created": int(time.time()),
                     "expires_at": int(time.time()) + 86400}
    if method == "POST" and parts == ["billing_portal", "sessions"]:
        customer = form.get("customer")
        if not customer:
            return stripe_error(400, "invalid_request_error", "Missing required param: customer.",
                                "parameter_missing", "customer")
        if customer.startswith("cus_down"):
            return stripe_error(500, "api_error", "An unknown error occurred")
        if customer.startswith("cus_missing"):
            return stripe_missing("customer", customer, "customer")
        session_id = f"bps_{secrets.token_hex(12)}"
        return 200, {"id": session_id, "object": "billing_portal.session", "customer": customer,
                     "return_url": form.get("return_url"), "url": f"http://{host}/stripe/portal/{session_id}",
                     "created": int(time.time())}
    if len(parts) == 2 and parts[0] == "subscriptions" and method in ("GET", "POST"):
        sub_id = parts[1]
        if sub_id.startswith("sub_missing"):
            return stripe_error(404, "invalid_request_error", f"No such subscription: '{sub_id}'",
                                "resource_missing", "id")
        sub = stripe_subscription(sub_id)
        if method == "GET":
            return 200, sub
        item = sub["items"]["data"][0]
        if "items[0][id]" in form and form["items[0][id]"] != item["id"]:
            return stripe_missing("subscription item", form["items[0][id]"], "items[0][id]")
        proration = form.get("proration_behavior")
        if proration is not None and proration not in STRIPE_PRORATIONS:
            return stripe_error(400, "invalid_request_error", f"Invalid proration_behavior: {proration}",
                                "parameter_invalid_string", "proration_behavior")
        price = form.get("items[0][price]")
        if price is not None:
            if price.startswith("price_missing") or not price.startswith("price_"):
                return stripe_missing("price", price, "items[0][price]")
            item["price"]["id"] = price
        flag = form.get("cancel_at_period_end")
        if flag is not None:
            if flag not in ("true", "false"):
                return stripe_error(400, "invalid_request_error", "Invalid boolean: " + flag,
                                    "parameter_invalid_boolean", "cancel_at_period_end")
            sub["cancel_at_period_end"] = flag == "true"
        with LOCK:
            STRIPE_SUBSCRIPTIONS[sub_id] = sub
        return 200, sub
    if method == "POST" and parts == ["refunds"]:
        charge, intent = form.get("charge"), form.get("payment_intent")
        if not charge and not intent:
            return stripe_error(400, "invalid_request_error",
                                "One of the following params should be provided for this request: payment_intent or charge.")
        if (charge or "").startswith("ch_missing"):
            return stripe_missing("charge", charge, "charge")
        reason = form.get("reason")
        if reason is not None and reason not in STRIPE_REFUND_REASONS:
            return stripe_error(400, "invalid_request_error", f"Invalid reason: must be one of {', '.join(STRIPE_REFUND_REASONS)}",
                                "parameter_invalid_string", "reason")
        amount = form.get("amount", "0")
        if not amount.isdigit():
            return stripe_error(400, "invalid_request_error", "Invalid integer: " + amount,
                                "parameter_invalid_integer", "amount")
        return 200, {"id": f"re_{secrets.token_hex(12)}", "object": "refund", "amount": int(amount),
                     "charge": charge, "payment_intent": intent, "currency": "eur", "reason": reason,
                     "status": "pending", "metadata": stripe_nested(form, "metadata"), "created": int(time.time())}
    return stripe_error(404, "invalid_request_error", f"Unrecognized request URL ({method}: /v1/{'/'.join(parts)}).")


LLM_FILLER = {"please", "kindly", "really", "very", "just", "basically", "actually"}
LLM_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}|\{[^{}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
LLM_SEEN_429 = set()


def llm_compress(text):
    """The mock's "optimisation": collapse whitespace, drop filler words, "in order to" -> "to"."""
    words, out, i = text.split(), [], 0
    while i < len(words):
        if [w.lower() for w in words[i:i + 3]] == ["in", "order", "to"]:
            out.append(words[i + 2])
            i += 3
            continue
        if words[i].lower().rstrip(",") not in LLM_FILLER:
            out.append(words[i])
        i += 1
    return " ".join(out)


def llm_answer(user):
    answer = llm_compress(user)
    if "MOCK-DROP" in user:
        answer = " ".join(LLM_PLACEHOLDER.sub(" ", answer).split())
    if "MOCK-LONGER" in user:
        answer = f"{answer} {answer}"
    if "MOCK-FENCE" in user:
        answer = f"```text\n{answer}\n```"
    return answer


def llm_text(content):
    """A message's text: a string, or the text of its content parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def llm_mask(key):
    """OpenAI's echo of a wrong key: the start and the last 4 characters, starred between."""
    if len(key) <= 8:
        return key[:3] + "*" * max(len(key) - 5, 1) + key[-2:]
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def llm_openai_error(status, message, kind="invalid_request_error", code=None, param=None):
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def llm_anthropic_error(status, kind, message):
    return status, {"type": "error", "error": {"type": kind, "message": message},
                    "request_id": f"req_mock{secrets.token_hex(8)}"}


def llm_gemini_error(status, code_name, message, details=None):
    error = {"code": status, "message": message, "status": code_name}
    if details:
        error["details"] = details
    return status, {"error": error}


def llm_chat(provider, headers, body):
    """OpenAI's chat completions (also DeepSeek's and an OpenAI-compatible server's).
    Like llm_anthropic and llm_gemini: ((status, payload) of a refusal, None) or
    (None, (system text, user text, model))."""
    auth = headers.get("authorization", "")
    key = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else ""
    if not key or key.startswith("sk-bad"):
        if provider == "deepseek":
            message = (f"Authentication Fails, Your api key: ****{key[-4:]} is invalid" if key
                       else "Authentication Fails (auth header format should be Bearer sk-...)")
            return llm_openai_error(401, message, "authentication_error", "invalid_request_error"), None
        if key:
            return llm_openai_error(401, f"Incorrect API key provided: {llm_mask(key)}. You can find your "
                                    "API key at https://platform.openai.com/account/api-keys.",
                                    code="invalid_api_key"), None
        return llm_openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."), None
    model = body.get("model")
    if not model:
        return llm_openai_error(400, "you must provide a model parameter"), None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return llm_openai_error(400, "Missing required parameter: 'messages'.",
                                code="missing_required_parameter", param="messages"), None
    dicts = [m for m in messages if isinstance(m, dict)]
    system = "\n".join(llm_text(m.get("content")) for m in dicts if m.get("role") in ("system", "developer"))
    users = [llm_text(m.get("content")) for m in dicts if m.get("role") == "user"]
    return None, (system, users[-1] if users else "", model)


def llm_anthropic(headers, body):
    key = headers.get("x-api-key", "")
    if not key:
        return llm_anthropic_error(401, "authentication_error", "x-api-key header is required"), None
    if key.startswith("sk-bad"):
        return llm_anthropic_error(401, "authentication_error", "invalid x-api-key"), None
    if headers.get("anthropic-version") != "2023-06-01":
        return llm_anthropic_error(400, "invalid_request_error", "anthropic-version: header is required"), None
    for field in ("model", "messages", "max_tokens"):
        if not body.get(field):
            return llm_anthropic_error(400, "invalid_request_error", f"{field}: Field required"), None
    messages = [m for m in body["messages"] if isinstance(m, dict)] if isinstance(body["messages"], list) else []
    users = [llm_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return None, (llm_text(body.get("system")), users[-1] if users else "", body["model"])


def llm_gemini(headers, body, model):
    key = headers.get("x-goog-api-key", "")
    if not key:
        return llm_gemini_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers "
                                "without established identity). Please use API Key or other form of API consumer "
                                "identity to call this API."), None
    if key.startswith("sk-bad"):
        return llm_gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."}]), None
    if not model:
        return llm_gemini_error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.model: unexpected model name format\n"), None
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return llm_gemini_error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n"), None
    users = [llm_text(c.get("parts")) for c in contents if isinstance(c, dict) and c.get("role", "user") == "user"]
    instruction = body.get("systemInstruction")
    system = llm_text(instruction.get("parts")) if isinstance(instruction, dict) else ""
    return None, (system, users[-1] if users else "", model)


def llm_trouble(provider, user):
    """The MOCK-429 / MOCK-500 triggers: (status, payload, headers) or None."""
    if "MOCK-500" in user:
        if provider == "anthropic":
            return (*llm_anthropic_error(500, "api_error", "Internal server error"), None)
        if provider == "gemini":
            return (*llm_gemini_error(500, "INTERNAL", "An internal error has occurred. Please retry or report in "
                                      "https://developers.generativeai.google/guide/troubleshooting"), None)
        return (*llm_openai_error(500, "The server had an error while processing your request. Sorry about that!",
                                  "server_error"), None)
    if "MOCK-429" in user:
        with LOCK:
            first = user not in LLM_SEEN_429
            LLM_SEEN_429.add(user)
        if first:
            retry = {"retry-after": "1"}
            if provider == "anthropic":
                return (*llm_anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded your "
                                             "per-minute rate limit (https://docs.anthropic.com/en/api/rate-limits); "
                                             "see the response headers for current usage."), retry)
            if provider == "gemini":
                return (*llm_gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
                        retry)
            return (*llm_openai_error(429, "Rate limit reached for requests per min (RPM): Limit 3, Used 3, "
                                      "Requested 1. Please try again in 1s.", "requests", "rate_limit_exceeded"), retry)
    return None


def llm_success(provider, system, user, model):
    """The answer in the provider's full shape."""
    text = llm_answer(user)
    words_in = max(1, len(system.split()) + len(user.split()))
    words_out = max(1, len(text.split()))
    digest = hashlib.sha256(f"{provider}:{model}:{user}".encode()).hexdigest()
    now = int(time.time())
    if provider == "anthropic":
        return {"id": f"msg_mock{digest[:20]}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": words_in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                          "output_tokens": words_out, "service_tier": "standard"}}
    if provider == "gemini":
        return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
                                "index": 0, "safetyRatings": [
                                    {"category": c, "probability": "NEGLIGIBLE"} for c in (
                                        "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_HATE_SPEECH",
                                        "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_DANGEROUS_CONTENT")]}],
                "usageMetadata": {"promptTokenCount": words_in, "candidatesTokenCount": words_out,
                                  "totalTokenCount": words_in + words_out,
                                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": words_in}]},
                "modelVersion": model, "responseId": digest[:22]}
    usage = {"prompt_tokens": words_in, "completion_tokens": words_out, "total_tokens": words_in + words_out}
    if provider == "deepseek":
        usage.update({"prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": words_in})
        ident = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    else:
        usage.update({"prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
        ident = f"chatcmpl-mock{digest[:20]}"
    message = {"role": "assistant", "content": text}
    if provider != "deepseek":
        message.update({"refusal": None, "annotations": []})
    return {"id": ident, "object": "chat.completion", "created": now, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "system_fingerprint": "fp_mock" + digest[:6]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; the tests read /_calls instead
        pass

    def reply(self, status, payload, headers=None):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": text,
            "at": time.time(),
        }
        host = self.headers.get("Host", "localhost")

        if self.command == "GET" and len(parts) == 2 and parts[0] == "_calls":
            with LOCK:
                calls = list(CALLS.get(parts[1], []))
            return self.reply(200, {"calls": calls})
        if parts[:1] == ["stripe"]:
            return self.stripe(parts[1:], entry, raw, host)
        if parts[:1] == ["oauth"]:
            record("oauth", entry)
            return oauth_standin.handle(self, parts[1:], urllib.parse.urlsplit(self.path).query, raw, host)
        if parts[:1] == ["llm"] and len(parts) >= 2:
            return self.llm(parts[1], parts[2:], entry, body)
        if len(parts) >= 2 and parts[0] == "redirect":
            record(parts[1], entry)
            to = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("to", ["/"])[0]
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if len(parts) >= 2 and parts[0] in ("echo", "flaky", "fail", "hook"):
            n = record(parts[1], entry)
            if parts[0] == "echo":
                status = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("status", ["200"])[0]
                return self.reply(int(status) if status.isdigit() else 200, {"method": self.command, "path": self.path, "received": body,
                                        "headers": entry["headers"], "call": n})
            if parts[0] == "flaky":
                failures = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
                if n <= failures:
                    return self.reply(500, {"error": f"flaky failure {n} of {failures}"})
                return self.reply(200, {"ok": True, "call": n})
            if parts[0] == "fail":
                return self.reply(500, {"error": "upstream failure"})
            return self.reply(200, {"received": True})

        if self.command == "POST" and parts == ["email", "v3", "mail", "send"]:
            n = record("email", {**entry, "json": body})
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                return self.reply(401, {"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked", "field": None}]})
            to = ""
            try:
                to = body["personalizations"][0]["to"][0]["email"]
            except (KeyError, IndexError, TypeError):
                return self.reply(400, {"errors": [{"message": "The personalizations field is required.", "field": "personalizations"}]})
            if to.startswith("bounce"):
                return self.reply(500, {"errors": [{"message": "Internal error", "field": None}]})
            if to.startswith("flaky") and sum(1 for c in CALLS.get("email", []) if (c.get("json") or {}).get("personalizations", [{}])[0].get("to", [{}])[0].get("email") == to) == 1:
                return self.reply(503, {"errors": [{"message": "Service unavailable", "field": None}]})
            self.send_response(202)
            self.send_header("X-Message-Id", f"mock-{n}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "POST" and len(parts) == 2 and parts[0] == "push":
            push_id = parts[1]
            n = record("push", {**entry, "body": f"<{len(raw)} bytes>",
                                "body_b64": base64.b64encode(raw).decode(), "id": push_id})
            if not self.headers.get("Authorization", "").startswith("vapid t="):
                return self.reply(401, {"error": "missing VAPID authorization"})
            if self.headers.get("Content-Encoding") != "aes128gcm" or not self.headers.get("TTL"):
                return self.reply(400, {"error": "expected Content-Encoding: aes128gcm and a TTL"})
            if push_id.startswith("gone"):
                return self.reply(410, {"error": "push subscription has unsubscribed or expired"})
            if push_id.startswith("down"):
                return self.reply(500, {"error": "push service failure"})
            if push_id.startswith("busy") and sum(1 for c in CALLS.get("push", []) if c.get("id") == push_id) == 1:
                return self.reply(429, {"error": "too many requests"}, {"Retry-After": "1"})
            self.send_response(201)
            self.send_header("Location", f"/push-messages/{n}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "POST" and parts == ["ocr"]:
            record("ocr", {**entry, "body": f"<{len(raw)} bytes>"})
            if b"FAIL-OCR" in raw:
                return self.reply(500, {"error": "the OCR engine crashed"})
            return self.reply(200, {"text": f"Label scan ({len(raw)} bytes)\nBlue mug 8.90 EUR\nRed mug 9,50 EUR",
                                    "confidence": 0.91, "pages": 1})
        if self.command == "GET" and (parts[:1] == ["media-files"] and len(parts) == 2):
            n = record("graph-media", entry)
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                return self.reply(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
            mime, data = media_file(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.command == "GET" and (len(parts) == 1 or (len(parts) == 2 and parts[0].startswith("v"))) \
                and parts[-1] not in ("_calls",):
            media_id = parts[-1]
            n = record("graph-media", entry)
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                return self.reply(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
            lookups = sum(1 for c in CALLS.get("graph-media", []) if c["path"] == self.path)
            if media_id.startswith("broken") or (media_id.startswith("flaky") and lookups == 1):
                return self.reply(500, {"error": {"message": "Service temporarily unavailable", "code": 2}})
            mime, data = media_file(media_id)
            return self.reply(200, {"messaging_product": "whatsapp", "url": f"http://{host}/media-files/{media_id}",
                                    "mime_type": mime, "sha256": hashlib.sha256(data).hexdigest(),
                                    "file_size": len(data), "id": media_id})
        if self.command == "POST" and len(parts) == 3 and parts[2] == "messages" and parts[0].startswith("v"):
            phone = parts[1]
            n = record(f"graph-{phone}", entry)
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                return self.reply(401, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}})
            if phone.startswith("reject"):
                return self.reply(400, {"error": {"message": "(#131030) Recipient phone number not in allowed list",
                                                  "type": "OAuthException", "code": 131030,
                                                  "error_data": {"details": "Recipient phone number not in allowed list"}}})
            if phone.startswith("slow"):
                time.sleep(3)
            if phone.startswith("hang"):
                time.sleep(25)
            if phone.startswith("flaky") and n == 1:
                return self.reply(500, {"error": {"message": "Service temporarily unavailable", "code": 2}})
            to = body.get("to", "") if isinstance(body, dict) else ""
            return self.reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                    "messages": [{"id": f"wamid.{phone}.{n}"}]})
        record("provider", entry)
        body = body if isinstance(body, dict) else {}
        if self.command == "POST" and parts[:3] == ["v1", "images", "generations"]:
            prompt = str(body.get("prompt", ""))
            try:
                n = max(1, min(int(body.get("n", 1)), 10))
            except (TypeError, ValueError):
                n = 1
            return self.reply(200, {"created": int(time.time()),
                                    "data": [{"url": image_url(host, prompt, i), "revised_prompt": prompt}
                                             for i in range(n)]})
        if self.command == "POST" and len(parts) == 3 and parts[:2] == ["v1", "images"]:
            seed = json.dumps(body, sort_keys=True) + parts[2]
            return self.reply(200, {"operation": parts[2], "params": body,
                                    "data": [{"url": image_url(host, seed, 0)}]})
        if self.command == "POST" and parts == ["v1", "chat", "completions"]:
            messages = body.get("messages") or []
            last = str(messages[-1].get("content", "")) if messages and isinstance(messages[-1], dict) else ""
            content = f"Post idea: {last.strip()[:200]} #brand #launch"
            return self.reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                                    "usage": {"prompt_tokens": len(last.split()), "completion_tokens": len(content.split())}})
        return self.reply(404, {"error": f"no mock for {self.command} {self.path}"})

    def llm(self, provider, rest, entry, body):
        record(f"llm-{provider}", entry)
        headers = entry["headers"]
        body = body if isinstance(body, dict) else {}
        post = self.command == "POST"
        if provider in ("openai", "deepseek", "compatible") and post and rest == ["chat", "completions"]:
            error, found = llm_chat(provider, headers, body)
        elif provider == "anthropic" and post and rest == ["v1", "messages"]:
            error, found = llm_anthropic(headers, body)
        elif provider == "gemini" and post and len(rest) == 3 and rest[:2] == ["v1beta", "models"] \
                and rest[2].endswith(":generateContent"):
            model = urllib.parse.unquote(rest[2][:-len(":generateContent")])
            error, found = llm_gemini(headers, body, model)
        elif provider == "anthropic":
            return self.reply(*llm_anthropic_error(404, "not_found_error", "Not Found"))
        elif provider == "gemini":
            return self.reply(*llm_gemini_error(404, "NOT_FOUND", f"no mock for {self.command} {self.path}"))
        else:
            return self.reply(*llm_openai_error(404, f"Invalid URL ({self.command} {self.path})"))
        if error:
            return self.reply(*error)
        system, user, model = found
        trouble = llm_trouble(provider, user)
        if trouble:
            return self.reply(*trouble)
        if "MOCK-SLOW" in user:
            time.sleep(40)
        return self.reply(200, llm_success(provider, system, user, model))

    def stripe(self, parts, entry, raw, host):
        if self.command == "GET" and len(parts) == 2 and parts[0] in ("checkout", "portal"):
            page = f"<!doctype html><title>Mock Stripe</title><h1>Mock Stripe {parts[0]}</h1><p>{parts[1]}</p>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return None
        query = urllib.parse.urlsplit(self.path).query
        form_text = raw.decode("utf-8", "replace") if self.command == "POST" else query
        form = dict(urllib.parse.parse_qsl(form_text, keep_blank_values=True))
        record("stripe", {**entry, "form": form})
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk_test_"):
            status, payload = stripe_error(401, "invalid_request_error",
                                           "Invalid API Key provided" if auth else
                                           "You did not provide an API key.")
            return self.reply(status, payload)
        if self.command == "POST" and not (self.headers.get("Content-Type") or "").startswith(
                "application/x-www-form-urlencoded"):
            return self.reply(*stripe_error(400, "invalid_request_error",
                                            "Invalid request: the body must be application/x-www-form-urlencoded."))
        if parts[:1] != ["v1"]:
            return self.reply(*stripe_error(404, "invalid_request_error", f"Unrecognized request URL ({self.path})."))
        key = self.headers.get("Idempotency-Key") if self.command == "POST" else None
        fingerprint = hashlib.sha256(f"{self.command} {self.path}\n{form_text}".encode()).hexdigest()
        if key:
            with LOCK:
                seen = STRIPE_IDEMPOTENCY.get((auth, key))
            if seen is not None:
                if seen[0] != fingerprint:
                    return self.reply(*stripe_error(
                        400, "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with."))
                body = json.dumps(seen[2]).encode()
                self.send_response(seen[1])
                self.send_header("Content-Type", "application/json")
                self.send_header("Idempotent-Replayed", "true")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
        status, payload = stripe_api(self.command, parts[1:], form, host)
        # Stripe keeps the answer of a request it ran (not one refused before running, nor a 500).
        if key and status < 500:
            with LOCK:
                STRIPE_IDEMPOTENCY.setdefault((auth, key), (fingerprint, status, payload))
        return self.reply(status, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"mock upstream on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
