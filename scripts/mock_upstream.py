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
"""
import argparse
import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; the tests read /_calls instead
        pass

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
