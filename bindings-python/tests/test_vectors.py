"""The shared subject vectors (tests/vectors/subjects.json), as every language reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest

import busbar
from conftest import REPO

VECTORS: dict[str, Any] = json.loads((REPO / "tests/vectors/subjects.json").read_text("utf-8"))


def cases(name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = VECTORS[name]
    assert len(found) >= 100, f"{name} holds {len(found)} cases; the file was cut short"
    return found


@pytest.mark.parametrize(
    ("name", "validate"),
    [("validate_subject", busbar.validate_subject), ("validate_pattern", busbar.validate_pattern)],
)
def test_validity_vectors(name: str, validate: Any) -> None:
    failures = []
    for case in cases(name):
        try:
            validate(case["input"])
        except busbar.InvalidSubject as e:
            assert e.code == "invalid_subject"
            if case["valid"]:
                failures.append(f"{case['input']!r} refused ({e}); {case['note']}")
        else:
            if not case["valid"]:
                failures.append(f"{case['input']!r} accepted; {case['note']}")
    assert not failures, "\n".join(failures)


def test_match_vectors() -> None:
    failures = [
        f"{c['pattern']!r} vs {c['subject']!r}: want {c['matches']}; {c['note']}"
        for c in cases("matches")
        if busbar.subject_matches(c["pattern"], c["subject"]) is not c["matches"]
    ]
    assert not failures, "\n".join(failures)


async def test_memory_bus_routes_as_the_vectors_say() -> None:
    """The in-memory bus delivers exactly where subject_matches says (valid pairs only)."""
    bus = await busbar.connect()
    valid = [c for c in cases("matches") if c["pattern"] and c["subject"]]
    checked = 0
    for c in valid:
        try:
            busbar.validate_pattern(c["pattern"])
            busbar.validate_subject(c["subject"])
        except busbar.InvalidSubject:
            continue
        sub = await bus.subscribe(c["pattern"])
        await bus.publish(c["subject"], b"x")
        await sub.drain()
        got = [m.subject async for m in sub]
        assert got == ([c["subject"]] if c["matches"] else []), c
        checked += 1
    assert checked >= 100
    await bus.close()
