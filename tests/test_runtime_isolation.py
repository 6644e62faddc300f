"""`runtime` needs numpy (and later onnxruntime) only: with the training stack made unimportable it
still imports, scores a Bhattacharyya cost and computes features, and pulls none of it in."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

BLOCKED = ("torch", "sklearn", "scipy", "statsmodels", "training", "export")

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = {blocked!r}

    class Blocker:
        # A meta-path finder that refuses the training stack, as if it were not installed.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for this test: {{name}}")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import numpy as np
    import runtime
    from runtime import BhattacharyyaCostFunction, FeatureExtractor, load_cost_function

    t = 1.6e9 + 0.04 * np.arange(40)
    a = {{"_id": "a", "timestamp": t.tolist(), "x_position": (100 + 60 * (t - t[0])).tolist(),
         "y_position": [12.0] * 40, "direction": 1}}
    tb = t + 2.0
    b = {{"_id": "b", "timestamp": tb.tolist(), "x_position": (100 + 60 * (tb - t[0])).tolist(),
         "y_position": [12.0] * 40, "direction": 1}}
    cost = load_cost_function({{"type": "bhattacharyya"}}).compute_cost(a, b, 15, None)
    assert 0 < cost < 1, cost
    assert BhattacharyyaCostFunction().compute_costs([a, a], b, 15, None).shape == (2,)
    for schema in ("i24-47-v1", "i24-47-v2"):
        assert np.isfinite(FeatureExtractor(schema).pair(a, b)).all()
        assert FeatureExtractor(schema).batch([a, a], b).shape == (2, 47)
    loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("isolated ok")
    """
)


def test_runtime_imports_and_runs_without_the_training_stack():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=BLOCKED)], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "isolated ok" in result.stdout


def test_blocker_really_blocks():
    # The finder must make a blocked module unimportable, or the test above proves nothing.
    probe = SCRIPT.split("import numpy as np")[0] + "import sklearn\n"
    result = subprocess.run([sys.executable, "-c", probe.format(blocked=BLOCKED)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "blocked for this test: sklearn" in result.stderr
