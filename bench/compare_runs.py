"""Are two runs' artifacts the same? Every ``.json`` and ``.safetensors`` file under ``A/results`` and
``B/results``: safetensors byte for byte; JSON files as documents once what a code change alone may
change is set aside: each ``timing`` block, ``provenance.source_sha256`` (the package source), the
``content_sha256`` seal over them, and the recorded digests of JSON inputs (a JSON file's digest
covers its provenance; tensor inputs' digests are compared). For a refactoring that must not change
behaviour (docs/performance.md: the main job before and after).

    python bench/compare_runs.py RUN_A RUN_B [--json OUT]

Exit 0 when every file is the same, 1 otherwise (the differing files are listed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SET_ASIDE = ("timing", "content_sha256", "source_sha256")


def normalised(doc, key: str | None = None):
    if isinstance(doc, dict):
        if key == "inputs":
            return {k: ("<json digest>" if k.endswith(".json") else v) for k, v in doc.items()}
        return {k: normalised(v, k) for k, v in doc.items() if k not in SET_ASIDE}
    if isinstance(doc, list):
        return [normalised(v) for v in doc]
    return doc


def artifacts(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "results").rglob("*")
                  if p.suffix in (".json", ".safetensors") and p.is_file())


def compare(a: Path, b: Path) -> dict:
    fa, fb = artifacts(a), artifacts(b)
    differ = []
    for rel in sorted(set(fa) & set(fb)):
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if x == y or (rel.endswith(".json") and normalised(json.loads(x)) == normalised(json.loads(y))):
            continue
        differ.append(rel)
    return {"files": len(set(fa) | set(fb)), "only_in_a": sorted(set(fa) - set(fb)),
            "only_in_b": sorted(set(fb) - set(fa)), "different": differ,
            "same": len(set(fa) & set(fb)) - len(differ)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--json", type=Path, help="write the comparison here too")
    args = ap.parse_args(argv)
    r = compare(args.a, args.b)
    print(f"{r['files']} artifacts: {r['same']} the same, {len(r['different'])} different, "
          f"{len(r['only_in_a'])} only in {args.a}, {len(r['only_in_b'])} only in {args.b}")
    for rel in r["different"]:
        print(f"  differs: {rel}")
    for rel in r["only_in_a"] + r["only_in_b"]:
        print(f"  in one run only: {rel}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0 if not (r["different"] or r["only_in_a"] or r["only_in_b"]) else 1


if __name__ == "__main__":
    sys.exit(main())
