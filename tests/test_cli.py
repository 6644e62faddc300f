"""The console scripts: -h/--help and --version everywhere, the one-line message without the [train] extra,
and bad input refused before anything is loaded or written (no half-made run folder)."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from click.testing import CliRunner

import i24_commands
from runtime import __version__

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scripts() -> dict[str, str]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]["scripts"]


def test_every_console_script_goes_through_the_launcher_or_is_pp_lite():
    table = scripts()
    assert table.pop("pp-lite") == "pp_lite:main"
    assert set(table) == set(i24_commands.COMMANDS)
    for name, target in table.items():
        attr = target.split(":")[1]
        assert target == f"i24_commands:{attr}" and getattr(i24_commands, attr).__name__ == attr


@pytest.mark.parametrize("name", sorted(i24_commands.COMMANDS))
def test_help_and_version_everywhere(name, capsys):
    for flag in ("-h", "--help", "--version"):
        with pytest.raises(SystemExit) as info:
            i24_commands.launch(name, [flag])
        out = capsys.readouterr().out
        assert info.value.code in (0, None), (name, flag)
        if flag == "--version":
            assert __version__ in out and name in out
        else:
            assert "Usage:" in out and name in out


def test_launcher_without_the_training_extra_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(i24_commands, "missing_modules", lambda names=(): ["click", "torch"])
    for name in i24_commands.COMMANDS:
        assert i24_commands.launch(name, ["--help"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"{name}: this command needs the training extra: pip install 'i24-stitch-costs[train]' "
                       "(missing: click, torch)"]
    assert i24_commands.launch("train-lr", ["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"train-lr, version {__version__}"


def test_commands_and_packages_with_the_extra_blocked_in_a_real_process(tmp_path):
    """A fresh interpreter where click and torch cannot be imported (as on the base install)."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('click', 'torch'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import i24_commands\n"
        "for pkg in ('training', 'export'):\n"
        "    try:\n"
        "        __import__(pkg)\n"
        "    except ImportError as exc:\n"
        "        print('IMPORT', exc)\n"
        "sys.exit(i24_commands.launch('export-onnx', ['--help']))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip() == ("export-onnx: this command needs the training extra: pip install "
                                  "'i24-stitch-costs[train]' (missing: click, torch)")
    lines = res.stdout.strip().splitlines()
    assert lines == ["IMPORT the 'training' package needs the training extra: pip install 'i24-stitch-costs[train]' "
                     "(missing: torch, click)",
                     "IMPORT the 'export' package needs the training extra: pip install 'i24-stitch-costs[train]' "
                     "(missing: torch)"]


# ---- bad input: refused before anything is loaded or written ---------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Any call that would load data or train fails the test."""
    import training.train

    def boom(*args, **kwargs):
        raise AssertionError("train_run was called: the input should have been refused before")

    monkeypatch.setattr(training.train, "train_run", boom)


def invoke(command, args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(command, args)
    finally:
        os.chdir(old)


def test_model_config_unknown_key_lists_the_valid_keys(no_training, tmp_path):
    from training.cli import train_mlp, train_tcn

    res = invoke(train_mlp, ["--model-config", '{"hiddn": 3}', "--cache", str(tmp_path / "data")], tmp_path)
    assert res.exit_code == 2
    assert "unknown key(s) 'hiddn' for mlp; valid keys: n_features, hidden, dropout" in res.output
    assert "Traceback" not in res.output and os.listdir(tmp_path) == []
    res = invoke(train_mlp, ["--model-config", '{"hidden": 3}'], tmp_path)
    assert res.exit_code == 2 and "hidden must be a list of integers (default [128, 64, 32]), got 3" in res.output
    res = invoke(train_tcn, ["--model-config", '{"head_dropout": "high"}'], tmp_path)
    assert res.exit_code == 2 and "head_dropout must be a number" in res.output
    res = invoke(train_tcn, ["--model-config", "[1, 2]"], tmp_path)
    assert res.exit_code == 2 and "must be a JSON object" in res.output
    res = invoke(train_tcn, ["--model-config", "{nope"], tmp_path)
    assert res.exit_code == 2 and "not valid JSON" in res.output
    assert os.listdir(tmp_path) == []  # no runs/, no data/


def test_model_config_valid_values_pass_through():
    from training.cli import validate_model_config

    assert validate_model_config("mlp", {"hidden": [8, 4], "dropout": 0}) == {"hidden": (8, 4), "dropout": 0}
    with pytest.raises(ValueError, match="n_features must be an integer"):
        validate_model_config("mlp", {"n_features": 4.5})


def test_lr_features_and_presets_are_checked_first(no_training, tmp_path):
    from training.cli import train_lr

    res = invoke(train_lr, ["--features", "bogus_feature,y_diff"], tmp_path)
    assert res.exit_code == 2
    assert "unknown feature name(s) bogus_feature; valid names: time_gap," in res.output and "consensus" in res.output
    res = invoke(train_lr, ["--presets", "i,iv"], tmp_path)
    assert res.exit_code == 2 and "unknown preset(s) 'iv'; valid presets: i, ii, iii" in res.output
    assert os.listdir(tmp_path) == []


def test_a_run_that_fails_after_creating_its_folder_removes_it(tmp_path):
    from training.cli import train_lr

    (tmp_path / "empty").mkdir()
    res = invoke(train_lr, ["--data", "empty", "--out", "runs/lr", "--quiet"], tmp_path)
    assert res.exit_code == 1 and "RAW_i.json not found" in res.output
    assert not (tmp_path / "runs" / "lr").exists()
    # with --data the presets name RAW_{s}.json files: any name passes the check (and the file is looked for)
    res = invoke(train_lr, ["--data", "empty", "--presets", "site7", "--out", "runs/x", "--quiet"], tmp_path)
    assert res.exit_code == 1 and "RAW_site7.json not found" in res.output
    assert not (tmp_path / "runs" / "x").exists()
    # a folder that existed before is left alone
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "old" / "keep.txt").write_text("x")
    res = invoke(train_lr, ["--data", "empty", "--out", "runs/old", "--quiet"], tmp_path)
    assert res.exit_code == 1 and (tmp_path / "runs" / "old" / "keep.txt").read_text() == "x"


def test_an_interrupted_run_with_resume_state_is_kept(tmp_path, monkeypatch):
    import training.train
    from training.cli import train_mlp

    def interrupted(kind, run_dir, *args, **kwargs):
        os.makedirs(run_dir)
        with open(os.path.join(run_dir, "dataset.json"), "w") as fh:
            fh.write("{}")
        if kwargs.get("seed") == 1:  # killed during the first epoch: no resume state yet
            raise KeyboardInterrupt
        with open(os.path.join(run_dir, "last.pt"), "wb") as fh:
            fh.write(b"state")
        raise KeyboardInterrupt

    monkeypatch.setattr(training.train, "train_run", interrupted)
    res = invoke(train_mlp, ["--out", "runs/a", "--seed", "1"], tmp_path)
    assert isinstance(res.exception, KeyboardInterrupt) or res.exit_code == 1
    assert not (tmp_path / "runs" / "a").exists()
    res = invoke(train_mlp, ["--out", "runs/b", "--seed", "2"], tmp_path)
    assert (tmp_path / "runs" / "b" / "last.pt").is_file() and "kept" in res.output
