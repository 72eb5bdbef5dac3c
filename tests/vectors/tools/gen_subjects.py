#!/usr/bin/env python3
"""Generate tests/vectors/subjects.json, the shared subject test vectors.

Python 3.11+, standard library only. Output is deterministic: every list is
sorted, object keys are sorted, and json.dumps(..., indent=1, ensure_ascii=True)
turns every control or non-ASCII character into an escape.

    python3 tests/vectors/tools/gen_subjects.py           # (re)write the file
    python3 tests/vectors/tools/gen_subjects.py --check   # fail if it is stale

Every case's expected value is checked three ways before anything is written,
and any disagreement aborts the run:
  * the hand-written expectation, where the case has one (loops write theirs
    from what the loop is testing);
  * reference A: split on ".", str.isspace() / unicodedata "Cc", token walk;
  * reference B: regular expressions built from the brief's explicit list of
    forbidden code points (itself checked against reference A's predicate over
    every code point).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "subjects.json"

DESCRIPTION = (
    "Shared test vectors for busbar subjects, which are NATS subjects under the strict "
    "validity rule. Tokens are separated by '.'; comparison is byte-for-byte and "
    "case-sensitive with no Unicode normalisation (U+00FC and 'u'+U+0308 are different "
    "tokens), and '$'-prefixed subjects are ordinary. Invalid both as subject and as "
    "pattern: the empty string; any empty token ('a..b', '.a', 'a.', '.'); any whitespace "
    "or control character anywhere, where whitespace is Python str.isspace() / Rust "
    "char::is_whitespace (space, \\t, \\n, \\r, \\v, \\f, U+0085, U+00A0, U+1680, "
    "U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, plus U+001C..U+001F which only "
    "Python counts as space) and control is general category Cc (U+0000..U+001F, "
    "U+007F..U+009F); U+200B ZERO WIDTH SPACE and "
    "U+FEFF are neither and are allowed. validate_subject (publish subject) also refuses "
    "any token that is exactly '*' or exactly '>'. validate_pattern allows '*' tokens "
    "anywhere and a '>' token only as the last token ('>', 'a.>', '*.>' and '*' valid; "
    "'a.>.b' and '>.a' invalid). '*' or '>' inside a longer token ('a*', '>b', '**', '*>') "
    "is an ordinary character, valid in both and matching only itself. A subject or pattern "
    "holds at most 2000 bytes (of UTF-8, not characters) and at most 256 tokens; a longer or "
    "deeper one is invalid both as subject and as pattern. matches(pattern, subject) is false unless the pattern is a valid pattern and "
    "the subject a valid publish subject; then '*' matches exactly one token, '>' matches "
    "one or more trailing tokens ('a.>' does not match 'a'), and literal tokens match "
    "byte-equal tokens. Strings in this file are JSON escaped, so control and non-ASCII "
    "characters appear as \\uXXXX escapes (astral characters as surrogate pairs)."
)

# Limits (docs/design.md §2): bytes of UTF-8, and tokens.
MAX_BYTES = 2000
MAX_TOKENS = 256

# --------------------------------------------------------------------------
# Reference A: the plain reading of the rules.
# --------------------------------------------------------------------------


def a_forbidden_char(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Cc"


def _a_tokens(s: str) -> list[str] | None:
    if s == "" or any(a_forbidden_char(ch) for ch in s):
        return None
    if len(s.encode("utf-8")) > MAX_BYTES:
        return None
    toks = s.split(".")
    if any(t == "" for t in toks) or len(toks) > MAX_TOKENS:
        return None
    return toks


def a_validate_subject(s: str) -> bool:
    toks = _a_tokens(s)
    return toks is not None and all(t not in ("*", ">") for t in toks)


def a_validate_pattern(p: str) -> bool:
    toks = _a_tokens(p)
    return toks is not None and ">" not in toks[:-1]


def a_matches(p: str, s: str) -> bool:
    if not (a_validate_pattern(p) and a_validate_subject(s)):
        return False
    pt, st = p.split("."), s.split(".")
    for i, tok in enumerate(pt):
        if tok == ">":
            return len(st) > i
        if i >= len(st):
            return False
        if tok != "*" and tok != st[i]:
            return False
    return len(pt) == len(st)


# --------------------------------------------------------------------------
# Reference B: regular expressions over the brief's explicit character list.
# --------------------------------------------------------------------------

BRIEF_WHITESPACE = [
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0xA0, 0x1680,
    *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
]
BRIEF_CONTROL = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
FORBIDDEN = frozenset(map(chr, BRIEF_WHITESPACE + BRIEF_CONTROL))

_BAD = "".join(f"\\u{ord(c):04x}" for c in sorted(FORBIDDEN))
_TOKEN = f"[^.{_BAD}]+"
# At most MAX_TOKENS tokens: the first, then up to MAX_TOKENS - 1 more.
_WELL_FORMED = re.compile(f"{_TOKEN}(?:\\.{_TOKEN}){{0,{MAX_TOKENS - 1}}}")


def b_utf8_size(s: str) -> int:
    """UTF-8 size from the code points' ranges (RFC 3629 table), not from an encoder."""
    return sum(1 if ord(c) < 0x80 else 2 if ord(c) < 0x800 else 3 if ord(c) < 0x10000 else 4 for c in s)
_WILDCARD_TOKEN = re.compile(r"(?:^|\.)[*>](?:\.|\Z)")
_GT_NOT_LAST = re.compile(r"(?:^|\.)>\.")


def b_validate_subject(s: str) -> bool:
    return b_utf8_size(s) <= MAX_BYTES and _WELL_FORMED.fullmatch(s) is not None and _WILDCARD_TOKEN.search(s) is None


def b_validate_pattern(p: str) -> bool:
    return b_utf8_size(p) <= MAX_BYTES and _WELL_FORMED.fullmatch(p) is not None and _GT_NOT_LAST.search(p) is None


def b_matches(p: str, s: str) -> bool:
    if not (b_validate_pattern(p) and b_validate_subject(s)):
        return False
    parts = []
    for tok in p.split("."):
        parts.append({"*": "[^.]+", ">": ".+"}.get(tok) or re.escape(tok))
    return re.fullmatch("\\.".join(parts), s, re.DOTALL) is not None


def check_character_table() -> None:
    """The brief's list of forbidden code points is exactly isspace() or Cc."""
    bad = []
    for cp in range(0x110000):
        ch = chr(cp)
        if a_forbidden_char(ch) != (ch in FORBIDDEN):
            bad.append(f"U+{cp:04X}")
    if bad:
        sys.exit(f"forbidden-character list disagrees with isspace()/Cc at: {', '.join(bad)}")
    for cp in (0x200B, 0xFEFF, 0x180E, 0x200C, 0x200D, 0x2060, 0x00AD, 0x200E, 0x200F):
        assert not a_forbidden_char(chr(cp)), f"U+{cp:04X} should be allowed"


# --------------------------------------------------------------------------
# Case collection.
# --------------------------------------------------------------------------

ASCII_CONTROL_NAMES = (
    "NUL SOH STX ETX EOT ENQ ACK BEL BS TAB LF VT FF CR SO SI "
    "DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US"
).split()


def cname(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x20:
        return f"U+{cp:04X} {ASCII_CONTROL_NAMES[cp]}"
    if cp == 0x7F:
        return "U+007F DEL"
    if 0x80 <= cp <= 0x9F:
        return f"U+{cp:04X} C1 control" + (" NEL" if cp == 0x85 else "")
    return f"U+{cp:04X} {unicodedata.name(ch, '?')}"


class Collector:
    def __init__(self) -> None:
        self.subjects: dict[str, tuple[bool | None, str]] = {}
        self.patterns: dict[str, tuple[bool | None, str]] = {}
        self.matches: dict[tuple[str, str], tuple[bool | None, str]] = {}
        self.errors: list[str] = []

    def _add(self, table, key, expected, note) -> None:
        assert note and isinstance(note, str), key
        if key in table:
            old = table[key][0]
            if old is not None and expected is not None and old != expected:
                self.errors.append(f"conflicting duplicate {key!r}: {old} vs {expected}")
            if old is None and expected is not None:
                table[key] = (expected, table[key][1])
            return
        table[key] = (expected, note)

    def subject(self, s: str, valid: bool | None, note: str) -> None:
        self._add(self.subjects, s, valid, note)

    def pattern(self, p: str, valid: bool | None, note: str) -> None:
        self._add(self.patterns, p, valid, note)

    def both(self, s: str, valid: bool | None, note: str) -> None:
        """Wildcard-free input: same answer as subject and as pattern."""
        self.subject(s, valid, note)
        self.pattern(s, valid, note)

    def match(self, p: str, s: str, m: bool | None, note: str) -> None:
        self._add(self.matches, (p, s), m, note)


C = Collector()

PUNCT = "-_:/#@%\"'\\~!&()+=,;?[]{}|^`<$"


def build_validity() -> None:
    # -- basics ---------------------------------------------------------------
    for s, v, note in [
        ("a", True, "single token"),
        ("a.b", True, "two tokens"),
        ("a.b.c", True, "three tokens"),
        ("foo.bar.baz.qux.quux", True, "five word tokens"),
        ("orders.eu.created", True, "typical event subject"),
        ("A", True, "upper-case single token"),
        ("A.b", True, "upper-case first token"),
        ("a.B", True, "upper-case last token"),
        ("ABC.Def.gHI", True, "mixed case"),
        ("1", True, "digit token"),
        ("1.2.3", True, "numeric tokens"),
        ("0.0", True, "zero tokens"),
        ("v1.2.orders", True, "version-like tokens"),
        ("$", True, "lone dollar is ordinary"),
        ("$.a", True, "dollar token first"),
        ("a.$", True, "dollar token last"),
        ("$JS.API.x", True, "$-prefixed JetStream API subject is ordinary"),
        ("$JS.API.STREAM.INFO.orders", True, "$JS stream info subject"),
        ("$JS.ACK.orders.c1.1.2.3.1700000000.0", True, "$JS ack subject with numbers"),
        ("$KV.bucket.key", True, "$KV subject"),
        ("$SYS.REQ.SERVER.PING", True, "$SYS subject is ordinary here"),
        ("$$", True, "double dollar token"),
        ("_INBOX", True, "bare _INBOX token"),
        ("_INBOX.abc123", True, "inbox subject"),
        ("_INBOX.Xy7Qz9.1", True, "inbox subject with request suffix"),
        ("_INBOX.a.b.c.d", True, "deep inbox subject"),
        ("_", True, "underscore token"),
        ("__", True, "double underscore token"),
        ("a-b.c_d", True, "dash and underscore"),
        ("a:b.c/d", True, "colon and slash"),
        ("http://x", True, "URL-like token (slashes and colon)"),
        ("user@example", True, "at sign"),
        ("a%2Eb", True, "percent-encoded dot is just characters"),
        ("\"quoted\"", True, "double quotes"),
        ("'single'", True, "single quotes"),
        ("C:\\path\\file", True, "backslashes"),
        ("a\\.b", True, "backslash before dot does not escape it: tokens 'a\\' and 'b'"),
        ("a\\", True, "trailing backslash"),
        ("#", True, "hash is not a wildcard (MQTT confusion)"),
        ("a.#", True, "hash token is ordinary"),
        ("+", True, "plus is not a wildcard (MQTT confusion)"),
        ("a.+.b", True, "plus token is ordinary"),
        ("a.?", True, "question mark token"),
        ("a.[bc]", True, "brackets are not character classes"),
        ("a.(b|c)", True, "parentheses and pipe"),
        ("a.{b,c}", True, "braces and comma"),
        ("a/b/c", True, "slash-separated single token"),
        ("a,b", True, "comma inside token"),
        ("x" * 64, True, "64-byte token"),
        ("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", True, "sixteen tokens"),
        ("", False, "empty string"),
        (".", False, "single dot: two empty tokens"),
        ("..", False, "two dots"),
        ("...", False, "three dots"),
        (".a", False, "leading dot"),
        ("a.", False, "trailing dot"),
        (".a.", False, "leading and trailing dot"),
        ("a..b", False, "double dot (empty middle token)"),
        ("a...b", False, "triple dot"),
        ("a.b.", False, "trailing dot after two tokens"),
        (".a.b", False, "leading dot before two tokens"),
        ("a.b..c", False, "empty token in the middle of three"),
        ("a..", False, "two trailing dots"),
        ("..a", False, "two leading dots"),
        ("$.", False, "dollar then trailing dot"),
        ("_INBOX.", False, "inbox prefix with trailing dot"),
        (" ", False, "lone space"),
        ("\t", False, "lone tab"),
        ("a b", False, "space inside token"),
        ("a b.c", False, "space inside first token"),
        ("a.b c", False, "space inside last token"),
        (" a.b", False, "leading space"),
        ("a.b ", False, "trailing space"),
        ("a. .b", False, "space-only token"),
        ("a .b", False, "space before dot"),
        ("a. b", False, "space after dot"),
        ("a\tb", False, "tab inside token"),
        ("a.\t.b", False, "tab-only token"),
        ("a\r\nb", False, "CRLF inside token (protocol injection)"),
        ("a\r\nPUB x 0", False, "CRLF followed by a protocol line"),
        ("  ", False, "two spaces"),
        ("a.b\n", False, "trailing newline"),
    ]:
        C.both(s, v, note)

    for ch in PUNCT:
        C.both(ch, True, f"punctuation {ch!r} alone is an ordinary token")
        C.both(f"a{ch}b.c", True, f"punctuation {ch!r} inside a token")

    # -- ASCII controls and DEL at start / middle / end ------------------------
    for cp in [*range(0x20), 0x7F]:
        ch = chr(cp)
        C.subject(f"{ch}a.b", False, f"{cname(ch)} at start")
        C.subject(f"a.b{ch}c.d", False, f"{cname(ch)} inside a middle token")
        C.subject(f"a.b{ch}", False, f"{cname(ch)} at end")
        C.pattern(f"{ch}a.*", False, f"{cname(ch)} at start of a pattern")
        C.pattern(f"*.a{ch}b.>", False, f"{cname(ch)} inside a middle token of a wildcard pattern")
        C.pattern(f"a.>{ch}", False, f"{cname(ch)} right after '>' (last token '>'+control)")

    # -- C1 controls ------------------------------------------------------------
    for cp in range(0x80, 0xA0):
        ch = chr(cp)
        C.both(f"a{ch}b.c", False, f"{cname(ch)} inside a token")
    for cp in (0x80, 0x85, 0x9F):
        ch = chr(cp)
        C.both(f"{ch}a", False, f"{cname(ch)} at start")
        C.both(f"a.{ch}", False, f"{cname(ch)} as a whole last token")
        C.pattern(f"*.{ch}", False, f"{cname(ch)} after a '*' token")

    # -- Unicode whitespace -----------------------------------------------------
    for cp in [0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]:
        ch = chr(cp)
        C.both(f"a{ch}b.c", False, f"{cname(ch)} (whitespace) inside a token")
        C.both(f"a.{ch}.c", False, f"{cname(ch)} (whitespace) as a whole token")
        C.pattern(f"*.{ch}.>", False, f"{cname(ch)} (whitespace) token between wildcards")

    # -- Allowed format / invisible characters ----------------------------------
    for cp, why in [
        (0x200B, "ZERO WIDTH SPACE is Cf, not whitespace: allowed"),
        (0xFEFF, "BOM / ZWNBSP is Cf, not whitespace: allowed"),
        (0x180E, "MONGOLIAN VOWEL SEPARATOR is Cf since Unicode 6.3, not whitespace: allowed"),
        (0x200C, "ZERO WIDTH NON-JOINER is Cf: allowed"),
        (0x200D, "ZERO WIDTH JOINER is Cf: allowed"),
        (0x2060, "WORD JOINER is Cf: allowed"),
        (0x00AD, "SOFT HYPHEN is Cf: allowed"),
        (0x200E, "LEFT-TO-RIGHT MARK is Cf: allowed"),
        (0x200F, "RIGHT-TO-LEFT MARK is Cf: allowed"),
        (0x202E, "RIGHT-TO-LEFT OVERRIDE is Cf: allowed"),
    ]:
        ch = chr(cp)
        C.both(f"a{ch}b.c", True, f"U+{cp:04X} inside a token; {why}")
        C.both(ch, True, f"U+{cp:04X} alone as the only token; {why}")
    C.both("\u200b.\u200b", True, "two zero-width-space tokens are non-empty tokens")
    C.pattern("\u200b.>", True, "zero-width-space token then '>'")
    C.pattern("*.\ufeff", True, "'*' then a BOM token")

    # -- Unicode text -----------------------------------------------------------
    for s, note in [
        ("\u65e5\u672c.\u6771\u4eac", "CJK tokens (Japanese)"),
        ("\u4e2d\u6587.\u4e3b\u9898", "CJK tokens (Chinese)"),
        ("\ud55c\uad6d\uc5b4.\uc8fc\uc81c", "Hangul tokens"),
        ("\U0001F600.\U0001F389", "emoji tokens (astral plane)"),
        ("\U0001F468\u200d\U0001F469\u200d\U0001F467", "ZWJ emoji sequence"),
        ("\U0001F1EB\U0001F1F7.flag", "regional-indicator flag"),
        ("caf\u00e9", "precomposed e-acute"),
        ("cafe\u0301", "e + combining acute (not normalised)"),
        ("\u00fc", "precomposed u-umlaut"),
        ("u\u0308", "u + combining diaeresis"),
        ("\u0301", "lone combining mark as a token"),
        ("\u0645\u0631\u062d\u0628\u0627.\u0639\u0627\u0644\u0645", "Arabic (RTL) tokens"),
        ("\u05e9\u05dc\u05d5\u05dd.a", "Hebrew (RTL) then Latin"),
        ("\u043f\u0440\u0438\u0432\u0435\u0442.\u043c\u0438\u0440", "Cyrillic tokens"),
        ("\u03b1\u03b2\u03b3.\u0394", "Greek tokens"),
        ("\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", "Thai token"),
        ("Stra\u00dfe", "sharp s"),
        ("\u2126", "OHM SIGN"),
        ("\u03a9", "GREEK CAPITAL OMEGA"),
        ("\uff41.\uff42", "fullwidth latin letters"),
        ("a\uff0eb", "FULLWIDTH FULL STOP is not a separator: one token"),
        ("a\u3002b", "IDEOGRAPHIC FULL STOP is not a separator: one token"),
        ("a\u2024b", "ONE DOT LEADER is not a separator: one token"),
        ("a\u2027b", "HYPHENATION POINT is not a separator"),
        ("a\ufe52b", "SMALL FULL STOP is not a separator"),
        ("\ufffd", "replacement character"),
        ("\ue000.x", "private-use character"),
        ("\U0010FFFD", "last plane private-use character"),
        ("\u00e9.\u00e9.\u00e9", "repeated accented tokens"),
        ("\u2217", "ASTERISK OPERATOR is not '*'"),
        ("\uff0a", "FULLWIDTH ASTERISK is not '*'"),
        ("\uff1e", "FULLWIDTH GREATER-THAN is not '>'"),
        ("a.\u2217.b", "ASTERISK OPERATOR token is literal"),
    ]:
        C.both(s, True, note)

    # -- Wildcards: whole tokens vs inside tokens ------------------------------
    for s, sv, pv, note in [
        ("*", False, True, "lone '*' token"),
        (">", False, True, "lone '>' token"),
        ("a.*", False, True, "'*' last"),
        ("*.a", False, True, "'*' first"),
        ("a.*.b", False, True, "'*' in the middle"),
        ("*.*", False, True, "two '*' tokens"),
        ("*.*.*", False, True, "three '*' tokens"),
        ("a.>", False, True, "'>' last"),
        ("*.>", False, True, "'*' then '>'"),
        ("a.*.>", False, True, "literal, '*', '>'"),
        ("*.*.*.>", False, True, "three '*' then '>'"),
        ("a.b.c.>", False, True, "'>' after three literals"),
        ("$JS.API.>", False, True, "'>' under $JS"),
        ("$JS.API.*.INFO.*", False, True, "'*' under $JS"),
        ("_INBOX.>", False, True, "inbox wildcard"),
        ("_INBOX.*", False, True, "inbox single-token wildcard"),
        (">.a", False, False, "'>' first but not last"),
        (">.*", False, False, "'>' before '*'"),
        ("a.>.b", False, False, "'>' in the middle"),
        (">.>", False, False, "two '>' tokens"),
        ("a.>.>", False, False, "'>' twice at the end"),
        ("*.>.*", False, False, "'>' between '*' tokens"),
        (">.a.>", False, False, "'>' first and last"),
        ("a.>.b.c.d", False, False, "'>' second of five"),
        ("a.b.c.>.d", False, False, "'>' fourth of five"),
        (">.>.>", False, False, "three '>' tokens"),
        (".>", False, False, "empty token then '>'"),
        (".*", False, False, "empty token then '*'"),
        ("*.", False, False, "'*' then trailing dot"),
        (">.", False, False, "'>' then trailing dot"),
        ("a.>.", False, False, "'>' then trailing dot"),
        ("a..>", False, False, "empty token before '>'"),
        ("a..*", False, False, "empty token before '*'"),
        ("*..*", False, False, "empty token between '*' tokens"),
        ("* ", False, False, "'*' followed by space"),
        (" *", False, False, "space then '*'"),
        ("> ", False, False, "'>' followed by space"),
        ("a.> ", False, False, "'>' token with trailing space"),
        ("*\t.a", False, False, "'*' then tab"),
        ("a.*\n", False, False, "'*' then newline"),
        ("a.>\u00a0", False, False, "'>' then NO-BREAK SPACE"),
        ("a.*\u3000", False, False, "'*' then IDEOGRAPHIC SPACE"),
        ("a*", True, True, "'*' inside a token is literal"),
        ("*a", True, True, "'*' leading a token is literal"),
        ("a>", True, True, "'>' inside a token is literal"),
        (">a", True, True, "'>' leading a token is literal"),
        (">b", True, True, "'>b' token is literal"),
        ("*b", True, True, "'*b' token is literal"),
        ("**", True, True, "'**' is a literal token"),
        (">>", True, True, "'>>' is a literal token"),
        ("*>", True, True, "'*>' is a literal token"),
        (">*", True, True, "'>*' is a literal token"),
        ("a.b*", True, True, "'b*' token is literal"),
        ("a.*b", True, True, "'*b' token is literal"),
        ("a.>b", True, True, "'>b' token is literal"),
        ("a.b>", True, True, "'b>' token is literal"),
        ("a*.b", True, True, "'a*' first token is literal"),
        (">b.c", True, True, "'>b' first token is literal"),
        ("a.>>.b", True, True, "'>>' middle token is literal"),
        ("a.**.b", True, True, "'**' middle token is literal"),
        ("a.*>.b", True, True, "'*>' middle token is literal"),
        ("***.>>>", True, True, "runs of wildcard characters are literal"),
        ("a.b.c*", True, True, "'c*' last token is literal"),
        ("a\\*", True, True, "backslash-star is a literal token"),
        ("a\\>", True, True, "backslash-greater is a literal token"),
        ("'*'", True, True, "quoted star is a literal token"),
        ("\u2217.\uff1e", True, True, "look-alike wildcard characters are literal"),
    ]:
        C.subject(s, sv, note + (" (publish subject: refused)" if not sv and pv else ""))
        C.pattern(s, pv, note)
    for s, note in [
        ("*.a.*", "'*' first and last"),
        ("a.*.*.b", "two '*' in the middle"),
        ("*.*.>", "two '*' then '>'"),
        ("*a.>", "literal '*a' then '>'"),
        ("a>.*", "literal 'a>' then '*'"),
        (">b.>", "literal '>b' then '>'"),
        ("**.*", "literal '**' then '*'"),
        ("*.**", "'*' then literal '**'"),
        ("a.*.b.*.c.*", "alternating literals and '*'"),
        ("\u00fc.*.>", "unicode then '*' then '>'"),
        ("\U0001F600.>", "emoji then '>'"),
        ("\u200b.*", "zero-width space token then '*'"),
    ]:
        C.pattern(s, True, note)
    for s, note in [
        ("a.*b.*", "'*' last with a literal '*b' before it"),
        ("\u00fc.*", "'*' after a unicode token"),
        ("*.>b", "'*' first then a literal '>b'"),
    ]:
        C.subject(s, False, note + " (publish subject: refused)")

    # -- Medium, long and deep (limits: 2000 bytes, 256 tokens) ------------------
    C.both(".".join(["a"] * 100), True, "100 one-byte tokens")
    C.both("y" * 2000, True, "one 2,000-byte token (at the byte limit)")
    C.both("y" * 2001, False, "one 2,001-byte token (over the byte limit)")
    C.both("y" * 1000 + "." + "y" * 999, True, "two tokens, 2,000 bytes in all")
    C.both("y" * 1000 + "." + "y" * 1000, False, "two tokens, 2,001 bytes in all")
    C.both("\u00e9" * 1000, True, "1,000 two-byte characters: 2,000 bytes")
    C.both("\u00e9" * 1000 + "a", False, "1,001 characters, 2,001 bytes: the limit counts bytes")
    C.both("\u65e5" * 666 + "ab", True, "666 three-byte characters and 2 bytes: 2,000 bytes")
    C.both("\U0001F600" * 500 + "a", False, "500 four-byte emoji and 1 byte: 2,001 bytes")
    C.both(".".join(["a"] * 256), True, "256 one-byte tokens (at the token limit)")
    C.both(".".join(["a"] * 257), False, "257 one-byte tokens (over the token limit, 513 bytes)")
    C.both(".".join(f"t{i}" for i in range(1000)), False, "1,000 tokens (over both limits)")
    C.both("x" * 10000, False, "one 10,000-byte token (over the byte limit)")
    C.both(".".join(["a"] * 10000), False, "10,000 tokens, 19,999 bytes (the deep subject that crashed the trie)")
    C.pattern(".".join(["*"] * 255 + [">"]), True, "255 '*' tokens then '>' (256 tokens)")
    C.pattern(".".join(["*"] * 256 + [">"]), False, "256 '*' tokens then '>' (257 tokens)")
    C.pattern(".".join(["*"] * 999 + [">"]), False, "999 '*' tokens then '>' (1,000 tokens: too deep)")
    C.pattern(".".join(["*"] * 100), True, "100 '*' tokens")
    C.subject(".".join(["a"] * 99 + ["*"]), False, "100 tokens ending in '*' (publish subject: refused)")
    C.pattern(".".join(["a"] * 50 + [">"] + ["a"] * 49), False, "'>' in the middle of 100 tokens")
    C.both(".".join(["a"] * 50 + [""] + ["a"] * 49), False, "empty token in the middle of 100 tokens")
    C.both("a" * 1000 + " ", False, "1,000-byte token with trailing space")


# --------------------------------------------------------------------------
# Matches.
# --------------------------------------------------------------------------


def build_matches() -> None:
    M = C.match
    letters = ["a", "b", "c", "d", "e"]

    # '*' at every position of 1..5-token patterns.
    for n in range(1, 6):
        base = letters[:n]
        for k in range(n):
            pat = base.copy()
            pat[k] = "*"
            p = ".".join(pat)
            where = f"'*' at position {k + 1} of {n}"
            M(p, ".".join(base), True, f"{where} matches the literal token there")
            other = base.copy()
            other[k] = "zz"
            M(p, ".".join(other), True, f"{where} matches any one token")
            if n > 1:
                j = (k + 1) % n
                wrong = base.copy()
                wrong[j] = "x"
                M(p, ".".join(wrong), False, f"{where}; literal at position {j + 1} differs")
                M(p, ".".join(base[:-1]), False, f"{where}; subject one token short")
            M(p, ".".join(base + ["x"]), False, f"{where}; subject one token too long")

    # '>' at every (last) position of 1..5-token patterns.
    for n in range(1, 6):
        prefix = letters[: n - 1]
        p = ".".join(prefix + [">"])
        where = f"'>' as token {n} of {n}"
        M(p, ".".join(prefix + ["x"]), True, f"{where} matches one trailing token")
        M(p, ".".join(prefix + ["x", "y", "z"]), True, f"{where} matches three trailing tokens")
        if prefix:
            M(p, ".".join(prefix), False, f"{where}: needs at least one token after the prefix")
            M(p, ".".join(["q"] + prefix[1:] + ["x"]), False, f"{where}: first literal differs")
            M(p, ".".join([t.upper() for t in prefix] + ["x"]), False, f"{where}: prefix differs in case")
            if len(prefix) > 1:
                M(p, ".".join(prefix[:-1]), False, f"{where}: subject shorter than the prefix")

    # '>' anywhere but last makes the pattern invalid, so nothing matches.
    for n in range(2, 6):
        for k in range(n - 1):
            pat = letters[:n]
            pat = pat[:k] + [">"] + pat[k + 1 :]
            subj = letters[:n]
            subj = subj[:k] + ["x"] + subj[k + 1 :]
            p = ".".join(pat)
            M(p, ".".join(subj), False, f"'>' at position {k + 1} of {n} is an invalid pattern")
            M(p, ".".join(subj + ["y", "z"]), False, f"'>' at position {k + 1} of {n} is invalid even with extra tokens")

    # Hand-written cases.
    for p, s, m, note in [
        ("a", "a", True, "identical single literal"),
        ("a", "b", False, "different single literal"),
        ("a.b", "a.b", True, "identical two-token literal"),
        ("a.b", "a.bc", False, "last token is a prefix of the subject's"),
        ("a.bc", "a.b", False, "subject token is a prefix of the pattern's"),
        ("a.b", "ab.c", False, "same characters, different token split"),
        ("ab.c", "a.bc", False, "same characters, different token split (reversed)"),
        ("a.b", "ab", False, "dot removed from subject"),
        ("ab", "a.b", False, "dot added in subject"),
        ("a.b", "a.b.c", False, "subject has an extra token"),
        ("a.b.c", "a.b", False, "subject lacks a token"),
        ("a.b", "b.a", False, "tokens swapped"),
        ("a", "aa", False, "token repeated"),
        ("a.b", "xa.b", False, "subject first token has extra leading char"),
        ("a.b", "a.b.", False, "subject with trailing dot is invalid"),
        ("a.b", "A.b", False, "case differs in first token"),
        ("A.b", "a.b", False, "case differs (pattern upper)"),
        ("a.b", "a.B", False, "case differs in last token"),
        ("A.B", "A.B", True, "identical upper case"),
        ("ORDERS.*", "orders.new", False, "case-sensitive literal before '*'"),
        ("orders.*", "orders.new", True, "typical single-token wildcard"),
        ("orders.>", "orders.eu.new", True, "typical multi-token wildcard"),
        ("orders.*", "orders.eu.new", False, "'*' does not span two tokens"),
        ("*", "a", True, "'*' alone matches a one-token subject"),
        ("*", "a.b", False, "'*' alone does not match two tokens"),
        ("*", "*a", True, "'*' matches a literal token containing '*'"),
        ("*", "a*", True, "'*' matches token 'a*'"),
        ("*", ">b", True, "'*' matches token '>b'"),
        ("*", "**", True, "'*' matches literal token '**'"),
        (">", "a", True, "'>' alone matches one token"),
        (">", "a.b", True, "'>' alone matches two tokens"),
        (">", "a.b.c.d.e.f.g.h", True, "'>' alone matches eight tokens"),
        (">", ">>", True, "'>' matches literal token '>>'"),
        (">", "$JS.API.x", True, "'>' matches $-prefixed subjects"),
        (">", "_INBOX.abc", True, "'>' matches inbox subjects"),
        ("*.>", "a", False, "'*.>' needs at least two tokens"),
        ("*.>", "a.b", True, "'*.>' matches two tokens"),
        ("*.>", "a.b.c", True, "'*.>' matches three tokens"),
        ("*.>", "a.b.c.d.e.f", True, "'*.>' matches six tokens"),
        ("*.*", "a", False, "'*.*' vs one token"),
        ("*.*", "a.b", True, "'*.*' vs two tokens"),
        ("*.*", "a.b.c", False, "'*.*' vs three tokens"),
        ("*.*.c", "a.b.c", True, "two '*' then literal"),
        ("*.*.c", "a.b.d", False, "two '*' then a different literal"),
        ("a.*.*", "a.b.c", True, "literal then two '*'"),
        ("a.*.*", "a.b", False, "literal then two '*' vs two tokens"),
        ("a.*", "a", False, "'a.*' does not match 'a'"),
        ("a.>", "a", False, "'a.>' does not match 'a' ('>' needs one or more tokens)"),
        ("a.*.>", "a.b", False, "'a.*.>' needs at least three tokens"),
        ("a.*.>", "a.b.c", True, "'a.*.>' vs three tokens"),
        ("a.*.>", "a.b.c.d", True, "'a.*.>' vs four tokens"),
        ("a.*.>", "b.b.c", False, "'a.*.>' first literal differs"),
        ("a.b.>", "a.bb.c", False, "'>' prefix token differs by extension"),
        ("a.b.>", "a.b.c", True, "'>' after two literals"),
        ("a.b.>", "ab.c", False, "'>' prefix with token split differently"),
        # literal wildcard characters inside tokens
        ("a*", "a*", True, "literal 'a*' matches itself"),
        ("a*", "a", False, "literal 'a*' is not a glob (vs 'a')"),
        ("a*", "ab", False, "literal 'a*' is not a glob (vs 'ab')"),
        ("a*", "a.b", False, "literal 'a*' vs two tokens"),
        ("a.b*", "a.b*", True, "literal 'b*' matches itself"),
        ("a.b*", "a.bc", False, "literal 'b*' is not a prefix glob"),
        ("a.b*", "a.b", False, "literal 'b*' vs 'b'"),
        ("*a", "*a", True, "literal '*a' matches itself"),
        ("*a", "ba", False, "literal '*a' is not a suffix glob"),
        (">b", ">b", True, "literal '>b' matches itself"),
        (">b", "ab", False, "literal '>b' is not a wildcard"),
        (">b", "b", False, "literal '>b' vs 'b'"),
        ("a.>b", "a.>b", True, "literal '>b' token matches itself"),
        ("a.>b", "a.x", False, "literal '>b' is not '>'"),
        ("a.>b", "a.x.y", False, "literal '>b' does not match trailing tokens"),
        ("a.b>", "a.b>", True, "literal 'b>' matches itself"),
        ("a.b>", "a.b.c", False, "literal 'b>' is not 'b.>'"),
        ("**", "**", True, "literal '**' matches itself"),
        ("**", "ab", False, "literal '**' is not a globstar"),
        ("**", "a.b", False, "literal '**' is not a globstar across tokens"),
        (">>", ">>", True, "literal '>>' matches itself"),
        (">>", "a.b", False, "literal '>>' is not '>'"),
        ("*>", "*>", True, "literal '*>' matches itself"),
        ("*>", "ab", False, "literal '*>' is not a wildcard"),
        ("a.*", "a.>b", True, "'*' matches a literal token '>b'"),
        ("a.*", "a.b*", True, "'*' matches a literal token 'b*'"),
        ("a.>", "a.>>", True, "'>' matches a literal token '>>'"),
        ("a.>", "a.*b.c", True, "'>' matches literal '*b' and more"),
        ("a*.>", "a*.b", True, "literal 'a*' then '>'"),
        ("a*.>", "ab.b", False, "literal 'a*' is not a glob before '>'"),
        ("*.b*", "x.b*", True, "'*' then literal 'b*'"),
        ("*.b*", "x.bc", False, "'*' then literal 'b*' (not a glob)"),
        ("a\\*", "a\\*", True, "backslash-star is a literal token"),
        ("a\\*", "a\\x", False, "backslash does not make '*' a wildcard"),
        ("a\\.b", "a\\.b", True, "backslash before dot: two tokens, literal"),
        ("a\\.*", "a\\.b", True, "'*' after a backslash token"),
        # invalid pattern => false
        ("a.>.b", "a.x.b", False, "invalid pattern ('>' not last) never matches"),
        (">.a", "x.a", False, "invalid pattern ('>' first of two)"),
        (">.>", "a.b", False, "invalid pattern (two '>')"),
        (">.*", "a.b", False, "invalid pattern ('>' before '*')"),
        ("a..b", "a..b", False, "invalid pattern and subject (empty token), even though equal"),
        ("", "", False, "empty pattern and subject"),
        ("", "a", False, "empty pattern"),
        (".", ".", False, "single dot as both"),
        ("a.", "a.", False, "trailing dot as both"),
        (".a", ".a", False, "leading dot as both"),
        ("a.", "a.b", False, "pattern with trailing dot is not a prefix match"),
        ("a b", "a b", False, "space inside token as both"),
        ("a\tb", "a\tb", False, "tab inside token as both"),
        ("a ", "a", False, "pattern with trailing space"),
        ("a.*", "a. ", False, "'*' vs space-only token (invalid subject)"),
        ("a.> ", "a.b", False, "pattern '>' with trailing space is invalid"),
        ("a\u00a0b", "a\u00a0b", False, "NO-BREAK SPACE inside token as both"),
        ("a\u3000b", "a\u3000b", False, "IDEOGRAPHIC SPACE inside token as both"),
        ("a\u2028b", "a\u2028b", False, "LINE SEPARATOR inside token as both"),
        ("a\u0085b", "a\u0085b", False, "NEL inside token as both"),
        # invalid subject => false
        ("a.*", "a.*", False, "subject containing a '*' token is not a publish subject"),
        ("a.>", "a.>", False, "subject containing a '>' token is not a publish subject"),
        ("*", "*", False, "'*' as subject is invalid"),
        (">", ">", False, "'>' as subject is invalid"),
        (">", "*", False, "'>' pattern vs '*' subject (invalid subject)"),
        (">", "a.*", False, "'>' pattern vs subject with a '*' token"),
        (">", "a.>", False, "'>' pattern vs subject with a '>' token"),
        ("*.>", "*.>", False, "identical wildcard strings: subject invalid"),
        ("a.*.c", "a.*.c", False, "identical wildcard strings: subject invalid"),
        ("a.b", "a..b", False, "subject with empty token"),
        (">", "a..b", False, "'>' vs subject with empty token"),
        (">", "", False, "'>' vs empty subject"),
        ("*", "", False, "'*' vs empty subject"),
        (">", ".", False, "'>' vs single dot"),
        (">", ".a", False, "'>' vs leading dot"),
        (">", "a.", False, "'>' vs trailing dot"),
        ("a.>", "a.", False, "'a.>' vs 'a.' (empty last token)"),
        ("*", " ", False, "'*' vs lone space"),
        (">", " ", False, "'>' vs lone space"),
        (">", "a b", False, "'>' vs space inside token"),
        (">", "a.b c", False, "'>' vs space in last token"),
        ("*", "\u00a0", False, "'*' vs NO-BREAK SPACE token"),
        (">", "a.\u2003", False, "'>' vs EM SPACE token"),
        # unicode: byte equality, no normalisation
        ("\u00fc", "\u00fc", True, "precomposed u-umlaut matches itself"),
        ("\u00fc", "u\u0308", False, "precomposed vs combining u-umlaut"),
        ("u\u0308", "\u00fc", False, "combining vs precomposed u-umlaut"),
        ("u\u0308", "u\u0308", True, "combining u-umlaut matches itself"),
        ("u\u0308", "u", False, "combining mark is part of the token"),
        ("caf\u00e9.*", "cafe\u0301.x", False, "precomposed vs combining e-acute before '*'"),
        ("caf\u00e9.*", "caf\u00e9.x", True, "precomposed e-acute then '*'"),
        ("*", "cafe\u0301", True, "'*' matches a token with a combining mark"),
        ("\u65e5\u672c.*", "\u65e5\u672c.\u6771\u4eac", True, "CJK literal then '*'"),
        ("*.\u6771\u4eac", "\u65e5\u672c.\u6771\u4eac", True, "'*' then CJK literal"),
        ("\u65e5\u672c.>", "\u65e5\u672c", False, "CJK prefix then '>' needs a token"),
        ("\u65e5\u672c", "\u65e5", False, "CJK token prefix"),
        (">", "\U0001F600.\U0001F389", True, "'>' matches emoji tokens"),
        ("\U0001F600.*", "\U0001F600.\U0001F389", True, "emoji literal then '*'"),
        ("\U0001F600", "\U0001F601", False, "neighbouring emoji differ"),
        ("*", "\U0001F468\u200d\U0001F469\u200d\U0001F467", True, "'*' matches a ZWJ emoji sequence"),
        ("\U0001F468", "\U0001F468\u200d\U0001F469", False, "emoji vs emoji ZWJ sequence"),
        ("a\u200bb", "ab", False, "zero-width space is a real character"),
        ("ab", "a\u200bb", False, "zero-width space in subject only"),
        ("a\u200bb", "a\u200bb", True, "zero-width space in both"),
        ("*", "\u200b", True, "'*' matches a zero-width-space token"),
        ("\ufeffa", "a", False, "BOM is a real character"),
        ("\ufeffa", "\ufeffa", True, "BOM in both"),
        ("\u0645\u0631\u062d\u0628\u0627.*", "\u0645\u0631\u062d\u0628\u0627.\u0639\u0627\u0644\u0645", True, "Arabic (RTL) literal then '*'"),
        ("*.\u05e9\u05dc\u05d5\u05dd", "a.\u05e9\u05dc\u05d5\u05dd", True, "'*' then Hebrew literal"),
        ("\u200f\u05d0", "\u05d0", False, "RIGHT-TO-LEFT MARK is a real character"),
        ("\u2126", "\u03a9", False, "OHM SIGN vs GREEK CAPITAL OMEGA"),
        ("Stra\u00dfe", "STRASSE", False, "no case folding"),
        ("\u00c9", "\u00e9", False, "accented letter case differs"),
        ("\uff41", "a", False, "fullwidth vs ASCII letter"),
        ("a\uff0eb", "a.b", False, "FULLWIDTH FULL STOP is not a separator"),
        ("*.*", "a\uff0eb", False, "fullwidth-stop subject has one token"),
        ("*", "a\u3002b", True, "ideographic-full-stop subject is one token"),
        ("\u2217", "x", False, "ASTERISK OPERATOR is a literal"),
        ("\uff0a", "x", False, "FULLWIDTH ASTERISK is a literal"),
        ("\uff1e", "x.y", False, "FULLWIDTH GREATER-THAN is a literal"),
        ("\uff1e", "\uff1e", True, "FULLWIDTH GREATER-THAN matches itself"),
        # $ and _INBOX
        ("$JS.API.>", "$JS.API.STREAM.INFO.orders", True, "'>' under $JS.API"),
        ("$JS.API.>", "$JS.API", False, "'>' under $JS.API needs a token"),
        ("JS.API.>", "$JS.API.x", False, "'$' is a significant character"),
        ("$JS.*.x", "$JS.API.x", True, "'*' inside a $JS subject"),
        ("$JS.API.*", "$JS.API.STREAM.LIST", False, "'*' does not cover two tokens under $JS"),
        ("$*.API.x", "$JS.API.x", False, "'$*' is a literal token"),
        ("*.API.x", "$JS.API.x", True, "'*' matches a '$'-prefixed token"),
        ("$KV.bucket.*", "$KV.bucket.key", True, "'*' under $KV"),
        ("$KV.bucket.>", "$KV.other.key", False, "different bucket under $KV"),
        ("_INBOX.>", "_INBOX.abc.def", True, "inbox wildcard, two tokens"),
        ("_INBOX.*", "_INBOX.abc.def", False, "inbox '*' vs two tokens"),
        ("_INBOX.*", "_INBOX.abc", True, "inbox '*' vs one token"),
        ("_INBOX.>", "_INBOX", False, "bare _INBOX does not match '_INBOX.>'"),
        ("_INBOX.>", "_inbox.abc", False, "_INBOX is case-sensitive"),
        ("_INBOX.abc.*", "_INBOX.abc.1", True, "request-reply inbox"),
        # punctuation
        ("a-b.*", "a-b.c", True, "dash literal then '*'"),
        ("a_b.>", "a_b.c.d", True, "underscore literal then '>'"),
        ("a-b", "a_b", False, "dash vs underscore"),
        ("a:b", "a:b", True, "colon literal"),
        ("a:b", "a.b", False, "colon is not a separator"),
        ("a/b", "a/b", True, "slash literal"),
        ("a/b", "a.b", False, "slash is not a separator"),
        ("a/*", "a/b", False, "'a/*' is one literal token"),
        ("*", "a/b", True, "'*' matches a token containing '/'"),
        ("#", "#", True, "hash literal"),
        ("#", "a", False, "hash is not a wildcard"),
        ("a.#", "a.b", False, "'#' is not a multi-level wildcard"),
        ("a.#", "a.b.c", False, "'#' is not a multi-level wildcard (deeper)"),
        ("a.+", "a.b", False, "'+' is not a single-level wildcard"),
        ("a.+", "a.+", True, "'+' literal"),
        ("a.+.c", "a.b.c", False, "MQTT-style '+' in the middle is literal"),
        ("@", "@", True, "at-sign literal"),
        ("a%2Eb", "a.b", False, "percent-encoding is not decoded"),
        ("a%2Eb", "a%2Eb", True, "percent literal"),
        ("\"a\"", "a", False, "quotes are part of the token"),
        ("\"a\"", "\"a\"", True, "double-quoted literal"),
        ("'a'", "'a'", True, "single-quoted literal"),
        ("a\\b", "a\\b", True, "backslash literal"),
        ("a\\b", "a/b", False, "backslash vs slash"),
        ("a.?", "a.b", False, "'?' is not a wildcard"),
        ("a.b?", "a.bc", False, "'?' is not a glob"),
        ("a.b+", "a.bb", False, "'+' is not a regex quantifier"),
        ("a.[bc]", "a.b", False, "brackets are not a character class"),
        ("a.(b|c)", "a.b", False, "parentheses are not regex alternation"),
        ("a.b.^", "a.b.^", True, "caret literal"),
        ("a.$", "a.$", True, "'$' token literal"),
        ("a.$", "a", False, "'$' is not an end anchor"),
        ("a.*", "a.$", True, "'*' matches a '$' token"),
        ("...", "...", False, "dots only as both"),
    ]:
        M(p, s, m, note)

    # Controls: equal invalid strings never match, and valid patterns refuse them.
    for cp in [*range(0x20), 0x7F]:
        ch = chr(cp)
        M(f"a.b{ch}", f"a.b{ch}", False, f"{cname(ch)} in both: invalid, even though equal")
        M(">", f"a{ch}.b", False, f"'>' vs subject with {cname(ch)}")
    for cp in (0x80, 0x85, 0x9F):
        ch = chr(cp)
        M("*", f"a{ch}", False, f"'*' vs subject with {cname(ch)}")
        M(f"a.{ch}", f"a.{ch}", False, f"{cname(ch)} token in both: invalid, even though equal")

    # Medium (cross-checkable against nats-server) and long cases.
    hundred = ".".join(["a"] * 100)
    M(">", hundred, True, "'>' vs 100 tokens")
    M("*.>", hundred, True, "'*.>' vs 100 tokens")
    M(hundred, hundred, True, "100 literal tokens vs the same")
    M(".".join(["*"] * 100), hundred, True, "100 '*' vs 100 tokens")
    M(".".join(["*"] * 99), hundred, False, "99 '*' vs 100 tokens")
    M(".".join(["*"] * 101), hundred, False, "101 '*' vs 100 tokens")
    M(".".join(["a"] * 99 + [">"]), hundred, True, "99 literals then '>' vs 100 tokens")
    M(".".join(["a"] * 100 + [">"]), hundred, False, "100 literals then '>' vs 100 tokens")
    M(".".join(["a"] * 99 + ["b"]), hundred, False, "100 tokens, last one differs")
    M(".".join(["a"] * 50 + ["*"] + ["a"] * 49), hundred, True, "'*' as token 51 of 100")
    M("*", "y" * 2000, True, "'*' vs one 2,000-byte token")
    M("y" * 2000, "y" * 2000, True, "2,000-byte literal vs itself")
    M("y" * 1999, "y" * 2000, False, "1,999-byte literal vs 2,000-byte token")

    deep = ".".join(["a"] * 256)
    M(">", deep, True, "'>' vs 256 tokens (at the token limit)")
    M(".".join(["*"] * 255 + [">"]), deep, True, "255 '*' then '>' vs 256 tokens")
    M(deep, deep, True, "256 literal tokens vs the same")
    M(".".join(["*"] * 256), deep, True, "256 '*' vs 256 tokens")
    too_deep = ".".join(["a"] * 257)
    M(">", too_deep, False, "'>' vs 257 tokens: the subject is over the token limit")
    M(too_deep, too_deep, False, "257 literal tokens vs the same: both over the token limit")
    thousand = ".".join(f"t{i}" for i in range(1000))
    M(">", thousand, False, "'>' vs 1,000 tokens: the subject is over both limits")
    M("*", "x" * 10000, False, "'*' vs one 10,000-byte token: the subject is over the byte limit")
    M("x" * 10000, "x" * 10000, False, "10,000-byte literal vs itself: both over the byte limit")
    M("*", "y" * 2001, False, "'*' vs one 2,001-byte token")


def build_grid() -> None:
    """Every pattern against every subject; expectation from the references only."""
    pats = ["a", "*", ">", "a.b", "a.*", "*.b", "*.*", "a.>", "*.>", "a.b.c", "a.*.c",
            "*.*.*", "a.b.>", "a.*.>", "*.*.>", "*.b.*"]
    subs = ["a", "b", "a.b", "a.c", "b.b", "a.b.c", "a.x.c", "b.b.c", "a.b.c.d", "a.b.c.d.e"]
    for p in pats:
        for s in subs:
            C.match(p, s, None, grid_note(p, s))


def grid_note(p: str, s: str) -> str:
    pt, st = p.split("."), s.split(".")
    head = f"grid: {len(pt)}-token pattern vs {len(st)}-token subject"
    for i, tok in enumerate(pt):
        if tok == ">":
            return f"{head}; '>' covers the rest" if len(st) > i else f"{head}; '>' needs a token"
        if i >= len(st):
            return f"{head}; subject too short"
        if tok != "*" and tok != st[i]:
            return f"{head}; token {i + 1} differs"
    return f"{head}; match" if len(pt) == len(st) else f"{head}; subject too long"


# --------------------------------------------------------------------------
# Verification and output.
# --------------------------------------------------------------------------


def verify_and_render() -> str:
    errors = list(C.errors)

    def settle(kind, key, hand, a, b):
        if a != b:
            errors.append(f"{kind} {key!r}: reference A says {a}, reference B says {b}")
        if hand is not None and hand != a:
            errors.append(f"{kind} {key!r}: hand-written {hand}, references say {a}")
        return a

    vs = [{"input": s, "valid": settle("validate_subject", s, hand, a_validate_subject(s), b_validate_subject(s)), "note": note}
          for s, (hand, note) in C.subjects.items()]
    vp = [{"input": p, "valid": settle("validate_pattern", p, hand, a_validate_pattern(p), b_validate_pattern(p)), "note": note}
          for p, (hand, note) in C.patterns.items()]
    ms = [{"pattern": p, "subject": s, "matches": settle("matches", (p, s), hand, a_matches(p, s), b_matches(p, s)), "note": note}
          for (p, s), (hand, note) in C.matches.items()]

    # Sanity: a few properties that tie the three functions together.
    for c in vs:
        if c["valid"] and not a_validate_pattern(c["input"]):
            errors.append(f"valid subject {c['input']!r} is not a valid pattern")
    for c in ms:
        if c["matches"] and not (a_validate_pattern(c["pattern"]) and a_validate_subject(c["subject"])):
            errors.append(f"match with invalid operand: {c!r}")

    for name, lst, minimum in (("validate_subject", vs, 250), ("validate_pattern", vp, 250), ("matches", ms, 300)):
        if len(lst) < minimum:
            errors.append(f"{name} has {len(lst)} cases, want at least {minimum}")
        if not any(c.get("valid", c.get("matches")) for c in lst) or all(c.get("valid", c.get("matches")) for c in lst):
            errors.append(f"{name} is one-sided")

    if errors:
        sys.exit("gen_subjects.py: verification failed:\n  " + "\n  ".join(errors))

    vs.sort(key=lambda c: c["input"])
    vp.sort(key=lambda c: c["input"])
    ms.sort(key=lambda c: (c["pattern"], c["subject"]))
    doc = {
        "description": DESCRIPTION,
        "version": 1,
        "validate_subject": vs,
        "validate_pattern": vp,
        "matches": ms,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=True, sort_keys=True) + "\n"
    if len(text.encode()) >= 1_000_000:
        sys.exit(f"gen_subjects.py: output is {len(text)} bytes, want < 1 MB")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="do not write; fail if the file differs")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output path (default {OUT})")
    args = ap.parse_args()

    check_character_table()
    build_validity()
    build_matches()
    build_grid()
    text = verify_and_render()

    doc = json.loads(text)
    counts = ", ".join(f"{k}={len(doc[k])}" for k in ("validate_subject", "validate_pattern", "matches"))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} is stale; rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date ({counts})")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {args.out} ({counts}, {len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
