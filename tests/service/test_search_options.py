"""The pieces behind search options and items, against brute force: which positions a label
filter admits (both counting paths, empty rows, one class per item), the filter typed by the
index's labels, the rounds of positions through appends and compactions, and the live ids
and recent deletes a worker keeps."""

from __future__ import annotations

import numpy as np
import pytest

from hashstream.service.errors import InvalidInput
from hashstream.service.item_labels import ItemLabels
from hashstream.service.live_items import LiveItems
from hashstream.service.search_options import SearchOptions
from hashstream.service.segment_rounds import SegmentRounds
from hashstream.solver.class_lists import ClassLists
from hashstream.store.item_deletes import DeleteEntry

C = 12


def random_lists(rng: np.random.Generator, n: int, most: int) -> list[list[int]]:
    return [sorted(rng.choice(C, rng.integers(0, most + 1), replace=False).tolist())
            for _ in range(n)]


@pytest.mark.parametrize("most", [1, 4])  # one class each (no CSR) and multi-label with []
@pytest.mark.parametrize("seed", range(4))
def test_admits_equals_brute_force(seed: int, most: int) -> None:
    rng = np.random.default_rng(seed)
    rows = random_lists(rng, 3000, most)
    if most == 1:
        rows = [r or [0] for r in rows]
    labels = ItemLabels()
    labels.append(ClassLists.from_lists(rows[:1000], C))
    labels.append(ClassLists.from_lists(rows[1000:], C))
    view = labels.view()
    for any_of, all_of in (([3], None), (list(range(9)), None), (None, [2, 5]), ([1, 2], [4]),
                           (None, [7]), ([], None), (None, [-1])):
        got = view.admits(None if any_of is None else np.asarray(any_of, np.int64),
                          None if all_of is None else np.asarray(all_of, np.int64), C)
        want = [(any_of is None or bool(set(any_of) & set(r)))
                and (all_of is None or set(all_of) <= set(r)) for r in rows]
        assert got.tolist() == want, (any_of, all_of)


def test_filters_take_the_index_label_type() -> None:
    numbers: dict[int | str, int] = {3: 0, 5: 1, 7: 2}
    flt = SearchOptions.from_query("3,5,99", "7").class_filter("int", numbers)
    assert flt is not None and flt.any_of is not None and flt.all_of is not None
    assert flt.any_of.tolist() == [0, 1] and flt.all_of.tolist() == [2]
    unknown = SearchOptions(labels_all=(3, 99)).class_filter("int", numbers)
    assert unknown is not None and unknown.all_of is not None and -1 in unknown.all_of
    assert SearchOptions(max_distance=3).class_filter("int", numbers) is None
    for options, field in ((SearchOptions(labels_any=("3",)), "labels_any"),
                           (SearchOptions.from_query(labels_all="x"), "labels_all"),
                           (SearchOptions(labels_any=(True,)), "labels_any")):
        with pytest.raises(InvalidInput) as bad:
            options.class_filter("int", numbers)
        assert bad.value.field == field
    with pytest.raises(InvalidInput):
        SearchOptions(labels_any=(3,)).class_filter("str", {"3": 0})
    with pytest.raises(InvalidInput) as bad:
        SearchOptions(max_distance=-1)
    assert bad.value.field == "max_distance"
    with pytest.raises(InvalidInput):
        SearchOptions.from_query(labels_any="1,,2")
    hits = [{"distance": d} for d in (0, 2, 2, 5)]
    assert SearchOptions(max_distance=2).within_radius(hits) == hits[:3]


def test_rounds_of_positions_through_appends_and_compaction() -> None:
    rounds = SegmentRounds().appended(0, 1, 1).appended(4, 2, 1).appended(4, 3, 2)
    rounds = rounds.appended(9, 4, 2)  # round 2 stored nothing (all its rows cancelled)
    pos = np.arange(12)
    want = [1] * 4 + [3] * 5 + [4] * 3
    assert rounds.round_at(pos).tolist() == want
    assert rounds.model_version_at(pos).tolist() == [1] * 4 + [2] * 8
    kept = np.asarray([0, 3, 5, 10, 11])  # a compaction kept these, in order
    assert rounds.compacted(kept).round_at(np.arange(5)).tolist() == [want[k] for k in kept]


def test_live_items_track_adds_and_deletes_like_a_set() -> None:
    rng = np.random.default_rng(0)
    live, ref = LiveItems(), set()
    for step in range(200):
        ids = rng.integers(0, 400, rng.integers(0, 40))
        assert live.count_with(ids) == len(ref | set(ids.tolist()))
        live.add(ids)
        ref |= set(ids.tolist())
        gone = rng.choice(sorted(ref), min(len(ref), int(rng.integers(0, 10))), replace=False)
        live.apply(DeleteEntry(step + 1, 1, (step, 0), np.asarray(gone, np.int64)), (50, 0))
        ref -= set(gone.tolist())
        assert live.ids.tolist() == sorted(ref) and live.epoch == step + 1
    # deletes at stream positions (50, 0) on are remembered, for the chunks accepted before
    remembered = dict(live.recent)
    assert remembered and all(at >= (50, 0) for at in remembered.values())
    item, at = next(iter(remembered.items()))
    rows = live.cancelled(np.asarray([item, item, 10_000]), [at, (at[0] + 1, 0), (0, 0)])
    assert rows.tolist() == [True, False, False]  # accepted up to the delete: cancelled
    live.forget_before((150, 0))
    assert all(at >= (150, 0) for at in live.recent.values())
    live.forget_before(None)  # nothing queued: nothing can predate a delete
    assert live.recent == {}
