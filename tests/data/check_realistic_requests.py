"""Consistency check for realistic_requests.jsonl (hand-written eval yardstick).

Run: python tests/data/check_realistic_requests.py  -> prints counts, exits 1 on any problem.
"""

import collections
import json
import pathlib
import sys

PATH = pathlib.Path(__file__).with_name("realistic_requests.jsonl")
KEYS = {"id", "instruction", "modalities", "steps", "num_steps", "edges", "structure", "source"}
STEP_KEYS = {"step", "description", "modality", "operation", "depends_on"}
MODS = {"text", "image", "audio", "video"}
OPS = {"generation", "analysis", "transformation"}


def expected_structure(steps):
    n = len(steps)
    deps = [s["depends_on"] for s in steps]
    if n == 1:
        return "single"
    if all(deps[k] == [k] for k in range(1, n)):
        return "chain"
    if all(not d for d in deps):
        return "parallel"
    if n >= 3 and all(not d for d in deps[:-1]) and sorted(deps[-1]) == list(range(1, n)):
        return "parallel"
    return "dag"


def main():
    errs, ids, instrs, rows = [], set(), set(), []
    for ln, line in enumerate(PATH.read_text(encoding="utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            errs.append(f"line {ln}: bad json {e}")
            continue
        rows.append(r)
        p = f"line {ln} ({r.get('id')})"
        if set(r) != KEYS:
            errs.append(f"{p}: keys {sorted(r)}")
            continue
        if r["id"] in ids:
            errs.append(f"{p}: duplicate id")
        ids.add(r["id"])
        norm = " ".join(r["instruction"].lower().split())
        if norm in instrs:
            errs.append(f"{p}: duplicate instruction")
        instrs.add(norm)
        steps = r["steps"]
        if not steps or r["num_steps"] != len(steps):
            errs.append(f"{p}: num_steps")
        edges = []
        for k, s in enumerate(steps, 1):
            if set(s) != STEP_KEYS or s["step"] != k:
                errs.append(f"{p}: step {k} keys/numbering")
                continue
            if s["modality"] not in MODS or s["operation"] not in OPS:
                errs.append(f"{p}: step {k} modality/operation")
            if not s["description"].strip():
                errs.append(f"{p}: step {k} empty description")
            d = s["depends_on"]
            if len(set(d)) != len(d) or any(not isinstance(x, int) or not 1 <= x < k for x in d):
                errs.append(f"{p}: step {k} depends_on {d} not earlier steps")
            edges += [[x, k] for x in d]
        if sorted(map(tuple, r["edges"])) != sorted(map(tuple, edges)):
            errs.append(f"{p}: edges != depends_on")
        if r["modalities"] != sorted({s.get("modality") for s in steps}):
            errs.append(f"{p}: modalities")
        if r["structure"] != expected_structure(steps):
            errs.append(f"{p}: structure {r['structure']} != {expected_structure(steps)}")
        if r["source"] != "hand-written":
            errs.append(f"{p}: source")
    print("rows", len(rows))
    print("num_steps", dict(sorted(collections.Counter(r["num_steps"] for r in rows).items())))
    print("structure", dict(collections.Counter(r["structure"] for r in rows).most_common()))
    print("modality sets", dict(collections.Counter("+".join(r["modalities"]) for r in rows).most_common()))
    print(
        "step modality",
        dict(collections.Counter(s["modality"] for r in rows for s in r["steps"]).most_common()),
    )
    print(
        "step operation",
        dict(collections.Counter(s["operation"] for r in rows for s in r["steps"]).most_common()),
    )
    for e in errs:
        print("ERROR", e)
    sys.exit(1 if errs else 0)


if __name__ == "__main__":
    main()
