#!/usr/bin/env python3
"""Generate tests/vectors/json_payloads.json: payloads a binding serialises from a language
value, and the exact text each must publish (docs/design.md §3).

The expected text is what JavaScript's `JSON.stringify` writes for the content (the
reference: Node's binding hands it through), computed here by running node on each
case. Standard library only, plus node on PATH.

    python3 tests/vectors/tools/gen_json_payloads.py           # (re)write the file
    python3 tests/vectors/tools/gen_json_payloads.py --check   # fail if it is stale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "json_payloads.json"

DESCRIPTION = (
    "Payloads a binding serialises from a language value (a Python dict, a JS object): the "
    "same content gives the same bytes in every language: the text JavaScript's "
    "JSON.stringify writes (compact; non-ASCII as UTF-8; lone surrogates as \\udxxx; "
    "ECMAScript number form), docs/design.md §3. `value` is the content, `json` the exact "
    "text published (generated with node's JSON.stringify by "
    "tests/vectors/tools/gen_json_payloads.py). Read by the Python and Node suites; Rust "
    "and C publish bytes, not language values, and core's json_text unit tests cover the "
    "same rules. None / null given as the data is an empty payload, not JSON."
)

# Each case: a name and the content as JSON source text.
CASES = [
    ("flat object", '{"a": 1, "b": "x"}'),
    ("nesting, arrays, null, booleans", '{"order": {"items": [1, 2, {"q": null}], "paid": true, "void": false}}'),
    ("non-ASCII stays UTF-8", '{"patient": "Zoë Ñúñez", "city": "São Paulo", "note": "✓ 日本 🚑"}'),
    (
        "quotes, backslashes and control characters are escaped",
        r'{"s": "tab\there \"q\" back\\slash\nnew\u0001\u001f\u007f\b\f\r/"}',
    ),
    ("line and paragraph separators stay raw", r'{"s": "a\u2028b\u2029c"}'),
    ("a lone surrogate is escaped", r'{"s": "a\ud800b\udc00"}'),
    (
        "numbers: integers, fractions, exponents",
        '{"n": -2, "f": 0.1, "g": 1.5, "one": 1.0, "e16": 1e16, "big": 1e21, "small": 1e-7, '
        '"micro": 1e-6, "max": 1.7976931348623157e308, "tiny": 5e-324}',
    ),
    ("negative zero is 0", '{"z": -0.0}'),
    ("integers up to 2^53", '{"i": 9007199254740992, "j": -9007199254740991}'),
    ("key order is insertion order", '{"z": 1, "a": 2, "m": 3}'),
    ("a top-level array", '[1, "two", null, [3], {"k": []}]'),
    ("empty object, array and string", '{"o": {}, "l": [], "s": ""}'),
    ("a number alone", "42"),
    ("a boolean alone", "true"),
]
# (None / null as the data is no payload at all in both languages, not the text null.)

STRINGIFY = "process.stdout.write(JSON.stringify(JSON.parse(process.argv[1])))"


def build() -> dict[str, object]:
    cases = []
    for name, source in CASES:
        done = subprocess.run(["node", "-e", STRINGIFY, source], capture_output=True, text=True, check=True)
        cases.append({"name": name, "value": json.loads(source), "json": done.stdout})
    return {"about": DESCRIPTION, "cases": cases}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; fail if the file differs")
    args = ap.parse_args()
    # ASCII escapes: a lone surrogate cannot be written as UTF-8.
    text = json.dumps(build(), indent=2) + "\n"
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run python3 tests/vectors/tools/gen_json_payloads.py", file=sys.stderr)
            return 1
        print(f"{OUT.name}: {len(CASES)} cases, up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(CASES)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
