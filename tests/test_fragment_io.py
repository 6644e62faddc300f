"""Fragment validation (each bad case gets its specific message) and I-24 JSON round trips."""
import json
import math
import warnings

import numpy as np
import pytest

from runtime.cache import FragmentCache
from runtime.fragment import Fragment, FragmentError, fragment_id, fragment_key
from training.io import InvalidDocumentsWarning, gt_id_of, load_fragments, save_fragments


def make_doc(n=10, oid="64a1b2c3d4e5f60718293a4b", direction=1, t0=1623877175.0, **over):
    sign = direction if direction in (1, -1) else 1  # bad directions still get well-formed arrays
    t = [t0 + 0.04 * k for k in range(n)]
    doc = {
        "_id": {"$oid": oid},
        "timestamp": t,
        "x_position": [100.0 + sign * 3.0 * k for k in range(n)],
        "y_position": [12.0] * n,
        "length": [15.0] * n,
        "width": [6.0] * n,
        "height": [5.0] * n,
        "velocity": [75.0] * n,
        "detection_confidence": [0.9] * n,
        "direction": direction,
        "first_timestamp": t[0],
        "last_timestamp": t[-1],
        "starting_x": 100.0,
        "ending_x": 100.0 + sign * 3.0 * (n - 1),
        "compute_node_id": 1,
        "gt_ids": [[{"$oid": "gt-vehicle-1"}]],
    }
    doc.update(over)
    return doc


def test_good_document_converts_to_contiguous_arrays():
    frag = Fragment.from_document(make_doc())
    assert frag.id == "64a1b2c3d4e5f60718293a4b"
    assert frag.n == 10 and frag.direction == 1
    assert frag.t.dtype == np.float64 and frag.t.flags.c_contiguous
    assert frag.velocity is not None and frag.confidence is not None


def test_both_id_forms_are_accepted():
    assert fragment_id(make_doc()) == "64a1b2c3d4e5f60718293a4b"
    assert fragment_id(make_doc(_id="plain-id")) == "plain-id"
    assert Fragment.from_document(make_doc(_id="ünïcode-id")).id == "ünïcode-id"


@pytest.mark.parametrize("field, value, message", [
    ("timestamp", [], "empty array"),
    ("timestamp", "not an array", "expected an array"),
    ("x_position", [1.0, 2.0], "length 2 != timestamp length 10"),
    ("y_position", [12.0] * 9 + [float("nan")], "non-finite value nan at sample 9"),
    ("x_position", [1.0] * 9 + [float("inf")], "non-finite value inf"),
    ("direction", 0, "must be +1 (EB) or -1 (WB)"),
    ("direction", 2, "must be +1 (EB) or -1 (WB)"),
    ("direction", "1", "must be +1 (EB) or -1 (WB)"),
    ("length", [15.0] * 3, "length 3 != timestamp length 10"),
    ("width", -1.0, "must be positive"),
    ("x_position", ["a"] * 10, "non-numeric"),
])
def test_bad_field_is_named_with_the_fragment_id(field, value, message):
    with pytest.raises(FragmentError) as err:
        Fragment.from_document(make_doc(**{field: value}), index=7)
    text = str(err.value)
    assert "64a1b2c3d4e5f60718293a4b" in text
    assert f"field '{field}'" in text
    assert "document 7" in text
    assert message in text
    assert err.value.field == field


@pytest.mark.parametrize("missing", ["timestamp", "x_position", "y_position", "direction"])
def test_missing_required_key(missing):
    doc = make_doc()
    del doc[missing]
    with pytest.raises(FragmentError, match=f"field '{missing}': missing"):
        Fragment.from_document(doc)


def test_missing_id():
    doc = make_doc()
    del doc["_id"]
    with pytest.raises(FragmentError, match="field '_id': missing"):
        Fragment.from_document(doc)


@pytest.mark.parametrize("times, kind", [([0.0, 0.04, 0.04, 0.12], "duplicate"), ([0.0, 0.08, 0.04, 0.12], "decreasing")])
def test_timestamps_must_strictly_increase(times, kind):
    doc = make_doc(n=4)
    doc["timestamp"] = [1623877175.0 + t for t in times]
    with pytest.raises(FragmentError, match=f"not strictly increasing \\({kind}"):
        Fragment.from_document(doc)


def test_mismatched_velocity_and_confidence_are_treated_as_absent():
    # the I-24 pipeline resamples positions but not these two (REFERENCE.md §7.3)
    frag = Fragment.from_document(make_doc(velocity=[70.0] * 4, detection_confidence=[0.5] * 3))
    assert frag.velocity is None and frag.confidence is None


def test_scalar_dimensions_broadcast():
    frag = Fragment.from_document(make_doc(length=16.5, width=6.2, height=None))
    assert frag.length.shape == (10,) and frag.length[0] == 16.5
    assert frag.height is None


FRAGMENT_ARRAYS = ("t", "x", "y", "length", "width", "height", "velocity", "confidence")


@pytest.mark.parametrize("over", [
    {},
    {"length": 16.5, "width": 6.2, "height": None},           # scalar and absent dimensions
    {"velocity": [70.0] * 4, "detection_confidence": None},   # mismatched speed: absent
    {"velocity": 75.0, "width": [6.0] * 3 + [6.5] * 7},       # scalar speed carries nothing
    {"timestamp": [1623877175 + k for k in range(10)]},       # integers
])
def test_batched_conversion_equals_field_by_field(over):
    # A plain dict of lists takes the one-conversion path; any other Mapping the field-by-field one.
    from types import MappingProxyType
    doc = make_doc(**over)
    fast, slow = Fragment.from_document(doc), Fragment.from_document(MappingProxyType(doc))
    for name in FRAGMENT_ARRAYS:
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == np.float64 and a.flags.c_contiguous and np.array_equal(a, b), name
    assert np.array_equal(fast.xy, np.stack((fast.x, fast.y))) and np.array_equal(slow.xy, fast.xy)


@pytest.mark.parametrize("field, value, message", [
    ("velocity", [75.0] * 9 + [float("nan")], "non-finite value nan at sample 9"),
    ("detection_confidence", [0.9] * 9 + [float("inf")], "non-finite value inf"),
    ("length", [15.0] * 9 + [0.0], "must be positive"),
    ("height", [5.0] * 9 + [-1.0], "must be positive"),
    ("timestamp", [1623877175.0 + 0.04 * k for k in range(9)] + [1623877175.0], "not strictly increasing"),
    ("y_position", [12.0] * 9 + ["x"], "non-numeric"),
])
def test_batched_conversion_still_names_the_bad_field(field, value, message):
    with pytest.raises(FragmentError, match=message) as err:
        Fragment.from_document(make_doc(**{field: value}))
    assert err.value.field == field and err.value.fragment_id == "64a1b2c3d4e5f60718293a4b"


def test_fragment_key_changes_when_a_fragment_grows():
    assert fragment_key(make_doc(n=10)) != fragment_key(make_doc(n=11))
    assert fragment_key(make_doc(n=10)) == fragment_key(make_doc(n=10))


def test_cache_is_bounded_lru_and_counts():
    built = []
    cache = FragmentCache(lambda d: built.append(fragment_id(d)) or len(built), maxsize=2)
    a, b, c = make_doc(oid="a"), make_doc(oid="b"), make_doc(oid="c")
    cache.get(a), cache.get(b), cache.get(a)          # a is now most recent
    cache.get(c)                                       # evicts b
    assert len(cache) == 2 and cache.hits == 1 and cache.misses == 3
    cache.get(b)
    assert built == ["a", "b", "c", "b"]


def test_gt_id_of_reads_majority_vehicle():
    assert gt_id_of(make_doc()) == "gt-vehicle-1"
    assert gt_id_of(make_doc(gt_ids=[])) is None
    assert gt_id_of({"_source_gt_id": "v9"}) == "v9"


def test_round_trip_save_load(tmp_path):
    docs = [make_doc(oid=f"id{k}", t0=1623877175.0 + k) for k in range(5)]
    path = tmp_path / "RAW_i.json"
    save_fragments(path, docs)
    assert load_fragments(path) == json.loads(json.dumps(docs))
    assert not list(tmp_path.glob(".tmp-*")), "no temporary file left behind"


def test_load_raises_or_skips_invalid_documents(tmp_path):
    docs = [make_doc(oid="good"), make_doc(oid="bad", direction=0), make_doc(oid="good2")]
    path = tmp_path / "RAW_ii.json"
    path.write_text(json.dumps(docs))
    with pytest.raises(FragmentError, match="'bad' \\(document 1\\): field 'direction'"):
        load_fragments(path)
    skipped = []
    with pytest.warns(InvalidDocumentsWarning, match="skipped 1 invalid document"):
        kept = load_fragments(path, on_invalid="skip", skipped=skipped)
    assert [fragment_id(d) for d in kept] == ["good", "good2"]
    assert skipped[0].fragment_id == "bad" and skipped[0].field == "direction"


def test_save_refuses_invalid_and_leaves_old_file(tmp_path):
    path = tmp_path / "GT_i.json"
    save_fragments(path, [make_doc(oid="old")])
    with pytest.raises(FragmentError):
        save_fragments(path, [make_doc(oid="new", x_position=[1.0])])
    assert fragment_id(load_fragments(path)[0]) == "old"
