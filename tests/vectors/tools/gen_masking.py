#!/usr/bin/env python3
"""Generate tests/vectors/masking.json, the shared masking vectors (docs/design.md §6).

Python 3.9+, standard library only (hmac, hashlib, json). The expected outputs come
from the small reference implementation below, written from the rules in the file's
description, not from busbar; cases that carry a hand-written `want` are also checked
against it, and any disagreement aborts the run.

    python3 tests/vectors/tools/gen_masking.py           # (re)write the file
    python3 tests/vectors/tools/gen_masking.py --check   # fail if it is stale
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "masking.json"

DESCRIPTION = (
    "Shared masking vectors for busbar policies. Each case: a policy (by name), the "
    "subscriber's roles, the subject pattern it subscribes to (default: the subject), a "
    "message (subject, optional classification attribute, payload as JSON `input` or raw "
    "text `input_text`), optional subscription filter `filter_classes`, and the outcome: "
    "`delivered` (payload `delivered` as JSON, compared after compact serialisation with "
    "object members in payload order, or `delivered_text`), `withheld`, `filtered` or "
    "`forbidden`; `masked` lists the JSON Pointers masked. Rules: field rules apply to "
    "subjects matching their `subjects` (all when absent), in order. A message is "
    "classified when its classification attribute names a class or a rule applies to its "
    "subject. A role grants classes; a field whose class is granted is unchanged, any other "
    "is masked: redact -> the policy's redaction text; hash -> lowercase hex "
    "HMAC-SHA-256 with key HMAC-SHA-256(master, 'busbar/v1/hash') over the UTF-8 of a "
    "string or the compact JSON text of any other value; partial N -> '*' for each "
    "character (code point) but the last N, all '*' when the value has N characters or "
    "fewer, numbers and booleans as their JSON text, objects/arrays/null redacted; drop -> "
    "removed from its object or array. Pointers are RFC 6901 with '*' for any key or "
    "index. A classified payload that is not JSON is withheld unless every class it may "
    "carry (attribute classes plus classes of applicable rules) is granted. A JSON payload "
    "whose attribute names a class that is not granted and that no applicable rule locates "
    "in this payload (a rule that could cover it but finds nothing does not count), or a "
    "class the policy does not declare, is withheld. Header rules (`headers` of a policy: "
    "name compared without regard to ASCII case, class, action, optional subjects) apply "
    "to a case's user `headers` like field rules to values: a header of a class not "
    "granted is masked as its string value would be (drop removes it) and named "
    "`header:<lowercase name>` in `masked`, after the payload's pointers, in header-name "
    "order; header classes count as classes the message may carry. `delivered_headers` "
    "are the user headers delivered. Subscribing to a pattern that "
    "overlaps a restricted pattern needs one of its roles, else forbidden. A class filter "
    "delivers only messages carrying one of its classes (attribute classes plus classes of "
    "fields present; for non-JSON, of applicable rules)."
)

MASTER = bytes(range(32))
KEYRING = {"active": "k1", "hash_key": "k1", "keys": {"k1": base64.b64encode(MASTER).decode()}}

CLINIC = {
    "classes": ["phi", "pii", "financial"],
    "fields": [
        {"path": "/patient/name", "class": "phi", "action": "redact"},
        {"path": "/patient/mrn", "class": "phi", "action": "hash"},
        {"path": "/patient/ssn", "class": "pii", "action": "partial", "keep": 4},
        {"path": "/patient/address", "class": "pii", "action": "hash"},
        {"path": "/patient/contacts/*/phone", "class": "pii", "action": "partial", "keep": 2},
        {"path": "/diagnoses/*", "class": "phi", "action": "drop"},
        {"path": "/notes", "class": "phi", "action": "drop"},
        {"path": "/billing/card", "class": "financial", "action": "partial", "keep": 4},
        {"path": "/*/email", "class": "pii", "action": "hash"},
        {"path": "/a~1b/~0c", "class": "pii", "action": "redact"},
        {"path": "/患者/名前", "class": "phi", "action": "redact"},
    ],
    "restricted": [{"subjects": ["phi.raw.>"], "roles": ["clinician"]}],
    "grants": {
        "clinician": ["phi", "pii", "financial"],
        "billing": ["financial"],
        "support": ["pii"],
        "analytics": [],
    },
}

SCOPED = {
    "classes": ["phi", "pii"],
    "redaction": "***",
    "fields": [
        {"path": "/ssn", "class": "pii", "action": "partial", "keep": 4, "subjects": ["hr.>"]},
        {"path": "/name", "class": "phi", "action": "redact", "subjects": "hr.people.*"},
    ],
    "restricted": [{"subjects": ["hr.salary", "hr.secret.>"], "roles": ["hr"]}],
    "grants": {"hr": ["phi", "pii"], "manager": ["pii"]},
}

HEADERS = {
    "classes": ["phi", "pii"],
    "fields": [{"path": "/patient/name", "class": "phi", "action": "redact"}],
    "headers": [
        {"name": "x-patient-name", "class": "phi", "action": "redact"},
        {"name": "x-ssn", "class": "pii", "action": "partial", "keep": 4},
        {"name": "x-mrn", "class": "phi", "action": "drop", "subjects": ["patients.>"]},
    ],
    "grants": {"clinician": ["phi", "pii"], "billing": ["pii"]},
}

POLICIES = {"clinic": CLINIC, "scoped": SCOPED, "headers": HEADERS}

PATIENT = {
    "patient": {
        "name": "Zoë Ångström",
        "mrn": "MRN-00042",
        "ssn": "123-45-6789",
        "contacts": [{"kind": "home", "phone": "+1 555 0100"}, {"kind": "work"}, {"phone": "0711"}],
        "email": "zoe@example.org",
    },
    "diagnoses": ["E11.9", "I10"],
    "notes": "follow-up in 2 weeks",
    "billing": {"card": "4111111111111111", "email": "billing@example.org", "amount": 120.5},
    "ward": 4,
}

# --------------------------------------------------------------------------
# The reference implementation.
# --------------------------------------------------------------------------


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def overlap(a: list[str], b: list[str]) -> bool:
    if not a or not b:
        return not a and not b
    if a[0] == ">" or b[0] == ">":
        return True
    return (a[0] == "*" or b[0] == "*" or a[0] == b[0]) and overlap(a[1:], b[1:])


def pointer(path: str) -> list:
    assert path.startswith("/")
    out = []
    for raw in path[1:].split("/"):
        out.append(None if raw == "*" else raw.replace("~1", "/").replace("~0", "~"))
    return out


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def walk(value, toks, path, fn):
    """fn(value, path) -> ("keep", new_value) or ("remove", None); returns the new value."""
    if not toks:
        return value
    tok, rest = toks[0], toks[1:]
    if isinstance(value, dict):
        keys = list(value) if tok is None else ([tok] if tok in value else [])
        for k in keys:
            p = path + "/" + escape(k)
            if rest:
                value[k] = walk(value[k], rest, p, fn)
            else:
                what, new = fn(value[k], p)
                if what == "remove":
                    del value[k]
                else:
                    value[k] = new
    elif isinstance(value, list):
        if tok is None:
            idx = list(range(len(value)))
        elif tok.isdigit() and (tok == "0" or not tok.startswith("0")) and int(tok) < len(value):
            idx = [int(tok)]
        else:
            idx = []
        remove = []
        for i in idx:
            p = f"{path}/{i}"
            if rest:
                value[i] = walk(value[i], rest, p, fn)
            else:
                what, new = fn(value[i], p)
                if what == "remove":
                    remove.append(i)
                else:
                    value[i] = new
        for i in reversed(remove):
            del value[i]
    return value


def compact(v) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def hash_key() -> bytes:
    return hmac.new(MASTER, b"busbar/v1/hash", hashlib.sha256).digest()


def hash_value(v) -> str:
    data = v.encode("utf-8") if isinstance(v, str) else compact(v).encode("utf-8")
    return hmac.new(hash_key(), data, hashlib.sha256).hexdigest()


def partial(s: str, keep: int) -> str:
    n = len(s)
    return "*" * n if n <= keep else "*" * (n - keep) + s[n - keep:]


def mask(policy: dict, rule: dict, v):
    redaction = policy.get("redaction", "[REDACTED]")
    action = rule["action"]
    if action == "drop":
        return ("remove", None)
    if action == "redact":
        return ("keep", redaction)
    if action == "hash":
        return ("keep", hash_value(v))
    if isinstance(v, str):
        return ("keep", partial(v, rule["keep"]))
    if isinstance(v, (bool, int, float)):
        return ("keep", partial(compact(v), rule["keep"]))
    return ("keep", redaction)


def parse_json(data: bytes):
    def no_constants(name):
        raise ValueError(name)

    try:
        return True, json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError):
        return False, None


def rule_subjects(rule: dict) -> list[str]:
    s = rule.get("subjects", [])
    return [s] if isinstance(s, str) else s


def reference(case: dict) -> dict:
    policy = POLICIES[case["policy"]]
    classes = policy["classes"]
    roles = case["roles"]
    subject = case["subject"]
    pattern = case.get("pattern", subject)
    for r in policy.get("restricted", []):
        for s in r["subjects"]:
            if overlap(pattern.split("."), s.split(".")) and not any(x in r["roles"] for x in roles):
                return {"outcome": "forbidden"}
    grants = set()
    for role in roles:
        grants |= set(policy["grants"].get(role, []))
    rules = [r for r in policy["fields"] if not rule_subjects(r) or any(subject_matches(p, subject) for p in rule_subjects(r))]
    attr = [c.strip() for c in case.get("classification", "").split(",") if c.strip()]
    tagged = {c for c in attr if c in classes}
    unknown = [c for c in attr if c not in classes]
    hrules = [r for r in policy.get("headers", [])
              if not rule_subjects(r) or any(subject_matches(p, subject) for p in rule_subjects(r))]
    headers = dict(case.get("headers", {}))
    covered = {r["class"] for r in rules} | {r["class"] for r in hrules}
    filt = set(case.get("filter_classes", []))
    wanted = lambda present: not filt or bool(present & filt)  # noqa: E731
    if "input_text" in case:
        data = case["input_text"].encode("utf-8")
    else:
        data = compact(case["input"]).encode("utf-8")
    as_is = {"outcome": "delivered", "masked": []}
    as_is.update({"delivered_text": case["input_text"]} if "input_text" in case else {"delivered": case["input"]})
    if "headers" in case:
        as_is["delivered_headers"] = headers
    classified = bool(tagged or unknown or rules or hrules)
    if not classified:
        return as_is if wanted(set()) else {"outcome": "filtered"}
    possible = tagged | covered
    ungranted = bool(possible - grants) or bool(unknown)
    if not ungranted and not filt:
        return as_is
    ok, value = parse_json(data)
    if not ok:
        if not wanted(possible):
            return {"outcome": "filtered"}
        return {"outcome": "withheld"} if ungranted else as_is
    present = set(tagged)
    located: set[str] = set()
    masked: list[str] = []
    for rule in rules:
        def fn(v, p, rule=rule):
            present.add(rule["class"])
            located.add(rule["class"])
            if rule["class"] in grants:
                return ("keep", v)
            masked.append(p)
            return mask(policy, rule, v)

        value = walk(value, pointer(rule["path"]), "", fn)
    out_headers = {}
    for name in sorted(headers):
        rule = next((r for r in hrules if r["name"].lower() == name.lower()), None)
        if rule is None:
            out_headers[name] = headers[name]
            continue
        present.add(rule["class"])
        if rule["class"] in grants:
            out_headers[name] = headers[name]
            continue
        masked.append("header:" + name.lower())
        what, new = mask(policy, rule, headers[name])
        if what == "keep":
            out_headers[name] = new
    if not wanted(present):
        return {"outcome": "filtered"}
    if (tagged - grants - located) or unknown:
        return {"outcome": "withheld"}
    if not masked:
        return as_is
    out = {"outcome": "delivered", "delivered": value, "masked": masked}
    if "headers" in case:
        out["delivered_headers"] = out_headers
    return out


# --------------------------------------------------------------------------
# The cases. `want` is a hand-written expectation checked against the reference.
# --------------------------------------------------------------------------


def p(**overrides):
    doc = copy.deepcopy(PATIENT)
    for k, v in overrides.items():
        doc[k] = v
    return doc


def cases() -> list[dict]:
    c = []
    add = c.append
    add({"name": "clinician is granted every class: payload unchanged", "policy": "clinic",
         "roles": ["clinician"], "subject": "patients.admitted", "input": PATIENT,
         "want": {"outcome": "delivered", "delivered": PATIENT, "masked": []}})
    add({"name": "billing: phi redacted, hashed and dropped, pii partial and hashed, own class kept",
         "policy": "clinic", "roles": ["billing"], "subject": "patients.admitted", "input": PATIENT})
    add({"name": "analytics is granted nothing: every rule masks", "policy": "clinic",
         "roles": ["analytics"], "subject": "patients.admitted", "input": PATIENT})
    add({"name": "support is granted pii only", "policy": "clinic", "roles": ["support"],
         "subject": "patients.admitted", "input": PATIENT})
    add({"name": "no roles at all is like analytics", "policy": "clinic", "roles": [],
         "subject": "patients.admitted", "input": PATIENT})
    add({"name": "two roles grant the union of their classes", "policy": "clinic",
         "roles": ["billing", "support"], "subject": "patients.admitted", "input": PATIENT})
    add({"name": "missing fields are simply not there to mask", "policy": "clinic", "roles": ["analytics"],
         "subject": "patients.admitted", "input": {"patient": {"name": "Bo"}, "ward": 2},
         "want": {"outcome": "delivered", "delivered": {"patient": {"name": "[REDACTED]"}, "ward": 2},
                  "masked": ["/patient/name"]}})
    add({"name": "no classified field present: delivered byte for byte", "policy": "clinic",
         "roles": ["analytics"], "subject": "patients.admitted", "input": {"ward": 2, "beds": [1, 2]},
         "want": {"outcome": "delivered", "delivered": {"ward": 2, "beds": [1, 2]}, "masked": []}})
    add({"name": "partial keeps the last 4 characters", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"ssn": "123-45-6789"}},
         "want": {"outcome": "delivered", "delivered": {"patient": {"ssn": "*******6789"}},
                  "masked": ["/patient/ssn"]}})
    add({"name": "partial counts code points, not bytes", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"ssn": "١٢٣-٤٥-٦٧٨٩"}},
         "want": {"outcome": "delivered", "delivered": {"patient": {"ssn": "*******٦٧٨٩"}},
                  "masked": ["/patient/ssn"]}})
    add({"name": "partial of a value no longer than N masks it all", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"ssn": "6789"}},
         "want": {"outcome": "delivered", "delivered": {"patient": {"ssn": "****"}}, "masked": ["/patient/ssn"]}})
    add({"name": "partial of a number uses its JSON text", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"ssn": 123456789}},
         "want": {"outcome": "delivered", "delivered": {"patient": {"ssn": "*****6789"}}, "masked": ["/patient/ssn"]}})
    add({"name": "partial of an object is redacted", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"ssn": {"area": 123}}},
         "want": {"outcome": "delivered", "delivered": {"patient": {"ssn": "[REDACTED]"}}, "masked": ["/patient/ssn"]}})
    add({"name": "hash of a string: HMAC-SHA-256 of its UTF-8", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"mrn": "MRN-00042"}}})
    add({"name": "hash of a number: HMAC of its JSON text", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"patient": {"mrn": 42}}})
    add({"name": "hash of an object: HMAC of its compact JSON, members in payload order",
         "policy": "clinic", "roles": ["analytics"], "subject": "p.x",
         "input": {"patient": {"address": {"street": "Hauptstraße 1", "city": "Köln", "zip": "50667"}}}})
    add({"name": "equal values hash equal wherever they sit (joinable)", "policy": "clinic", "roles": ["billing"],
         "subject": "p.x", "input": {"patient": {"email": "same@example.org"}, "billing": {"email": "same@example.org"}}})
    add({"name": "unicode values hash their UTF-8", "policy": "clinic", "roles": ["billing"],
         "subject": "p.x", "input": {"patient": {"email": "zoë@exämple.org", "mrn": "患者-7"}}})
    add({"name": "arrays with *: each element's field, elements without it skipped", "policy": "clinic",
         "roles": ["analytics"], "subject": "p.x",
         "input": {"patient": {"contacts": [{"phone": "0123456"}, {"fax": "1"}, {"phone": "98"}, "x"]}},
         "want": {"outcome": "delivered",
                  "delivered": {"patient": {"contacts": [{"phone": "*****56"}, {"fax": "1"}, {"phone": "**"}, "x"]}},
                  "masked": ["/patient/contacts/0/phone", "/patient/contacts/2/phone"]}})
    add({"name": "drop with * empties an array, member order kept", "policy": "clinic", "roles": ["billing"],
         "subject": "p.x", "input": {"a": 1, "diagnoses": ["E11.9", "I10", {"code": "Z00"}], "z": 2},
         "want": {"outcome": "delivered", "delivered": {"a": 1, "diagnoses": [], "z": 2},
                  "masked": ["/diagnoses/0", "/diagnoses/1", "/diagnoses/2"]}})
    add({"name": "drop removes a member, the others keep their order", "policy": "clinic", "roles": ["billing"],
         "subject": "p.x", "input": {"z": 1, "notes": "x", "a": 2},
         "want": {"outcome": "delivered", "delivered": {"z": 1, "a": 2}, "masked": ["/notes"]}})
    add({"name": "* as the first token matches any top-level member", "policy": "clinic", "roles": ["financial-less"],
         "subject": "p.x", "input": {"x": {"email": "a@b.c"}, "y": {"email": "d@e.f"}, "z": [{"email": "no"}]}})
    add({"name": "a path token is not a wildcard over arrays of the wrong shape", "policy": "clinic",
         "roles": ["analytics"], "subject": "p.x", "input": {"patient": ["name", "mrn"], "diagnoses": "E11"},
         "want": {"outcome": "delivered", "delivered": {"patient": ["name", "mrn"], "diagnoses": "E11"}, "masked": []}})
    add({"name": "escaped pointer tokens ~1 and ~0", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"a/b": {"~c": "secret", "c": "open"}},
         "want": {"outcome": "delivered", "delivered": {"a/b": {"~c": "[REDACTED]", "c": "open"}},
                  "masked": ["/a~1b/~0c"]}})
    add({"name": "unicode keys in the pointer", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": {"患者": {"名前": "山田太郎", "部屋": 3}},
         "want": {"outcome": "delivered", "delivered": {"患者": {"名前": "[REDACTED]", "部屋": 3}},
                  "masked": ["/患者/名前"]}})
    add({"name": "a JSON scalar payload has no fields to mask", "policy": "clinic", "roles": ["analytics"],
         "subject": "p.x", "input": "just a string",
         "want": {"outcome": "delivered", "delivered": "just a string", "masked": []}})
    add({"name": "not JSON where rules apply: withheld (fail closed)", "policy": "clinic", "roles": ["billing"],
         "subject": "patients.admitted", "input_text": "name=Zoë;ssn=123-45-6789",
         "want": {"outcome": "withheld"}})
    add({"name": "malformed JSON: withheld", "policy": "clinic", "roles": ["analytics"],
         "subject": "patients.admitted", "input_text": "{\"patient\": {\"name\": \"Zoë\"",
         "want": {"outcome": "withheld"}})
    add({"name": "empty payload where rules apply: withheld", "policy": "clinic", "roles": ["analytics"],
         "subject": "patients.admitted", "input_text": "", "want": {"outcome": "withheld"}})
    add({"name": "JSON with NaN is not JSON: withheld", "policy": "clinic", "roles": ["analytics"],
         "subject": "patients.admitted", "input_text": "{\"patient\": {\"mrn\": NaN}}",
         "want": {"outcome": "withheld"}})
    add({"name": "not JSON, but every class granted: delivered unchanged", "policy": "clinic",
         "roles": ["clinician"], "subject": "patients.admitted", "input_text": "name=Zoë",
         "want": {"outcome": "delivered", "delivered_text": "name=Zoë", "masked": []}})
    add({"name": "scoped rules: a subject without rules is unclassified, text passes", "policy": "scoped",
         "roles": [], "subject": "sales.orders", "input_text": "ssn 123-45-6789",
         "want": {"outcome": "delivered", "delivered_text": "ssn 123-45-6789", "masked": []}})
    add({"name": "scoped rules: only the rules of the subject apply", "policy": "scoped", "roles": [],
         "subject": "hr.payroll", "input": {"ssn": "123456789", "name": "Ann"},
         "want": {"outcome": "delivered", "delivered": {"ssn": "*****6789", "name": "Ann"}, "masked": ["/ssn"]}})
    add({"name": "scoped rules with a custom redaction text", "policy": "scoped", "roles": ["manager"],
         "subject": "hr.people.joined", "input": {"ssn": "123456789", "name": "Ann"},
         "want": {"outcome": "delivered", "delivered": {"ssn": "123456789", "name": "***"}, "masked": ["/name"]}})
    add({"name": "classification attribute with a class no rule covers: withheld", "policy": "scoped",
         "roles": ["manager"], "subject": "sales.orders", "classification": "phi", "input": {"total": 3},
         "want": {"outcome": "withheld"}})
    add({"name": "classification attribute with a granted class: delivered", "policy": "scoped",
         "roles": ["hr"], "subject": "sales.orders", "classification": "phi", "input": {"total": 3},
         "want": {"outcome": "delivered", "delivered": {"total": 3}, "masked": []}})
    add({"name": "classification attribute covered by a rule: the rule masks", "policy": "scoped",
         "roles": ["manager"], "subject": "hr.people.left", "classification": "phi,pii",
         "input": {"name": "Ann", "ssn": "1234"},
         "want": {"outcome": "delivered", "delivered": {"name": "***", "ssn": "1234"}, "masked": ["/name"]}})
    add({"name": "an undeclared class is never granted: withheld even from the widest role", "policy": "scoped",
         "roles": ["hr"], "subject": "hr.people.left", "classification": "secret", "input": {"name": "Ann"},
         "want": {"outcome": "withheld"}})
    add({"name": "classified text on an unscoped subject: withheld", "policy": "scoped", "roles": [],
         "subject": "sales.orders", "classification": "pii", "input_text": "card 4111",
         "want": {"outcome": "withheld"}})
    add({"name": "classified text with the class granted: delivered", "policy": "scoped", "roles": ["manager"],
         "subject": "sales.orders", "classification": "pii", "input_text": "card 4111",
         "want": {"outcome": "delivered", "delivered_text": "card 4111", "masked": []}})
    add({"name": "restricted subject without the role: forbidden", "policy": "clinic", "roles": ["billing"],
         "subject": "phi.raw.labs", "pattern": "phi.raw.>", "input": {"x": 1}, "want": {"outcome": "forbidden"}})
    add({"name": "a wildcard that overlaps a restricted subject: forbidden", "policy": "clinic", "roles": ["analytics"],
         "subject": "phi.raw.labs", "pattern": ">", "input": {"x": 1}, "want": {"outcome": "forbidden"}})
    add({"name": "* in the middle overlaps too", "policy": "clinic", "roles": ["support"],
         "subject": "phi.raw.labs", "pattern": "*.raw.labs", "input": {"x": 1}, "want": {"outcome": "forbidden"}})
    add({"name": "a pattern that cannot reach the restricted subject is allowed", "policy": "clinic",
         "roles": ["analytics"], "subject": "phi.labs", "pattern": "phi.*", "input": {"x": 1},
         "want": {"outcome": "delivered", "delivered": {"x": 1}, "masked": []}})
    add({"name": "restricted subject with the role: delivered", "policy": "clinic", "roles": ["clinician"],
         "subject": "phi.raw.labs", "pattern": "phi.raw.>", "input": {"notes": "n"},
         "want": {"outcome": "delivered", "delivered": {"notes": "n"}, "masked": []}})
    add({"name": "one of several restricted patterns", "policy": "scoped", "roles": ["manager"],
         "subject": "hr.salary", "input": {"x": 1}, "want": {"outcome": "forbidden"}})
    add({"name": "class filter: a message without the class is filtered", "policy": "clinic", "roles": ["billing"],
         "subject": "p.x", "filter_classes": ["financial"], "input": {"patient": {"name": "Bo"}},
         "want": {"outcome": "filtered"}})
    add({"name": "class filter: a message with a field of the class is delivered (masked as usual)",
         "policy": "clinic", "roles": ["billing"], "subject": "p.x", "filter_classes": ["financial"],
         "input": {"patient": {"name": "Bo"}, "billing": {"card": "4111111111111111"}},
         "want": {"outcome": "delivered",
                  "delivered": {"patient": {"name": "[REDACTED]"}, "billing": {"card": "4111111111111111"}},
                  "masked": ["/patient/name"]}})
    add({"name": "class filter on the classification attribute", "policy": "scoped", "roles": ["hr"],
         "subject": "sales.orders", "classification": "pii", "filter_classes": ["pii"], "input": {"x": 1},
         "want": {"outcome": "delivered", "delivered": {"x": 1}, "masked": []}})
    add({"name": "a tag whose class a rule covers but finds nothing in this payload: withheld",
         "policy": "clinic", "roles": ["billing"], "subject": "labs.result", "classification": "phi",
         "input": {"result": "HIV+"}, "want": {"outcome": "withheld"}})
    add({"name": "a tag located by a rule in this payload: masked, delivered", "policy": "clinic",
         "roles": ["billing"], "subject": "labs.result", "classification": "phi",
         "input": {"patient": {"name": "Bo"}, "result": "negative"},
         "want": {"outcome": "delivered", "delivered": {"patient": {"name": "[REDACTED]"}, "result": "negative"},
                  "masked": ["/patient/name"]}})
    add({"name": "a tag with nothing located, the class granted: delivered", "policy": "clinic",
         "roles": ["clinician"], "subject": "labs.result", "classification": "phi",
         "input": {"result": "HIV+"},
         "want": {"outcome": "delivered", "delivered": {"result": "HIV+"}, "masked": []}})
    add({"name": "header rules: a header of an ungranted class is redacted", "policy": "headers",
         "roles": ["billing"], "subject": "visits.new", "headers": {"X-Patient-Name": "Zoë", "X-SSN": "123-45-6789",
                                                                    "tenant": "acme"},
         "input": {"ward": 4},
         "want": {"outcome": "delivered", "delivered": {"ward": 4}, "masked": ["header:x-patient-name"],
                  "delivered_headers": {"X-Patient-Name": "[REDACTED]", "X-SSN": "123-45-6789", "tenant": "acme"}}})
    add({"name": "header rules: partial and drop, with a payload field", "policy": "headers", "roles": [],
         "subject": "patients.new", "headers": {"x-mrn": "MRN-1", "x-ssn": "123-45-6789"},
         "input": {"patient": {"name": "Bo"}},
         "want": {"outcome": "delivered", "delivered": {"patient": {"name": "[REDACTED]"}},
                  "masked": ["/patient/name", "header:x-mrn", "header:x-ssn"],
                  "delivered_headers": {"x-ssn": "*******6789"}}})
    add({"name": "header rules: a scoped header rule does not apply elsewhere", "policy": "headers", "roles": [],
         "subject": "visits.new", "headers": {"x-mrn": "MRN-1"}, "input": {"ward": 4},
         "want": {"outcome": "delivered", "delivered": {"ward": 4}, "masked": [],
                  "delivered_headers": {"x-mrn": "MRN-1"}}})
    add({"name": "header rules: every class granted, headers unchanged", "policy": "headers",
         "roles": ["clinician"], "subject": "patients.new", "headers": {"x-mrn": "MRN-1", "X-Patient-Name": "Bo"},
         "input": {"ward": 4},
         "want": {"outcome": "delivered", "delivered": {"ward": 4}, "masked": [],
                  "delivered_headers": {"X-Patient-Name": "Bo", "x-mrn": "MRN-1"}}})
    add({"name": "header rules: a classified header makes a text payload unmaskable", "policy": "headers",
         "roles": ["billing"], "subject": "visits.new", "headers": {"x-patient-name": "Bo"},
         "input_text": "free text", "want": {"outcome": "withheld"}})
    add({"name": "class filter: unclassified messages are filtered", "policy": "scoped", "roles": ["hr"],
         "subject": "sales.orders", "filter_classes": ["pii"], "input": {"x": 1},
         "want": {"outcome": "filtered"}})
    return c


def build() -> dict:
    out = []
    names = set()
    for case in cases():
        assert case["name"] not in names, case["name"]
        names.add(case["name"])
        got = reference(case)
        want = case.pop("want", None)
        if want is not None and want != got:
            raise SystemExit(f"reference disagrees with the hand-written expectation of {case['name']!r}:\n"
                             f"  reference: {got}\n  expected:  {want}")
        case.update(got)
        out.append(case)
    outcomes = {c["outcome"] for c in out}
    assert outcomes == {"delivered", "withheld", "forbidden", "filtered"}, outcomes
    return {
        "version": 1,
        "description": DESCRIPTION,
        "key_ring": KEYRING,
        "hash_key_hex": hash_key().hex(),
        "policies": POLICIES,
        "cases": out,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; fail if the file differs")
    args = ap.parse_args()
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run python3 tests/vectors/tools/gen_masking.py", file=sys.stderr)
            return 1
        print(f"{OUT.name}: {len(json.loads(text)['cases'])} cases, up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(json.loads(text)['cases'])} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
