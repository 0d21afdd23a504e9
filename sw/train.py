"""The training loop: Adam on a DoReFa network, per-epoch evaluation, metrics and
atomic, resumable checkpoints.

``train(TrainConfig(...))`` is deterministic for a given ``seed`` on CPU (same
torch build and thread count): it seeds the weight initialisation
(``torch.manual_seed``), a private ``torch.Generator`` for shuffling and the
gradient quantizer's noise PRNG (:class:`sw.quantizers.GradientNoise`).  Every
epoch it appends one JSON line to ``out/metrics.jsonl`` and replaces
``out/checkpoint.pt`` atomically; ``resume=True`` continues from that
checkpoint, and training N epochs straight gives the same bits as training k,
stopping (or crashing) and resuming for the rest.

Resuming with a different ``epochs`` extends (or shortens) the run: the
learning-rate schedule is recomputed for the new total and applies from the
next epoch on; a note says when the result can therefore no longer equal an
uninterrupted run of the new length.  Every other field that changes the
numbers must match the checkpoint.

Nothing saved is touched until the new run has all it needs (data loaded and
checked, the network built, a checkpoint to resume read and checked, the
backend's engine open); only then is the output directory created and, when
starting afresh, the old run's files (:data:`RUN_FILES`) replaced as a whole.
Checkpoints carry a SHA-256 of their contents, verified on loading.  A loss
that is not finite stops training (:class:`TrainingDiverged`) with the last
good checkpoint in place.  Every file a run writes gets the mode a plain
``open()`` would give it (``0o666`` less the umask).

Input sizes: the ``digits`` network runs on a data set's native size (8x8
digits, 28x28 MNIST, 32x32 SVHN); the ``svhn`` networks need 40x40 inputs, so
their data are resized bilinearly to 40x40 (as the authors did).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import numeric
from .data import DATASETS, Dataset, iterate_minibatches, load_dataset
from .files import write_atomic
from .intref import integer_inference
from .backends import check_backend, make_engine
from .models import MODELS, SVHN_MODELS, DoReFaNet, build_model
from .quantizers import GradientNoise

__all__ = [
    "TrainConfig", "TrainResult", "Evaluation", "CheckpointError", "TrainingDiverged", "train", "evaluate",
    "save_checkpoint", "load_checkpoint", "seal_checkpoint", "checkpoint_digest", "default_model", "noise_seed",
    "CHECKPOINT_NAME", "METRICS_NAME", "CONFIG_NAME", "CURVES_NAME", "RUN_FILES", "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION", "SCHEDULES", "MODEL_NAMES", "metrics_rows",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
CURVES_NAME = "curves.png"  # loss and accuracy per epoch, drawn from metrics.jsonl by the CLI
#: Every file a run writes in its output directory; starting afresh replaces them all
#: (the checkpoint first, so an interrupted replacement never leaves a resumable mix).
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME, CURVES_NAME)
CHECKPOINT_FORMAT = "dorefa-hw checkpoint"
CHECKPOINT_VERSION = 2  # 2: a SHA-256 of the contents ("sha256") and the learning-rate factors used
READABLE_VERSIONS = (1, CHECKPOINT_VERSION)
DIGEST_KEY = "sha256"
SCHEDULES = ("cosine", "step", "constant")
MAX_SEED = 2**32 - 1  # run seeds are 0 .. MAX_SEED (what torch and numpy seed from)
SVHN_INPUT_SIZE = 40
MODEL_NAMES = tuple(sorted(MODELS)) + tuple(f"svhn-{m}" for m in SVHN_MODELS)

# Config fields that do not change the numbers a run produces: they may differ on resume.
_RUNTIME_FIELDS = ("data", "out", "resume", "overwrite", "backend")  # bit-identical backends may change
# Fields that may differ on resume although they change the numbers: a run may be extended
# (the learning-rate schedule is recomputed for the new total from the resumed epoch on).
_EXTENDABLE_FIELDS = ("epochs",)


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, damaged, not ours, an unknown version, or another run's."""


class TrainingDiverged(ValueError):
    """A loss became NaN or infinite at ``epoch``; that epoch is never saved."""

    def __init__(self, epoch: int, loss: float, detail: str = ""):
        self.epoch, self.loss = epoch, loss
        kind = "NaN" if math.isnan(loss) else ("inf" if loss > 0 else "-inf")
        super().__init__(f"training diverged at epoch {epoch} (loss is {kind})" + (f"; {detail}" if detail else ""))


def default_model(dataset: str) -> str:
    """``svhn`` for SVHN; the small ``digits`` network for digits and MNIST (built for 28x28)."""
    return "svhn" if dataset == "svhn" else "digits"


def noise_seed(seed: int) -> int:
    """The gradient-noise PRNG's seed for a run seed: a non-zero 32-bit state."""
    return (seed * 0x9E3779B9 + 0x7F4A7C15) % 0xFFFFFFFF + 1


@dataclass
class TrainConfig:
    """Everything that defines a training run (see the field comments).

    Defaults are tuned on the digits set (360 test images; one image is 0.28
    points): over seeds 0-2, 32-bit reaches 98.9-99.2 % test accuracy and
    (1, 2, 6) 98.6-98.9 %, 0.3-0.6 points lower; (1, 1, 2) about 89 %.
    """

    dataset: str = "digits"          # one of sw.data.DATASETS
    data: str | None = None          # directory of the data files (svhn, mnist)
    model: str | None = None         # digits | svhn | svhn-A..D; None: default_model(dataset)
    bits: tuple[int, int, int] = (32, 32, 32)  # (W, A, G); 32 = not quantized
    width: float = 1.0               # channel multiplier
    quantize_first: bool = False     # quantize the first conv too (paper Table 3)
    quantize_last: bool = False      # quantize the last FC too
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3                 # Adam's initial learning rate
    schedule: str = "cosine"         # per epoch: cosine to lr*lr_min_factor, step (x0.1 at 1/2, 3/4) or constant
    lr_min_factor: float = 0.01
    weight_decay: float = 0.0
    seed: int = 0
    train_limit: int | None = None   # use only the first N training samples (quick runs, tests)
    test_limit: int | None = None    # evaluate on only the first N test samples
    out: str = "runs/train"          # directory for metrics.jsonl, checkpoint.pt, config.json
    resume: bool = False             # continue from out/checkpoint.pt if it exists
    overwrite: bool = False          # start afresh even if out/checkpoint.pt exists
    backend: str = "torch"           # where the integer products run: sw.backends.BACKENDS

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown data set {self.dataset!r}; expected one of {', '.join(DATASETS)}")
        if self.model is None:
            self.model = default_model(self.dataset)
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; allowed: {', '.join(MODEL_NAMES)}")
        if isinstance(self.bits, str):
            self.bits = numeric.parse_bits(self.bits)
        if len(tuple(self.bits)) != 3:
            raise ValueError(f"bits must be (W, A, G), got {self.bits!r}")
        self.bits = tuple(numeric.check_bits(b, name) for b, name in zip(self.bits, ("W", "A", "G")))
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be a positive number, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 <= self.lr_min_factor <= 1:
            raise ValueError(f"lr_min_factor must be in [0, 1], got {self.lr_min_factor!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {self.seed!r}")
        check_backend(self.backend)
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``bits`` as a list)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def run_fields(self) -> dict[str, Any]:
        """The fields a checkpoint must match to be resumed: those that determine the
        numbers, less ``epochs`` (a run may be extended)."""
        return {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_FIELDS + _EXTENDABLE_FIELDS}


class Evaluation(NamedTuple):
    loss: float
    accuracy: float


@dataclass
class TrainResult:
    config: TrainConfig
    model: DoReFaNet
    history: list[dict] = field(default_factory=list)  # one metrics row per epoch, resumed ones included
    seconds: float = 0.0                                 # wall time of this call

    @property
    def test_acc(self) -> float:
        return self.history[-1]["test_acc"] if self.history else float("nan")

    @property
    def out(self) -> Path:
        return Path(self.config.out)


# --------------------------------------------------------------------------- evaluation

def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, *,
             engine=None) -> Evaluation:
    """Mean cross-entropy and accuracy of ``model`` in eval mode (running BN statistics).

    With ``engine`` (a :class:`sw.intref.GemmEngine`) the logits come from
    :func:`sw.intref.integer_inference` on it -- BN + clip + quantize as
    thresholds, on the core's activation stage for a core engine -- which
    equals the float model's eval bit for bit (tested), so the numbers are the same.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        with torch.no_grad():
            for xb, yb in iterate_minibatches(x, y, batch_size, shuffle=False):
                logits = model(xb) if engine is None else integer_inference(model, xb, engine=engine)[0]
                loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
                correct += (logits.argmax(dim=1) == yb).sum().item()
    finally:
        model.train(was_training)
    n = max(int(x.shape[0]), 1)
    return Evaluation(loss_sum / n, correct / n)


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (see :func:`sw.files.write_atomic`): a crash
    leaves the previous file intact.  :func:`seal_checkpoint` adds the digest."""
    write_atomic(Path(path), lambda f: torch.save(state, f), binary=True)


def checkpoint_digest(state: dict) -> str:
    """SHA-256 (hex) of a canonical serialisation of ``state`` less its ``sha256`` entry.

    Every tensor contributes its key path, dtype, shape and raw bytes; every
    other value its key path, type and ``repr``; dicts their sorted keys, lists
    and tuples their length.  Each piece is length-prefixed, so different
    states never serialise alike.
    """
    digest = hashlib.sha256()
    _digest_value(digest, [], {k: v for k, v in state.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _digest_value(digest, path: list, value) -> None:
    def piece(*header, data: bytes = b"") -> None:
        for chunk in (json.dumps([*header, path]).encode(), data):
            digest.update(len(chunk).to_bytes(8, "big"))
            digest.update(chunk)

    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        piece("tensor", str(tensor.dtype), list(tensor.shape),
              data=tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        keys = sorted(value, key=lambda k: (type(k).__name__, repr(k)))
        piece("dict", [repr(k) for k in keys])
        for key in keys:
            _digest_value(digest, path + [repr(key)], value[key])
    elif isinstance(value, (list, tuple)):  # torch.load may turn one into the other
        piece("sequence", len(value))
        for index, item in enumerate(value):
            _digest_value(digest, path + [index], item)
    elif value is None or isinstance(value, (bool, int, float, str)):
        piece("value", type(value).__name__, repr(value))
    else:
        raise TypeError(f"cannot digest a {type(value).__name__} at {path}")


def seal_checkpoint(state: dict) -> dict:
    """``state`` with its :func:`checkpoint_digest` under ``"sha256"``."""
    return {**state, DIGEST_KEY: checkpoint_digest(state)}


def load_checkpoint(path: str | os.PathLike, config: TrainConfig | None = None) -> dict:
    """Read and check a checkpoint; with ``config``, also that it belongs to the same run
    (``epochs`` may differ: a run may be extended).

    Version 2 checkpoints must match their SHA-256; version 1 ones (no digest)
    are read too.  Raises :class:`CheckpointError` naming the file and the
    problem; the file is never modified.
    """
    path = Path(path)
    untouched = "the file was left untouched"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # truncated zip, not a zip, unpickling refused...
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {_torch_reason(exc)}; {untouched}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a dorefa-hw training checkpoint; {untouched}")
    version = state.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not supported "
                              f"(this dorefa-hw reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
                              f"{untouched}")
    if version >= 2:
        try:
            intact = state.get(DIGEST_KEY) == checkpoint_digest(state)
        except (TypeError, ValueError, RuntimeError):
            intact = False
        if not intact:
            raise CheckpointError(f"{path}: checkpoint is damaged (its SHA-256 does not match its contents); "
                                  f"{untouched}")
    required = ["epoch", "config", "model", "optimizer", "scheduler", "torch_rng", "shuffle_rng", "noise"]
    missing = [k for k in required + (["lr_factors"] if version >= 2 else []) if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}; {untouched}")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 or not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: bad epoch {epoch!r} or config in checkpoint; {untouched}")
    if config is not None:
        stored, wanted = state["config"], config.run_fields()
        diffs = [f"{k} {stored.get(k)!r} in the checkpoint, {v!r} requested"
                 for k, v in wanted.items() if stored.get(k) != v]
        if diffs:
            raise CheckpointError(f"{path}: checkpoint is from a different run ({'; '.join(diffs)}); "
                                  f"resume with the same settings (only --epochs may change) or use "
                                  f"another output directory; {untouched}")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _torch_reason(exc: BaseException) -> str:
    """Why torch could not load a file, in one line, without torch's advice to load
    with ``weights_only=False`` (never right for a file we cannot read)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1]
        reason = next((line.strip() for line in reason.splitlines() if line.strip()), "")
        reason = reason.split(" Please use ", 1)[0]
        return reason or "it holds objects a checkpoint does not"
    if "weights_only" in text.lower() or "weights only" in text.lower():
        return "it holds objects a checkpoint does not"
    return _first_line(exc)


# --------------------------------------------------------------------------- pieces of a run

def _prepare_data(config: TrainConfig) -> Dataset:
    svhn_net = config.model.startswith("svhn")
    kwargs = {"size": SVHN_INPUT_SIZE} if (svhn_net and config.dataset == "svhn") else {}
    ds = load_dataset(config.dataset, config.data, **kwargs)
    train_x, train_y, test_x, test_y = ds.train_x, ds.train_y, ds.test_x, ds.test_y
    if config.train_limit is not None:
        train_x, train_y = train_x[:config.train_limit], train_y[:config.train_limit]
    if config.test_limit is not None:
        test_x, test_y = test_x[:config.test_limit], test_y[:config.test_limit]
    if svhn_net and ds.image_size != SVHN_INPUT_SIZE:
        def resize(x):
            return F.interpolate(x, size=(SVHN_INPUT_SIZE,) * 2, mode="bilinear", align_corners=False).clamp_(0, 1)
        train_x, test_x = resize(train_x), resize(test_x)
    return Dataset(ds.name, train_x.contiguous(), train_y, test_x.contiguous(), test_y, ds.num_classes)


def _schedule(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor for epoch ``e`` (0-based) of ``config``'s run."""
    return _schedule_of(config.schedule, config.epochs, config.lr_min_factor)


def _schedule_of(schedule: str, epochs: int, lr_min_factor: float) -> Callable[[int], float]:
    """Learning-rate factor for epoch ``e`` (0-based) of an ``epochs``-epoch run."""
    if schedule == "constant":
        return lambda e: 1.0
    if schedule == "step":
        return lambda e: 0.1 ** ((e >= epochs // 2) + (e >= (3 * epochs) // 4))
    low = lr_min_factor
    return lambda e: low + (1 - low) * 0.5 * (1 + math.cos(math.pi * e / epochs))


def _checkpoint_to_resume(config: TrainConfig, log) -> dict | None:
    """The checkpoint to continue from, or ``None`` to start afresh.  Reads, never writes."""
    path = Path(config.out) / CHECKPOINT_NAME
    if config.resume:
        if path.exists():
            state = load_checkpoint(path, config)
            if config.epochs < state["epoch"]:
                raise CheckpointError(f"{path}: the checkpoint has finished {state['epoch']} epochs, more than "
                                      f"the {config.epochs} requested; resume with --epochs {state['epoch']} or "
                                      f"more, or start over (--overwrite); the file was left untouched")
            return state
        log(f"{path}: no checkpoint yet, starting afresh")
    elif path.exists() and not config.overwrite:
        raise CheckpointError(f"{path}: a checkpoint already exists; resume it (--resume) or start "
                              f"over (--overwrite), or choose another output directory")
    return None


def _lr_factors(state: dict) -> list[float]:
    """The learning-rate factors the checkpoint's epochs were trained with (version 1
    checkpoints: those of their own schedule)."""
    epochs = state["epoch"]
    if "lr_factors" in state:
        return [float(f) for f in state["lr_factors"]][:epochs]
    stored = state["config"]
    schedule = _schedule_of(stored["schedule"], stored["epochs"], stored["lr_min_factor"])
    return [schedule(e) for e in range(epochs)]


def _schedule_note(state: dict, config: TrainConfig) -> str | None:
    """A note when resuming ``state`` for ``config`` can no longer equal an uninterrupted
    ``config.epochs``-epoch run: the epochs done followed other learning-rate factors."""
    finished, schedule = state["epoch"], _schedule(config)
    done = _lr_factors(state)
    if done == [schedule(e) for e in range(finished)]:
        return None
    epochs_done = "epoch 1" if finished == 1 else f"epochs 1-{finished}"
    n, old = config.epochs, state["config"].get("epochs")
    if old != n:
        verb = "extending" if isinstance(old, int) and n > old else "shortening"
        return (f"note: {verb} a {old}-epoch run to {n}: the learning-rate schedule is recomputed for {n} "
                f"epochs from epoch {finished + 1}; {epochs_done} followed the {old}-epoch schedule, so the "
                f"result will differ from an uninterrupted {n}-epoch run")
    return (f"note: {epochs_done} did not follow the {n}-epoch learning-rate schedule (the run was extended "
            f"before), so the result will differ from an uninterrupted {n}-epoch run")


def _replace_run(out: Path) -> None:
    """Remove every file of the run in ``out`` (:data:`RUN_FILES`, checkpoint first)."""
    for name in RUN_FILES:
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass


def _json_line(row: dict) -> str:
    """One strict-JSON line (a NaN or infinity is an error, never bare ``NaN``)."""
    return json.dumps(row, allow_nan=False) + "\n"


def _rewrite_metrics(path: Path, rows: list[dict]) -> None:
    write_atomic(path, lambda f: f.writelines(_json_line(row) for row in rows))


def metrics_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``metrics.jsonl``, one per epoch in epoch order (an epoch written twice:
    the later row); lines that do not parse (a half-written last line) are skipped.  A
    missing file has no rows."""
    rows: dict[int, dict] = {}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and not isinstance(row["epoch"], bool):
            rows[row["epoch"]] = row
    return [rows[epoch] for epoch in sorted(rows)]


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    """Rows of epochs ``1..upto_epoch`` (a crash can leave a row newer than the checkpoint)."""
    return [row for row in metrics_rows(path) if row["epoch"] <= upto_epoch]


def build_network(config: TrainConfig, data: Dataset) -> torch.nn.Module:
    """The network ``config`` trains, shaped for ``data``."""
    return build_model(config.model, config.bits, width=config.width, in_channels=data.in_channels,
                       image_size=data.image_size, num_classes=data.num_classes,
                       quantize_first=config.quantize_first, quantize_last=config.quantize_last)


# --------------------------------------------------------------------------- the loop

def train(config: TrainConfig, *, progress: bool = True, log: Callable[[str], Any] = print,
          on_epoch_end: Callable[[dict], Any] | None = None, open_transport=None) -> TrainResult:
    """Train ``config``; see the module docstring.  ``on_epoch_end(row)`` is called
    after each epoch's checkpoint is written (an exception there stops training
    with the checkpoint in place, as a crash would).  A loss that is not finite
    raises :class:`TrainingDiverged`.  ``open_transport``: for a simulated core's
    backend (:func:`sw.backends.make_engine`)."""
    started = time.perf_counter()
    out = Path(config.out)
    checkpoint_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    # Everything the run needs, before anything on disk is touched.
    checkpoint = _checkpoint_to_resume(config, log)
    data = _prepare_data(config)

    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = GradientNoise(seed=noise_seed(config.seed))
    model = build_network(config, data)
    model.set_gradient_noise(noise)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = _schedule(config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start_epoch, lr_factors, history = 0, [], []
    if checkpoint is not None:
        _restore(checkpoint, checkpoint_path, model, optimizer, scheduler, shuffle, noise)
        start_epoch, lr_factors = checkpoint["epoch"], _lr_factors(checkpoint)
        # The schedule of this run's total from the next epoch on (the same as the
        # checkpoint's own unless the run is extended).
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base_lr * schedule(start_epoch)
        history = _read_metrics(metrics_path, start_epoch)
        if start_epoch == config.epochs:
            log(f"nothing to train: {checkpoint_path} has finished all {config.epochs} epochs")
            return TrainResult(config, model, history, time.perf_counter() - started)
        log(f"resuming {checkpoint_path} after epoch {start_epoch}/{config.epochs}")
        note = _schedule_note(checkpoint, config)
        if note:
            log(note)

    with _engine_of(model, config.backend, open_transport) as engine:
        # Only now, with the engine open too, create or replace the run's files.
        out.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            _replace_run(out)
        _rewrite_metrics(metrics_path, history)
        write_atomic(out / CONFIG_NAME, lambda f: f.write(json.dumps(config.to_dict(), indent=2) + "\n"))

        n_train = data.train_x.shape[0]
        for epoch in range(start_epoch + 1, config.epochs + 1):
            epoch_start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            try:
                loss, acc = _train_epoch(model, optimizer, data, config, shuffle, progress, epoch=epoch,
                                         desc=f"W,A,G={','.join(map(str, config.bits))} "
                                              f"epoch {epoch}/{config.epochs}")
                train_seconds = time.perf_counter() - epoch_start
                scheduler.step()
                test = evaluate(model, data.test_x, data.test_y, engine=_inference_engine(model, engine))
                _check_finite(test.loss, epoch)
            except TrainingDiverged as exc:
                kept = (f"the checkpoint of epoch {epoch - 1} is kept in {checkpoint_path}" if epoch > 1
                        else "no epoch finished, so no checkpoint was written")
                raise TrainingDiverged(exc.epoch, exc.loss, f"{kept}; try a smaller learning rate (--lr)") from None
            lr_factors.append(schedule(epoch - 1))
            row = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "test_loss": test.loss,
                   "test_acc": test.accuracy, "lr": lr, "seconds": time.perf_counter() - epoch_start,
                   "samples_per_s": n_train / max(train_seconds, 1e-9), "bits": list(config.bits),
                   "model": config.model, "dataset": config.dataset, "seed": config.seed}
            line = _json_line(row)
            history.append(row)
            with open(metrics_path, "a") as f:
                f.write(line)
            save_checkpoint(seal_checkpoint({
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "shuffle_rng": shuffle.get_state(), "noise": noise.state_dict(), "lr_factors": list(lr_factors),
            }), checkpoint_path)
            log(f"W,A,G={','.join(map(str, config.bits))} epoch {epoch}/{config.epochs}: "
                f"train loss {loss:.4f} acc {acc:.2%}, test acc {test.accuracy:.2%}, "
                f"lr {lr:.2e}, {row['seconds']:.1f} s, {_rate(row['samples_per_s'])} samples/s")
            if on_epoch_end is not None:
                on_epoch_end(row)
        return TrainResult(config, model, history, time.perf_counter() - started)


def _check_finite(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(epoch, loss)


def _inference_engine(model, engine):
    """The engine to evaluate on as integer inference: a core's, when every hidden
    block has quantized activations (thresholds need them); else None (float eval,
    the products still on the engine)."""
    from .core_engine import CoreEngine
    quantized = all(block.act_bits != numeric.FULL_PRECISION for block in model.blocks[:-1])
    return engine if isinstance(engine, CoreEngine) and quantized else None


def _rate(per_second: float) -> str:
    """Samples per second with two significant digits when slow (a simulated core)."""
    return f"{per_second:.0f}" if per_second >= 10 else f"{per_second:.2g}"


@contextlib.contextmanager
def _engine_of(model, backend: str, open_transport=None):
    """Run ``model``'s products on ``backend``.  An engine with a link or a simulation
    is closed afterwards (errors too) and the model gets the in-process integer
    reference instead (the same numbers), so the model returned still runs."""
    engine = make_engine(backend, open_transport=open_transport)
    model.set_engine(engine)
    try:
        yield engine
    finally:
        if hasattr(engine, "close"):
            engine.close()
            model.set_engine(make_engine("ref"))


def _train_epoch(model, optimizer, data: Dataset, config: TrainConfig, shuffle: torch.Generator,
                 progress: bool, desc: str, *, epoch: int) -> tuple[float, float]:
    """One pass over the training set; mean loss and accuracy (train mode).  A batch
    loss that is not finite raises :class:`TrainingDiverged` before its step."""
    model.train()
    batches = math.ceil(data.train_x.shape[0] / config.batch_size)
    loss_sum, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    with tqdm(total=batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
              disable=None if progress else True, file=sys.stderr) as bar:
        for xb, yb in iterate_minibatches(data.train_x, data.train_y, config.batch_size,
                                          shuffle=True, generator=shuffle):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            value = loss.item()
            _check_finite(value, epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += value * yb.shape[0]
            correct += (logits.argmax(dim=1) == yb).sum().item()
            seen += yb.shape[0]
            bar.update(1)
            bar.set_postfix({"loss": f"{loss_sum / seen:.3f}", "acc": f"{correct / seen:.3f}",
                             "samples/s": f"{seen / max(time.perf_counter() - start, 1e-9):.0f}"}, refresh=False)
    mean = loss_sum / max(seen, 1)
    _check_finite(mean, epoch)
    return mean, correct / max(seen, 1)


def _restore(state, path, model, optimizer, scheduler, shuffle, noise) -> None:
    """Load every piece of ``state``; a piece that does not fit is a :class:`CheckpointError`."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle_rng"])
        noise.load_state_dict(state["noise"])
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not fit this model/optimizer: "
                              f"{type(exc).__name__}: {_first_line(exc)}; the file was left untouched") from exc
