"""The training loop: determinism, bit-exact resume, atomic and checked checkpoints, metrics."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

from sw import train as train_mod
from sw.models import build_model
from sw.train import (
    CHECKPOINT_NAME, CHECKPOINT_VERSION, METRICS_NAME, CheckpointError, TrainConfig, evaluate,
    load_checkpoint, noise_seed, save_checkpoint, seal_checkpoint, train,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TIMING_KEYS = {"seconds", "samples_per_s"}


def tiny(out, **kw) -> TrainConfig:
    """A run of a couple of seconds: narrow digits network, a slice of the data."""
    base = dict(dataset="digits", bits=(1, 2, 6), width=0.25, epochs=3, batch_size=32,
                train_limit=96, test_limit=48, seed=3, out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def quiet(cfg, **kw):
    return train(cfg, progress=False, log=lambda *a: None, **kw)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


class Crash(Exception):
    pass


# --------------------------------------------------------------------------- determinism and resume

def test_same_seed_gives_identical_weights(tmp_path):
    a = quiet(tiny(tmp_path / "a"))
    b = quiet(tiny(tmp_path / "b"))
    assert_same_state(a.model.state_dict(), b.model.state_dict())
    assert without_timing(a.history) == without_timing(b.history)
    c = quiet(tiny(tmp_path / "c", seed=4, epochs=1))
    assert not torch.equal(a.model.blocks[1].product.weight, c.model.blocks[1].product.weight)


@pytest.mark.parametrize("bits,schedule", [((1, 2, 6), "cosine"), ((32, 32, 32), "step")])
def test_resume_is_bit_exact(tmp_path, bits, schedule):
    straight = quiet(tiny(tmp_path / "straight", bits=bits, schedule=schedule))

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        quiet(tiny(tmp_path / "split", bits=bits, schedule=schedule), on_epoch_end=stop_after_first)
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)["epoch"] == 1
    resumed = quiet(tiny(tmp_path / "split", bits=bits, schedule=schedule, resume=True))

    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert without_timing(straight.history) == without_timing(resumed.history)
    a = load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    for key in ("torch_rng", "shuffle_rng"):
        assert torch.equal(a[key], b[key])
    assert a["noise"] == b["noise"] and a["epoch"] == b["epoch"] == 3
    assert a["scheduler"] == b["scheduler"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][name], sb[k][name])


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    first = quiet(tiny(tmp_path, epochs=1))
    again = quiet(tiny(tmp_path, epochs=1, resume=True))
    assert_same_state(first.model.state_dict(), again.model.state_dict())
    assert without_timing(again.history) == without_timing(first.history)


def test_resume_without_checkpoint_starts_afresh(tmp_path):
    lines = []
    result = train(tiny(tmp_path, epochs=1, resume=True), progress=False, log=lines.append)
    assert len(result.history) == 1
    assert any("starting afresh" in line for line in lines)


# --------------------------------------------------------------------------- atomic checkpoints

def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    straight = quiet(tiny(tmp_path / "straight"))
    tmp_path = tmp_path / "crashed"
    cfg = tiny(tmp_path)
    real_save = torch.save
    calls = []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # epoch 2: write some bytes, then "the disk fills up"
            f.write(b"PK\x03\x04 partial checkpoint bytes")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        quiet(cfg)
    monkeypatch.setattr(torch, "save", real_save)

    path = tmp_path / CHECKPOINT_NAME
    assert load_checkpoint(path, cfg)["epoch"] == 1          # the epoch-1 checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["config.json", CHECKPOINT_NAME, METRICS_NAME])
    # metrics.jsonl already has epoch 2's row; resuming drops it and redoes epoch 2 exactly.
    assert [json.loads(line)["epoch"] for line in (tmp_path / METRICS_NAME).read_text().splitlines()] == [1, 2]
    resumed = quiet(tiny(tmp_path, resume=True))
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    rows = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert without_timing(rows) == without_timing(straight.history)


def test_save_checkpoint_replaces_atomically(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"a": torch.ones(3)}, path)
    save_checkpoint({"a": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


# --------------------------------------------------------------------------- bad checkpoints

@pytest.fixture
def finished(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    quiet(cfg)
    return cfg, tmp_path / CHECKPOINT_NAME


def resume_expecting(cfg, path, *patterns):
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as info:
        quiet(TrainConfig(**{**cfg.to_dict(), "bits": tuple(cfg.bits), "resume": True}))
    message = str(info.value)
    assert str(path) in message
    for pattern in patterns:
        assert pattern in message, message
    assert path.read_bytes() == before, "a bad checkpoint must be left untouched"
    return message


def test_truncated_checkpoint(finished):
    cfg, path = finished
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    resume_expecting(cfg, path, "unreadable checkpoint")


def test_garbage_checkpoint(finished):
    cfg, path = finished
    path.write_bytes(b"not a checkpoint at all")
    resume_expecting(cfg, path, "unreadable")


def test_foreign_checkpoint(finished):
    cfg, path = finished
    torch.save({"state_dict": {}}, path)
    resume_expecting(cfg, path, "not a dorefa-hw training checkpoint")


def test_unknown_version(finished):
    cfg, path = finished
    state = torch.load(path, weights_only=True)
    state["version"] = CHECKPOINT_VERSION + 98
    torch.save(state, path)
    resume_expecting(cfg, path, f"version {CHECKPOINT_VERSION + 98}", f"reads versions 1, {CHECKPOINT_VERSION}")


def test_incompatible_checkpoint(finished):
    cfg, path = finished
    other = TrainConfig(**{**cfg.to_dict(), "bits": (1, 1, 2)})
    message = resume_expecting(other, path, "different run", "bits [1, 2, 6] in the checkpoint, [1, 1, 2] requested")
    assert "width" not in message
    resume_expecting(TrainConfig(**{**cfg.to_dict(), "model": "svhn-D"}), path, "model 'digits'")


def test_checkpoint_whose_tensors_do_not_fit(finished):
    cfg, path = finished
    state = torch.load(path, weights_only=True)
    state["model"] = build_model("digits", (1, 2, 6), width=0.5).state_dict()
    torch.save(seal_checkpoint(state), path)
    resume_expecting(cfg, path, "does not fit")


def test_existing_checkpoint_needs_resume_or_overwrite(finished):
    cfg, path = finished
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        quiet(cfg)
    assert path.read_bytes() == before
    fresh = quiet(TrainConfig(**{**cfg.to_dict(), "bits": (32, 32, 32), "overwrite": True}))
    assert load_checkpoint(path)["config"]["bits"] == [32, 32, 32]
    assert len(fresh.history) == 1


# --------------------------------------------------------------------------- metrics, evaluation, config

def test_metrics_jsonl(tmp_path):
    cfg = tiny(tmp_path, epochs=3, lr=2e-3, lr_min_factor=0.1)
    result = quiet(cfg)
    rows = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert rows == result.history
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds",
                "samples_per_s", "bits", "model", "dataset", "seed"} <= r.keys()
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
        assert r["train_loss"] > 0 and r["seconds"] > 0 and r["samples_per_s"] > 0
        assert r["bits"] == [1, 2, 6] and r["model"] == "digits" and r["dataset"] == "digits"
    expected = [2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * e / 3))) for e in range(3)]
    assert [r["lr"] for r in rows] == pytest.approx(expected)
    assert json.loads((tmp_path / "config.json").read_text())["bits"] == [1, 2, 6]
    assert result.test_acc == rows[-1]["test_acc"]


def test_evaluate_uses_eval_mode_and_restores_it():
    torch.manual_seed(0)
    model = build_model("digits", (1, 2, 6), width=0.25)  # no gradient noise: eval needs none
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10)
    model.train()
    before = model.blocks[1].bn.running_mean.clone()
    ev = evaluate(model, x, y, batch_size=4)
    assert model.training
    assert torch.equal(model.blocks[1].bn.running_mean, before)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert ev.accuracy == (logits.argmax(1) == y).sum().item() / 10
    assert ev.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


@pytest.mark.parametrize("kw,pattern", [
    ({"bits": (1, 2, 9)}, "G must be one of 1..8 or 32"),
    ({"bits": "1,2"}, "W,A,G"),
    ({"model": "resnet"}, "unknown model 'resnet'"),
    ({"dataset": "cifar"}, "unknown data set"),
    ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "learning rate"),
    ({"schedule": "linear"}, "schedule"),
    ({"resume": True, "overwrite": True}, "exclude"),
])
def test_bad_config(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**kw)


def test_default_models_and_noise_seed():
    assert TrainConfig(dataset="digits").model == "digits"
    assert TrainConfig(dataset="mnist").model == "digits"
    assert TrainConfig(dataset="svhn").model == "svhn"
    assert TrainConfig(bits="1,2,6").bits == (1, 2, 6)
    seeds = [noise_seed(s) for s in range(1000)] + [noise_seed(2**32 - 1), noise_seed(2**40 + 7)]
    assert all(0 < s < 2**32 for s in seeds) and len(set(seeds[:1000])) == 1000


def test_svhn_network_gets_40x40_inputs(tmp_path):
    data = train_mod._prepare_data(tiny(tmp_path, model="svhn-D", train_limit=4, test_limit=2))
    assert data.train_x.shape == (4, 1, 40, 40) and data.test_x.shape == (2, 1, 40, 40)
    assert 0 <= data.train_x.min() and data.train_x.max() <= 1


def write_tiny_mnist(root: Path, n_train: int = 16, n_test: int = 8) -> None:
    """The four MNIST IDX files (big-endian magic, dims, uint8 payload)."""
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def test_mnist_trains_the_digits_network_at_28x28(tmp_path):
    write_tiny_mnist(tmp_path / "mnist")
    result = quiet(tiny(tmp_path / "out", dataset="mnist", data=str(tmp_path / "mnist"), epochs=1,
                        train_limit=None, test_limit=None, batch_size=8))
    assert result.model.image_size == 28 and result.model.in_channels == 1
    assert len(result.history) == 1


# --------------------------------------------------------------------------- issue 9: what a new user hits

from sw.cli import main  # noqa: E402
from sw.train import CONFIG_NAME, MODEL_NAMES, RUN_FILES, TrainingDiverged  # noqa: E402


def run_cli(*args) -> int:
    return main(["train", "--no-progress", "--threads", "1", *map(str, args)])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def strict_rows(path: Path) -> list[dict]:
    """metrics.jsonl rows parsed as strict JSON: a bare NaN or Infinity fails."""
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


# hand-written: first conv channels = 16 (digits) or 48 (svhn) x the model's width x --width
NAMED_MODEL_RUNS = {
    "digits": ("0.25", 4), "svhn": ("0.125", 6), "svhn-A": ("0.125", 6),
    "svhn-B": ("0.25", 6), "svhn-C": ("0.5", 6), "svhn-D": ("1", 6),
}


def test_named_model_runs_cover_every_model():
    assert sorted(NAMED_MODEL_RUNS) == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", sorted(NAMED_MODEL_RUNS))
def test_every_named_model_trains_a_step(tmp_path, name):
    """``--model svhn-C --width F`` crashed with 'multiple values for width' (item 1)."""
    width, first_channels = NAMED_MODEL_RUNS[name]
    out = tmp_path / "run"
    assert run_cli("--bits", "1,2,4", "--model", name, "--width", width, "--epochs", 1, "--batch-size", 4,
                   "--train-limit", 4, "--test-limit", 2, "--out", out) == 0
    state = load_checkpoint(out / CHECKPOINT_NAME)
    assert state["epoch"] == 1 and state["config"]["model"] == name
    assert state["model"]["blocks.0.product.weight"].shape[0] == first_channels


def test_readme_svhn_c_command_on_svhn_files(tmp_path):
    import numpy as np
    import scipy.io

    rng = np.random.default_rng(0)
    (tmp_path / "svhn").mkdir()
    for split, n in (("train", 4), ("test", 2)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        scipy.io.savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": x, "y": np.arange(1, n + 1).reshape(n, 1)})
    out = tmp_path / "run"
    assert run_cli("--bits", "1,2,4", "--dataset", "svhn", "--data", tmp_path / "svhn", "--model", "svhn-C",
                   "--epochs", 1, "--batch-size", 4, "--out", out) == 0
    state = load_checkpoint(out / CHECKPOINT_NAME)
    assert state["model"]["blocks.0.product.weight"].shape == (12, 3, 5, 5)  # 48 x 0.25


# --- extending a run (item 2)

def test_extending_a_constant_schedule_run_equals_a_fresh_one(tmp_path):
    straight = quiet(tiny(tmp_path / "straight", epochs=2, schedule="constant"))
    quiet(tiny(tmp_path / "ext", epochs=1, schedule="constant"))
    lines = []
    extended = train(tiny(tmp_path / "ext", epochs=2, schedule="constant", resume=True),
                     progress=False, log=lines.append)
    assert not any("note" in line for line in lines), lines
    assert_same_state(straight.model.state_dict(), extended.model.state_dict())
    assert without_timing(straight.history) == without_timing(extended.history)
    assert load_checkpoint(tmp_path / "ext" / CHECKPOINT_NAME)["config"]["epochs"] == 2
    assert json.loads((tmp_path / "ext" / CONFIG_NAME).read_text())["epochs"] == 2


def test_extending_a_cosine_run_recomputes_the_schedule_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    common = ("--bits", "1,2,6", "--width", "0.25", "--train-limit", 64, "--test-limit", 32, "--lr", "0.001",
              "--out", out)
    assert run_cli(*common, "--epochs", 2) == 0
    capsys.readouterr()
    assert run_cli(*common, "--epochs", 3, "--resume") == 0
    stdout = capsys.readouterr().out
    assert ("note: extending a 2-epoch run to 3: the learning-rate schedule is recomputed for 3 epochs from "
            "epoch 3; epochs 1-2 followed the 2-epoch schedule, so the result will differ from an uninterrupted "
            "3-epoch run") in stdout
    rows = strict_rows(out / METRICS_NAME)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # cosine, min factor 0.01: 0.01 + 0.99 * 0.5 * (1 + cos(pi * e / epochs))
    # 2 epochs, e = 1: 0.505; then the 3-epoch schedule at e = 2: 0.01 + 0.99 * 0.25 = 0.2575
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 0.505e-3, 0.2575e-3])
    assert load_checkpoint(out / CHECKPOINT_NAME)["config"]["epochs"] == 3
    assert json.loads((out / CONFIG_NAME).read_text())["epochs"] == 3


def test_extension_that_keeps_the_factors_gives_no_note(tmp_path):
    """A 1-epoch cosine run used factor 1.0, as a 2-epoch one does at epoch 1: still exact."""
    straight = quiet(tiny(tmp_path / "straight", epochs=2))
    quiet(tiny(tmp_path / "ext", epochs=1))
    lines = []
    extended = train(tiny(tmp_path / "ext", epochs=2, resume=True), progress=False, log=lines.append)
    assert not any("note" in line for line in lines), lines
    assert_same_state(straight.model.state_dict(), extended.model.state_dict())


def test_fewer_epochs_than_finished_is_refused_and_equal_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    common = ("--bits", "1,2,6", "--width", "0.25", "--train-limit", 32, "--test-limit", 16, "--out", out)
    assert run_cli(*common, "--epochs", 2) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert run_cli(*common, "--epochs", 1, "--resume") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dorefa train: error: ")
    assert str(out / CHECKPOINT_NAME) in err and "finished 2 epochs" in err
    assert snapshot(out) == before
    assert run_cli(*common, "--epochs", 2, "--resume") == 0
    assert "nothing to train" in capsys.readouterr().out
    assert snapshot(out) == before


def test_other_changes_on_resume_stay_refused(finished):
    cfg, path = finished
    resume_expecting(TrainConfig(**{**cfg.to_dict(), "bits": (1, 2, 6), "epochs": 2, "lr": 2e-3}), path,
                     "different run", "lr 0.001 in the checkpoint, 0.002 requested")


# --- checkpoint integrity (item 3)

def damage_tensor_data(path: Path) -> None:
    """Overwrite bytes inside the largest model tensor's data, leaving the zip loadable."""
    state = torch.load(path, weights_only=True)
    key = max(state["model"], key=lambda k: state["model"][k].numel())
    raw = state["model"][key].numpy().tobytes()
    data = path.read_bytes()
    at = data.find(raw)
    assert at > 0 and data.count(raw) == 1
    middle = at + len(raw) // 2
    damaged = data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 8]) + data[middle + 8:]
    path.write_bytes(damaged)
    reloaded = torch.load(path, weights_only=True)  # torch does not notice: only the digest can
    assert not torch.equal(reloaded["model"][key], state["model"][key])


def test_damaged_checkpoint_is_refused_by_infer_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    common = ("--bits", "1,2,6", "--width", "0.25", "--train-limit", 32, "--test-limit", 16, "--out", out)
    assert run_cli(*common, "--epochs", 1) == 0
    path = out / CHECKPOINT_NAME
    damage_tensor_data(path)
    before = snapshot(out)
    capsys.readouterr()
    expected = f"{path}: checkpoint is damaged (its SHA-256 does not match its contents); the file was left untouched"
    assert main(["infer", str(path), "--limit", "8"]) == 2
    assert capsys.readouterr().err == f"dorefa infer: error: {expected}\n"
    assert run_cli(*common, "--epochs", 2, "--resume") == 2
    assert capsys.readouterr().err == f"dorefa train: error: {expected}\n"
    assert snapshot(out) == before


def test_version_1_checkpoint_still_resumes(finished):
    cfg, path = finished
    state = torch.load(path, weights_only=True)
    assert state["version"] == CHECKPOINT_VERSION == 2 and isinstance(state["sha256"], str)
    old = {k: v for k, v in state.items() if k not in ("sha256", "lr_factors")}
    torch.save({**old, "version": 1}, path)
    result = quiet(TrainConfig(**{**cfg.to_dict(), "bits": tuple(cfg.bits), "epochs": 2, "resume": True}))
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert load_checkpoint(path)["version"] == 2


def test_torch_advice_never_reaches_the_user(finished):
    from fractions import Fraction

    cfg, path = finished
    torch.save({"format": "x", "value": Fraction(1, 2)}, path)
    message = resume_expecting(cfg, path, "unreadable checkpoint")
    for advice in ("weights_only", "weights only", "trust", "Weights only"):
        assert advice not in message, message


# --- nothing saved is touched until the new run has everything (items 4, 5)

def test_overwrite_with_bad_data_keeps_the_old_run(tmp_path, capsys):
    write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "run"
    common = ("--bits", "1,2,6", "--dataset", "mnist", "--data", tmp_path / "mnist", "--width", "0.25",
              "--epochs", 1, "--batch-size", 8, "--out", out)
    assert run_cli(*common) == 0
    before = snapshot(out)
    assert {CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME} <= before.keys()
    images = tmp_path / "mnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    capsys.readouterr()
    assert run_cli(*common, "--overwrite") == 2
    assert "truncated" in capsys.readouterr().err
    assert snapshot(out) == before


def test_failed_serial_backend_leaves_nothing_behind(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    common = ("--bits", "1,2,6", "--width", "0.25", "--train-limit", 32, "--test-limit", 16, "--epochs", 1)
    assert run_cli(*common, "--backend", f"serial:{tmp_path / 'nonexistent'}", "--out", out) == 2
    assert "cannot open serial device" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # and an old run asked to be overwritten stays as it was
    old = tmp_path / "old"
    assert run_cli(*common, "--out", old) == 0
    before = snapshot(old)
    assert run_cli(*common, "--backend", f"serial:{tmp_path / 'nonexistent'}", "--out", old, "--overwrite") == 2
    assert snapshot(old) == before


def test_overwrite_replaces_the_whole_run(tmp_path):
    quiet(tiny(tmp_path, epochs=2))
    for name in RUN_FILES:
        if not (tmp_path / name).exists():
            (tmp_path / name).write_bytes(b"stale output of the old run")
    fresh = quiet(tiny(tmp_path, epochs=1, overwrite=True))
    assert [r["epoch"] for r in strict_rows(tmp_path / METRICS_NAME)] == [1] == [r["epoch"] for r in fresh.history]
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME])


# --- divergence (item 7)

def test_divergence_stops_with_exit_2_and_strict_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("--bits", "32,32,32", "--lr", "1e30", "--width", "0.25", "--train-limit", 64,
                   "--test-limit", 32, "--epochs", 3, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dorefa train: error: training diverged at epoch ")
    assert "(loss is NaN)" in err or "(loss is inf)" in err
    rows = strict_rows(out / METRICS_NAME)
    if (out / CHECKPOINT_NAME).exists():
        assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == len(rows)
    else:
        assert rows == []


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    models = []
    real_build = train_mod.build_network

    def remember(*args, **kwargs):
        models.append(real_build(*args, **kwargs))
        return models[-1]

    def poison_after_first(row):  # after epoch 1's checkpoint: the (full-precision) last FC's weights NaN
        if row["epoch"] == 1:
            with torch.no_grad():
                models[0].blocks[-1].product.weight.fill_(float("nan"))

    monkeypatch.setattr(train_mod, "build_network", remember)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at epoch 2 \(loss is NaN\); "
                                               r"the checkpoint of epoch 1 is kept in "):
        quiet(tiny(tmp_path, epochs=3), on_epoch_end=poison_after_first)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 1
    assert [r["epoch"] for r in strict_rows(tmp_path / METRICS_NAME)] == [1]


# --- file modes (item 16)

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_output_gets_the_mode_open_would_give(tmp_path, umask):
    previous = os.umask(umask)
    try:
        quiet(tiny(tmp_path, epochs=1))
        reference = tmp_path / "plain"
        reference.write_text("")  # what a plain open() gives under this umask
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(reference.stat().st_mode) == expected
    for name in (CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
