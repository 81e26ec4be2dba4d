#!/usr/bin/env python3
"""Writes private copies of both Workers' configs into DIR, with absolute paths, for a
throwaway local run (tests, fuzzing, benchmarks): DIR/wrangler.toml (tenantry-api) and
DIR/jobs.toml (tenantry-jobs). Both sit in DIR, so both Workers read DIR/.dev.vars.

Usage: local_configs.py DIR   then   wrangler dev -c DIR/wrangler.toml -c DIR/jobs.toml ...
"""
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def absolute(text, base, keys):
    for key in keys:
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith(f"{key} = \""):
                rel = stripped.split('"')[1]
                text = text.replace(line, f'{key} = "{os.path.normpath(os.path.join(base, rel))}"')
    return text


with open(os.path.join(root, "wrangler.toml"), encoding="utf-8") as f:
    api = absolute(f.read(), root, ["main", "migrations_dir", "directory"])
with open(os.path.join(root, "queues", "wrangler.toml"), encoding="utf-8") as f:
    jobs = absolute(f.read(), os.path.join(root, "queues"), ["main"])
with open(os.path.join(out, "wrangler.toml"), "w", encoding="utf-8") as f:
    f.write(api)
with open(os.path.join(out, "jobs.toml"), "w", encoding="utf-8") as f:
    f.write(jobs)
