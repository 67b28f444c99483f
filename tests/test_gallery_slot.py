"""A run's gallery slot: a swap reaches the run and leaves no old template in memory; the end of
the run empties it (the runs themselves: tests/test_gov_reconcile.py, tests/test_node_agent.py)."""

from __future__ import annotations

import numpy as np
import pytest

from openlfr.video.galleryslot import GallerySlot
from openlfr.watchlist.gallery import Gallery


def _gallery(subjects: int, seed: int) -> Gallery:
    g = Gallery("test-model", 8)
    rng = np.random.default_rng(seed)
    g.add_many([f"s{i}" for i in range(subjects)], [f"r{i}" for i in range(subjects)],
               rng.normal(size=(subjects, 8)).astype(np.float32))
    return g


def test_a_swap_overwrites_the_old_templates_and_the_end_empties_the_slot() -> None:
    first = _gallery(3, 1)
    slot = GallerySlot(first, {"s0": "Case 0"})
    assert slot.size() == (3, 3)
    second = _gallery(2, 2)
    assert slot.replace(second, {"s0": "Case 0"}) == (3, 3)
    assert len(first) == 0 and slot.size() == (2, 2)  # no old template left in memory
    assert slot.replace(second, {}) == (2, 2) and len(second) == 2  # the same: kept
    slot.empty()
    assert slot.held() is None and slot.size() == (0, 0) and len(second) == 0
    with pytest.raises(RuntimeError, match="no gallery"):
        slot.attach(lambda g, n: [])


def test_an_empty_slot_is_filled_once() -> None:
    slot = GallerySlot()
    loads: list[int] = []

    def load() -> tuple[Gallery, dict[str, str]]:
        loads.append(1)
        return _gallery(1, 3), {"s0": "Case 0"}
    held = slot.fill(load)
    assert slot.fill(load) is held and loads == [1]
    made = slot.attach(lambda g, n: [(n["s0"], None)])  # type: ignore[list-item]
    assert made == [("Case 0", None)]
