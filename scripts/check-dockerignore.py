#!/usr/bin/env python3
"""Checks .dockerignore the way Docker reads it (moby/patternmatcher): every path that holds a
secret or local state is left out of the build context, and everything the Dockerfile builds
from stays in. Run from anywhere; exits 1 with the offending paths."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Must never reach an image.
EXCLUDED = [
    "deploy/.env",
    ".env",
    ".fleet/secrets/access.key",
    ".fleet/logs/cart-1.log",
    "certs/ca.pem",
    "certs/cart.key",
    "deploy/certs/product.pem",
    "data/cart.db",
    "data/cart.db-wal",
    "services/notification/data/mail/1.eml",
    "crates/mall/data/product.db",
    "target/release/cart",
    ".git/config",
    "frontend/node_modules/x/index.js",
]
# What the build needs.
INCLUDED = [
    "Cargo.toml",
    "Cargo.lock",
    "proto/tiktokmall/cart/v1/cart.proto",
    "crates/common/src/lib.rs",
    "services/cart/src/main.rs",
    "services/product/migrations/mysql/0001_catalog.sql",
    "deploy/Dockerfile",
    "deploy/.env.example",
    "deploy/config/online.yaml",
]


def translate(pattern):
    """A .dockerignore pattern as a regular expression over slash-separated paths."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def rules():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            yield negate, translate(pattern)


def excluded(path, compiled):
    """Docker excludes a path when it, or any directory above it, matches (last rule wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in compiled:
        if any(regex.match(p) for p in prefixes):
            verdict = not negate
    return verdict


def main():
    compiled = list(rules())
    absent = [p for p in INCLUDED if not os.path.exists(os.path.join(ROOT, p))]
    for p in absent:
        print(f"check-dockerignore: {p} no longer exists; name a file the build needs")
    if absent:
        sys.exit(1)
    leaks = [p for p in EXCLUDED if not excluded(p, compiled)]
    missing = [p for p in INCLUDED if excluded(p, compiled)]
    for p in leaks:
        print(f".dockerignore lets {p} into the build context")
    for p in missing:
        print(f".dockerignore keeps {p}, which the build needs, out of the build context")
    if leaks or missing:
        sys.exit(1)
    print(f".dockerignore: {len(EXCLUDED)} secret/state paths out, {len(INCLUDED)} build paths in")


if __name__ == "__main__":
    main()
