"""Flower's ids are unsigned 64-bit; BSON's integers are signed. Found by the
compose install's test against a real MongoDB wire server (SecantusDB): a job
failed with "MongoDB can only handle up to 8-byte ints" when a learner's node
id was above 2**63 - 1."""

from __future__ import annotations

import bson
import pytest

from flops_management.store.mongo import from_bson, to_bson

NODE = 2**64 - 5  # a node id Flower can hand out


def test_bson_refuses_an_unsigned_64_bit_id_as_it_is() -> None:
    with pytest.raises(OverflowError):
        bson.encode({"node_id": NODE})


def test_wide_ids_are_stored_exactly_and_read_back_as_ints() -> None:
    doc = {
        "data": {"node_id": NODE, "round": 3, "ok": True},
        "runtime": {"nodes": {"learner-0": NODE, "learner-1": 7}},
        "ids": [NODE, -(2**63), 2**63 - 1],
        "loss": 0.25,
    }
    stored = bson.decode(bson.encode(to_bson(doc)))
    assert from_bson(stored) == doc
    assert isinstance(from_bson(stored)["data"]["node_id"], int)
    assert from_bson(stored)["data"]["ok"] is True
