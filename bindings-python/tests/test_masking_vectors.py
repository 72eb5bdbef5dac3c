"""The shared masking vectors (tests/vectors/masking.json), every case: run through a bus
that acts as a principal by configuration alone (`policy`, `key_ring`, `principal`,
`roles`), and, for a class filter, through `subscribe_as(..., classes=...)`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import busbar
from conftest import REPO

VECTORS: dict[str, Any] = json.loads((REPO / "tests/vectors/masking.json").read_text("utf-8"))
# Every case runs here: the classification attribute and headers through publish, a class
# filter through the policy call subscribe_as (docs/design.md §9).
RUNNABLE = VECTORS["cases"]


def test_every_case_runs_here() -> None:
    assert len(RUNNABLE) == len(VECTORS["cases"]) >= 58, len(RUNNABLE)


def policy_files(case: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    """The case's policy and the vectors' key ring, as files `connect` reads."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(VECTORS["policies"][case["policy"]]), "utf-8")
    ring = tmp_path / "ring.json"
    ring.write_text(json.dumps(VECTORS["key_ring"]), "utf-8")
    return str(policy), str(ring)


@pytest.mark.parametrize("case", RUNNABLE, ids=[c["name"] for c in RUNNABLE])
async def test_masking_vector(case: dict[str, Any], tmp_path: Path) -> None:
    policy, ring = policy_files(case, tmp_path)
    bus = await busbar.connect(
        policy=policy, key_ring=ring, principal="vectors", roles=",".join(case["roles"])
    )
    async with bus:
        pattern = case.get("pattern", case["subject"])
        if case["outcome"] == "forbidden":
            with pytest.raises(busbar.ForbiddenError) as err:
                await bus.subscribe(pattern)
            assert err.value.code == "forbidden"
            return
        if "filter_classes" in case:
            sub = await bus.subscribe_as(
                "vectors", pattern, roles=case["roles"], classes=case["filter_classes"]
            )
        else:
            sub = await bus.subscribe(pattern)
        attributes: dict[str, Any] = {"headers": case.get("headers")}
        if "classification" in case:
            attributes["classification"] = case["classification"]
        # `input` is a JSON value (a string too), `input_text` raw text.
        if "input_text" in case:
            await bus.publish(case["subject"], case["input_text"], **attributes)
        else:
            await bus.publish(
                case["subject"],
                json.dumps(case["input"], ensure_ascii=False).encode(),
                **attributes,
            )
        if case["outcome"] in ("withheld", "filtered"):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sub.__anext__(), 0.2)
            return
        assert case["outcome"] == "delivered", case["outcome"]
        msg = await asyncio.wait_for(sub.__anext__(), 2.0)
        if "delivered_text" in case:
            assert msg.data.decode() == case["delivered_text"]
        else:
            assert json.loads(msg.data) == case["delivered"]
        if "delivered_headers" in case:
            assert msg.headers == case["delivered_headers"]


# The same cases through a durable consumer opened as the principal: the stream stores the
# message as published, and `durable_subscribe_as` masks (or withholds) each delivery.
DURABLE = [c for c in RUNNABLE if "filter_classes" not in c]


@pytest.mark.parametrize("case", DURABLE, ids=[c["name"] for c in DURABLE])
async def test_masking_vector_durable_as(case: dict[str, Any], tmp_path: Path) -> None:
    policy, ring = policy_files(case, tmp_path)
    async with await busbar.connect(policy=policy, key_ring=ring) as bus:
        pattern = case.get("pattern", case["subject"])
        await bus.declare_stream("VECTORS", [pattern])
        if case["outcome"] == "forbidden":
            with pytest.raises(busbar.ForbiddenError):
                await bus.durable_subscribe_as(
                    "vectors", "VECTORS", "reader", roles=case["roles"], filter=pattern
                )
            return
        attributes: dict[str, Any] = {"headers": case.get("headers")}
        if "classification" in case:
            attributes["classification"] = case["classification"]
        if "input_text" in case:
            data = case["input_text"]
        else:
            data = json.dumps(case["input"], ensure_ascii=False)
        await bus.publish_durable(case["subject"], data.encode(), **attributes)
        sub = await bus.durable_subscribe_as(
            "vectors", "VECTORS", "reader", roles=case["roles"], filter=pattern
        )
        async with sub:
            if case["outcome"] in ("withheld", "filtered"):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(sub.__anext__(), 0.2)
                return
            msg = await asyncio.wait_for(sub.__anext__(), 2.0)
            await msg.ack()
            if "delivered_text" in case:
                assert msg.data.decode() == case["delivered_text"]
            else:
                assert json.loads(msg.data) == case["delivered"]


async def test_durable_subscribe_as_needs_the_policy_layer() -> None:
    async with await busbar.connect() as bus:
        with pytest.raises(busbar.InvalidArgumentError, match="needs the policy layer"):
            await bus.durable_subscribe_as("who", "S", "c")
        with pytest.raises(TypeError):
            await bus.durable_subscribe_as(5, "S", "c")  # type: ignore[arg-type]
