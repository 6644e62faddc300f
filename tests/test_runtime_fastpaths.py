"""The runtime's fast paths give the same values as the definitions they shortcut."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.features import FEATURE_NAMES, SCHEMA_V1, SCHEMA_V2, FeatureExtractor
from runtime.fragment import Fragment, fragment_key


def _doc(fid, t0, n=40, x0=100.0, speed=60.0, direction=1, seed=0):
    rng = np.random.default_rng(seed)
    t = t0 + 0.04 * np.arange(n) + rng.normal(0, 1e-3, n)
    return {"_id": fid, "timestamp": t.tolist(),
            "x_position": (x0 + direction * speed * (t - t0) + rng.normal(0, 0.3, n)).tolist(),
            "y_position": (12.0 + rng.normal(0, 0.1, n)).tolist(), "direction": direction,
            "velocity": np.full(n, speed).tolist(), "length": 15.0, "width": 6.0}


@pytest.mark.parametrize("schema", [SCHEMA_V1, SCHEMA_V2])
def test_summarize_fragment_equals_summarize(schema):
    doc = _doc("a", 1000.0)
    extractor = FeatureExtractor(schema)
    cached, direct = extractor.summarize(doc), extractor.summarize_fragment(Fragment.from_document(doc))
    b = extractor.summarize(_doc("b", 1002.0, x0=230.0))
    np.testing.assert_array_equal(extractor.pair_from_summaries(cached, b), extractor.pair_from_summaries(direct, b))


def test_fragment_key_fast_path_equals_the_general_path():
    doc = _doc("a", 1000.0)
    general = dict(doc, timestamp=tuple(doc["timestamp"]))  # a tuple takes the general path
    assert fragment_key(doc) == fragment_key(general) == ("a", 40, doc["timestamp"][-1])


def test_v2_batch_equals_pairs_bit_for_bit_outside_logs_and_exps():
    # Everything but the Bhattacharyya block (numpy's log/exp vs libm's) follows the single-pair arithmetic.
    extractor = FeatureExtractor(SCHEMA_V2)
    b = _doc("b", 1003.0, x0=280.0, seed=1)
    docs_a = [_doc(f"a{i}", 1000.0 - 0.3 * i, n=n, x0=100.0 - 5 * i, seed=i + 2)
              for i, n in enumerate((1, 2, 3, 25, 40, 80))]
    docs_a.append(_doc("w", 1000.0, direction=-1, x0=400.0))
    batch = extractor.batch(docs_a, b)
    pairs = np.stack([extractor.pair(a, b) for a in docs_a])
    exact = [i for i, n in enumerate(FEATURE_NAMES) if not n.startswith("bhattacharyya")]
    np.testing.assert_array_equal(batch[:, exact], pairs[:, exact])
    np.testing.assert_allclose(batch, pairs, rtol=1e-13, atol=0)
