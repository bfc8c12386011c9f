#!/usr/bin/env python3
"""Writes a Kubernetes List (JSON) as Gatekeeper's sync lays out `data.inventory`:
namespaced objects under namespace[NS][apiVersion][kind][name], the rest under
cluster[apiVersion][kind][name].  Usage: gatekeeper_layout.py LIST.json OUT.json"""
import json
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src) as f:
    items = json.load(f)["items"]
out = {"namespace": {}, "cluster": {}}
for o in items:
    meta = o["metadata"]
    ns = meta.get("namespace")
    base = out["namespace"].setdefault(ns, {}) if ns else out["cluster"]
    base.setdefault(o["apiVersion"], {}).setdefault(o["kind"], {})[meta["name"]] = o
with open(dst, "w") as f:
    json.dump(out, f, separators=(",", ":"))
