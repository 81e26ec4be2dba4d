#!/usr/bin/env python3
"""Lists import cycles between the crate's modules (`make check` fails on any but the allowed).

A module is a file under src/ (plus the #[path] files in durable/ and queues/); an edge A -> B is
a `crate::b::…` path in A's code outside its `#[cfg(test)]` block. Cycles are the strongly
connected components with more than one module.
Usage: module_cycles.py [--allow a,b ...]   (exit 1 when a cycle is not allowed)
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files included with #[path] are modules named after the file (`durable/x.rs` is `x`).
PATHS = {"queues/consumer.rs": "consumer"}
for f in os.listdir(os.path.join(ROOT, "durable")):
    PATHS[f"durable/{f}"] = f[:-3]


def module_name(rel):
    if rel in PATHS:
        return PATHS[rel]
    parts = rel[len("src/"):-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(p for p in parts if p != "lib") or "crate"


files = {}
for base in ["src", "durable", "queues"]:
    for dirpath, _, names in os.walk(os.path.join(ROOT, base)):
        for n in names:
            if n.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, n), ROOT)
                files[module_name(rel)] = open(os.path.join(ROOT, rel), encoding="utf-8").read()

modules = set(files)


def resolve(path):
    """The longest known module that a `crate::a::b::c` path names."""
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        m = "::".join(parts[:n])
        if m in modules:
            return m
    return None


edges = {m: set() for m in modules}
for m, text in files.items():
    text = text.split("#[cfg(test)]")[0]
    text = re.sub(r"//[^\n]*", "", text)
    # `use crate::a::{b, c::d}` groups: expand one level.
    for group in re.finditer(r"crate::([a-z_:]*)::\{([^}]*)\}", text):
        for item in group.group(2).split(","):
            item = item.strip().split(" as ")[0].split("::{")[0]
            target = resolve(f"{group.group(1)}::{item}".rstrip(":")) if item and item != "self" else resolve(group.group(1))
            if target and target != m:
                edges[m].add(target)
    for path in re.findall(r"crate::([a-z_][a-z0-9_:]*)", text):
        target = resolve(path.rstrip(":"))
        if target and target != m:
            edges[m].add(target)
    for sup in re.findall(r"\bsuper::([a-z_][a-z0-9_:]*)", text):
        parent = m.rsplit("::", 1)[0] if "::" in m else "crate"
        target = resolve(f"{parent}::{sup}".replace("crate::", "")) if parent != "crate" else resolve(sup)
        if target and target != m:
            edges[m].add(target)


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


ap = argparse.ArgumentParser()
ap.add_argument("--allow", action="append", default=[], help="a cycle allowed, as a,b")
args = ap.parse_args()
allowed = [sorted(a.split(",")) for a in args.allow]
bad = [c for c in sccs(edges) if c not in allowed]
for c in sccs(edges):
    mark = "allowed" if c in allowed else "CYCLE"
    print(f"{mark}: {' <-> '.join(c)}")
sys.exit(1 if bad else 0)
