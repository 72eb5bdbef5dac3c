"""The shared masking vectors (tests/vectors/masking.json), run through a bus that acts as a
principal by configuration alone (`policy`, `key_ring`, `principal`, `roles`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import busbar
from conftest import REPO

VECTORS: dict[str, Any] = json.loads((REPO / "tests/vectors/masking.json").read_text("utf-8"))
# Python's publish sets no `classification` attribute or headers and subscriptions have no class
# filter, so those cases belong to the Rust suite; every other case runs here.
RUST_ONLY = ("classification", "filter_classes", "headers")
RUNNABLE = [c for c in VECTORS["cases"] if not any(k in c for k in RUST_ONLY)]


def test_most_cases_run_here() -> None:
    assert len(RUNNABLE) >= 35, len(RUNNABLE)


@pytest.mark.parametrize("case", RUNNABLE, ids=[c["name"] for c in RUNNABLE])
async def test_masking_vector(case: dict[str, Any], tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(VECTORS["policies"][case["policy"]]), "utf-8")
    ring = tmp_path / "ring.json"
    ring.write_text(json.dumps(VECTORS["key_ring"]), "utf-8")
    bus = await busbar.connect(
        policy=str(policy), key_ring=str(ring), principal="vectors", roles=",".join(case["roles"])
    )
    async with bus:
        pattern = case.get("pattern", case["subject"])
        if case["outcome"] == "forbidden":
            with pytest.raises(busbar.Forbidden) as err:
                await bus.subscribe(pattern)
            assert err.value.code == "forbidden"
            return
        sub = await bus.subscribe(pattern)
        # `input` is a JSON value (a string too), `input_text` raw text.
        if "input_text" in case:
            await bus.publish(case["subject"], case["input_text"])
        else:
            await bus.publish(
                case["subject"], json.dumps(case["input"], ensure_ascii=False).encode()
            )
        if case["outcome"] == "withheld":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sub.__anext__(), 0.2)
            return
        assert case["outcome"] == "delivered", case["outcome"]
        msg = await asyncio.wait_for(sub.__anext__(), 2.0)
        if "delivered_text" in case:
            assert msg.data.decode() == case["delivered_text"]
        else:
            assert json.loads(msg.data) == case["delivered"]
