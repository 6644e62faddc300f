"""Packaging: the version, and a real base-only install (numpy + onnxruntime, no extras) in a fresh venv,
used from another folder: pp-lite stitches with a shipped model, the training commands say what to install,
and `pip install .` leaves the source tree clean."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

import runtime
from runtime import version as runtime_version

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".venv", "data", "runs", "artifacts_demo", "out", "build", "dist", "__pycache__",
             ".pytest_cache", ".hypothesis"}


def pyproject() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


def test_version_is_the_package_version():
    declared = pyproject()["project"]["version"]
    assert runtime_version._SOURCE_VERSION == declared
    assert runtime.__version__ == declared


def test_license_changelog_and_py_typed_are_there():
    with open(os.path.join(REPO, "LICENSE")) as fh:
        text = fh.read()
    assert text.startswith("MIT License") and "2026 the i24-stitch-costs authors" in text
    with open(os.path.join(REPO, "CHANGELOG.md")) as fh:
        log = fh.read()
    assert "## [Unreleased]" in log and f"## [{runtime.__version__}]" in log
    assert os.path.isfile(os.path.join(REPO, "runtime", "py.typed"))


def _copy_tree(dest: str) -> None:
    """The working tree as a clone would have it (tracked and not-ignored files), without build outputs."""
    if os.path.isdir(os.path.join(REPO, ".git")) and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout.decode()
        for rel in filter(None, out.split("\0")):
            src = os.path.join(REPO, rel)
            if not os.path.isfile(src) or rel.split("/")[0] in SKIP_DIRS:
                continue
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    else:
        shutil.copytree(REPO, dest, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")])


@pytest.mark.slow
def test_base_install_in_a_fresh_venv_used_from_another_folder(tmp_path):
    simulate = pytest.importorskip("training.simulate")
    src, venv, elsewhere = tmp_path / "src", tmp_path / "venv", tmp_path / "elsewhere"
    _copy_tree(str(src))
    before = sorted(os.listdir(src))
    # a bare venv; this interpreter's pip installs into it (`pip --python`), which skips ensurepip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet",
                          "--no-compile", "--disable-pip-version-check", str(src)], cwd=str(src), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    # the in-tree build left nothing behind (no build/, no *.egg-info)
    assert sorted(os.listdir(src)) == before

    elsewhere.mkdir()
    simulate.write_scenario("ii", 7, elsewhere, duration=15)
    raw = elsewhere / "my fragments.json"
    os.replace(elsewhere / "RAW_ii.json", raw)

    def run(*args):
        return subprocess.run([str(a) for a in args], cwd=str(elsewhere), env=env, capture_output=True, text=True,
                              timeout=300)

    # only numpy + onnxruntime (and their own dependencies) came with it
    res = run(bin_dir / "python", "-c", "import importlib.util as u; print([m for m in ('click', 'torch', 'sklearn', "
              "'onnx', 'matplotlib') if u.find_spec(m)])")
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
    # the stitching command, a shipped model by its shorthand, from a folder with no artifacts/
    res = run(bin_dir / "pp-lite", "--raw", raw, "--cost", "tcn", "--out", "rec.json", "--quiet")
    assert res.returncode == 0, res.stderr
    meta = json.loads((elsewhere / "rec.meta.json").read_text())
    site = os.path.join("site-packages", "runtime", "artifacts", "tcn")
    assert meta["cost_function"]["model"] == "tcn" and meta["cost_function"]["artifact"].endswith(site)
    assert meta["trajectories_out"] > 0
    res = run(bin_dir / "pp-lite", "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"pp-lite {runtime.__version__}"
    res = run(bin_dir / "python", "-c", "import os, runtime; print(runtime.__version__, "
              "os.path.isfile(os.path.join(os.path.dirname(runtime.__file__), 'py.typed')))")
    assert res.stdout.split() == [runtime.__version__, "True"], res.stderr
    # every other command: one line saying what to install, exit 1, no traceback
    for name in ("train-lr", "train-mlp", "export-onnx", "evaluate", "simulate-scenario", "runs", "tune", "promote"):
        res = run(bin_dir / name, "--help")
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1, (name, res.stderr)
        assert lines[0].startswith(f"{name}: this command needs the training extra: "
                                   "pip install 'i24-stitch-costs[train]'")
    # importing the training package says the same in one line
    res = run(bin_dir / "python", "-c", "import training")
    assert res.returncode == 1 and "ImportError: the 'training' package needs the training extra" in res.stderr
