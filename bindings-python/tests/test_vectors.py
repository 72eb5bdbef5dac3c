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


JSON_PAYLOADS: list[dict[str, Any]] = json.loads(
    (REPO / "tests/vectors/json_payloads.json").read_text("utf-8")
)["cases"]


@pytest.mark.parametrize("case", JSON_PAYLOADS, ids=[c["name"] for c in JSON_PAYLOADS])
async def test_json_payload_vectors(case: dict[str, Any]) -> None:
    """A value publishes the exact text JavaScript's JSON.stringify writes for it."""
    bus = await busbar.connect()
    sub = await bus.subscribe("json.payload")
    await bus.publish("json.payload", case["value"])
    msg = await sub.__anext__()
    assert msg.data.decode("utf-8") == case["json"]
    assert msg.content_type == "application/json"
    await bus.close()


async def test_json_payloads_refuse_what_has_no_json_form() -> None:
    bus = await busbar.connect()
    deep: list[Any] = []
    for _ in range(1100):
        deep = [deep]
    circular: dict[str, Any] = {}
    circular["me"] = circular
    for bad in [deep, circular]:
        with pytest.raises(busbar.InvalidArgumentError, match="nested deeper than 1000"):
            await bus.publish("json.bad", bad)
    with pytest.raises(TypeError, match=r"keys must be str, int, float, bool or None, not tuple"):
        await bus.publish("json.bad", {(1, 2): "x"})
    with pytest.raises(TypeError, match=r"JSON-serialisable.*set is not"):
        await bus.publish("json.bad", {"s": {1, 2}})
    # Keys as json.dumps takes them, and tuples as arrays.
    sub = await bus.subscribe("json.ok")
    await bus.publish("json.ok", {7: "a", 2.5: "b", False: "c", None: "d", "t": (1, 2)})
    msg = await sub.__anext__()
    assert msg.data == b'{"7":"a","2.5":"b","false":"c","null":"d","t":[1,2]}'
    await bus.close()
