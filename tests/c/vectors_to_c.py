#!/usr/bin/env python3
"""Turns tests/vectors/subjects.json into a C header of three arrays, so the C suite
checks the very cases the other languages check (the JSON stays the single source).

    python3 tests/c/vectors_to_c.py tests/vectors/subjects.json target/c/subject_vectors.h

Strings become C literals with every byte outside [A-Za-z0-9] written as a 3-digit
octal escape (octal escapes stop after 3 digits, unlike \\x, so nothing runs on), plus
their byte length, so a case holding a NUL byte is recognisable in C.
"""
import json
import sys


def literal(text):
    data = text.encode("utf-8")
    body = "".join(chr(b) if chr(b).isalnum() and b < 0x80 else "\\%03o" % b for b in data)
    return '"%s", %d' % (body, len(data))


def main(src, dst):
    with open(src, encoding="utf-8") as f:
        vectors = json.load(f)
    out = [
        "/* Generated from %s by tests/c/vectors_to_c.py: do not edit. */" % src,
        "#include <stdbool.h>",
        "#include <stddef.h>",
        "typedef struct { const char *text; size_t len; bool valid; } validity_case;",
        "typedef struct { const char *pattern; size_t pattern_len; const char *subject;"
        " size_t subject_len; bool matches; } match_case;",
    ]
    for name in ("validate_subject", "validate_pattern"):
        cases = vectors[name]
        out.append("static const validity_case %s_cases[%d] = {" % (name, len(cases)))
        for c in cases:
            out.append("  {%s, %s}," % (literal(c["input"]), "true" if c["valid"] else "false"))
        out.append("};")
    cases = vectors["matches"]
    out.append("static const match_case matches_cases[%d] = {" % len(cases))
    for c in cases:
        out.append(
            "  {%s, %s, %s},"
            % (literal(c["pattern"]), literal(c["subject"]), "true" if c["matches"] else "false")
        )
    out.append("};")
    with open(dst, "w", encoding="ascii") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: vectors_to_c.py SUBJECTS_JSON OUT_H")
    main(sys.argv[1], sys.argv[2])
