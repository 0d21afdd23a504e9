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

Input sizes: the ``digits`` network runs on a data set's native size (8x8
digits, 28x28 MNIST, 32x32 SVHN); the ``svhn`` networks need 40x40 inputs, so
their data are resized bilinearly to 40x40 (as the authors did).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import numeric
from .data import DATASETS, Dataset, iterate_minibatches, load_dataset
from .intref import integer_inference
from .backends import check_backend, make_engine
from .models import MODELS, SVHN_MODELS, DoReFaNet, build_model
from .quantizers import GradientNoise

__all__ = [
    "TrainConfig", "TrainResult", "Evaluation", "CheckpointError", "train", "evaluate",
    "save_checkpoint", "load_checkpoint", "default_model", "noise_seed",
    "CHECKPOINT_NAME", "METRICS_NAME", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "SCHEDULES",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
CHECKPOINT_FORMAT = "dorefa-hw checkpoint"
CHECKPOINT_VERSION = 1
SCHEDULES = ("cosine", "step", "constant")
SVHN_INPUT_SIZE = 40
MODEL_NAMES = tuple(sorted(MODELS)) + tuple(f"svhn-{m}" for m in SVHN_MODELS)

# Config fields that do not change the numbers a run produces: they may differ on resume.
_RUNTIME_FIELDS = ("data", "out", "resume", "overwrite", "backend")  # bit-identical backends may change


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, not ours, an unknown version, or another run's."""


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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_backend(self.backend)
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``bits`` as a list)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def run_fields(self) -> dict[str, Any]:
        """The fields that determine the numbers: what a checkpoint must match to be resumed."""
        return {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_FIELDS}


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
    """Write ``state`` to ``path`` atomically: a temp file in the same directory,
    fsync, then ``os.replace``.  A crash leaves the previous file intact."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600 files; a checkpoint is not a secret
                os.fchmod(f.fileno(), 0o644)
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, config: TrainConfig | None = None) -> dict:
    """Read and check a checkpoint; with ``config``, also that it belongs to the same run.

    Raises :class:`CheckpointError` naming the file and the problem; the file
    is never modified.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # truncated zip, not a zip, unpickling refused...
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {_first_line(exc)}; the file was left untouched") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a dorefa-hw training checkpoint; the file was left untouched")
    version = state.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not supported "
                              f"(this dorefa-hw reads version {CHECKPOINT_VERSION}); the file was left untouched")
    missing = [k for k in ("epoch", "config", "model", "optimizer", "scheduler", "torch_rng",
                           "shuffle_rng", "noise") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}; the file was left untouched")
    if config is not None:
        stored, wanted = state["config"], config.run_fields()
        diffs = [f"{k} {stored.get(k)!r} in the checkpoint, {v!r} requested"
                 for k, v in wanted.items() if stored.get(k) != v]
        if diffs:
            raise CheckpointError(f"{path}: checkpoint is from a different run ({'; '.join(diffs)}); "
                                  f"resume with the same settings or use another output directory; "
                                  f"the file was left untouched")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


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
    """Learning-rate factor for epoch ``e`` (0-based)."""
    if config.schedule == "constant":
        return lambda e: 1.0
    if config.schedule == "step":
        return lambda e: 0.1 ** ((e >= config.epochs // 2) + (e >= (3 * config.epochs) // 4))
    low = config.lr_min_factor
    return lambda e: low + (1 - low) * 0.5 * (1 + math.cos(math.pi * e / config.epochs))


def _prepare_out(config: TrainConfig, log) -> tuple[Path, dict | None]:
    """Create the output directory; return it and the checkpoint to resume (or ``None``)."""
    out = Path(config.out)
    checkpoint = out / CHECKPOINT_NAME
    if config.resume:
        if checkpoint.exists():
            return out, load_checkpoint(checkpoint, config)
        log(f"{checkpoint}: no checkpoint yet, starting afresh")
    elif checkpoint.exists():
        if not config.overwrite:
            raise CheckpointError(f"{checkpoint}: a checkpoint already exists; resume it (--resume) or start "
                                  f"over (--overwrite), or choose another output directory")
        checkpoint.unlink()  # asked to start over: never resume the old run by mistake
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def _rewrite_metrics(path: Path, rows: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    """Rows of epochs ``1..upto_epoch`` (a crash can leave a row newer than the checkpoint)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a half-written last line
            if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= upto_epoch:
                rows.append(row)
    return rows


def build_network(config: TrainConfig, data: Dataset) -> torch.nn.Module:
    """The network ``config`` trains, shaped for ``data``."""
    return build_model(config.model, config.bits, width=config.width, in_channels=data.in_channels,
                       image_size=data.image_size, num_classes=data.num_classes,
                       quantize_first=config.quantize_first, quantize_last=config.quantize_last)


# --------------------------------------------------------------------------- the loop

def train(config: TrainConfig, *, progress: bool = True, log: Callable[[str], Any] = print,
          on_epoch_end: Callable[[dict], Any] | None = None) -> TrainResult:
    """Train ``config``; see the module docstring.  ``on_epoch_end(row)`` is called
    after each epoch's checkpoint is written (an exception there stops training
    with the checkpoint in place, as a crash would)."""
    started = time.perf_counter()
    out, checkpoint = _prepare_out(config, log)
    data = _prepare_data(config)

    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    noise = GradientNoise(seed=noise_seed(config.seed))
    model = build_network(config, data)
    model.set_gradient_noise(noise)
    with _engine_of(model, config.backend) as engine:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))

        metrics_path = out / METRICS_NAME
        start_epoch, history = 0, []
        if checkpoint is not None:
            _restore(checkpoint, out / CHECKPOINT_NAME, model, optimizer, scheduler, shuffle, noise)
            start_epoch = checkpoint["epoch"]
            history = _read_metrics(metrics_path, start_epoch)
            log(f"resuming {out / CHECKPOINT_NAME} after epoch {start_epoch}/{config.epochs}")
        _rewrite_metrics(metrics_path, history)
        (out / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")

        n_train = data.train_x.shape[0]
        for epoch in range(start_epoch + 1, config.epochs + 1):
            epoch_start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            loss, acc = _train_epoch(model, optimizer, data, config, shuffle, progress,
                                     desc=f"W,A,G={','.join(map(str, config.bits))} epoch {epoch}/{config.epochs}")
            train_seconds = time.perf_counter() - epoch_start
            scheduler.step()
            test = evaluate(model, data.test_x, data.test_y, engine=_inference_engine(model, engine))
            row = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "test_loss": test.loss,
                   "test_acc": test.accuracy, "lr": lr, "seconds": time.perf_counter() - epoch_start,
                   "samples_per_s": n_train / max(train_seconds, 1e-9), "bits": list(config.bits),
                   "model": config.model, "dataset": config.dataset, "seed": config.seed}
            history.append(row)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            save_checkpoint({
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "shuffle_rng": shuffle.get_state(), "noise": noise.state_dict(),
            }, out / CHECKPOINT_NAME)
            log(f"W,A,G={','.join(map(str, config.bits))} epoch {epoch}/{config.epochs}: "
                f"train loss {loss:.4f} acc {acc:.2%}, test acc {test.accuracy:.2%}, "
                f"lr {lr:.2e}, {row['seconds']:.1f} s, {_rate(row['samples_per_s'])} samples/s")
            if on_epoch_end is not None:
                on_epoch_end(row)
        return TrainResult(config, model, history, time.perf_counter() - started)


def _inference_engine(model, engine):
    """The engine to evaluate on as integer inference: a core's, when every hidden
    block has quantized activations (thresholds need them); else None (float eval,
    the products still on the engine)."""
    from .driver import CoreEngine
    quantized = all(block.act_bits != numeric.FULL_PRECISION for block in model.blocks[:-1])
    return engine if isinstance(engine, CoreEngine) and quantized else None


def _rate(per_second: float) -> str:
    """Samples per second with two significant digits when slow (a simulated core)."""
    return f"{per_second:.0f}" if per_second >= 10 else f"{per_second:.2g}"


@contextlib.contextmanager
def _engine_of(model, backend: str):
    """Run ``model``'s products on ``backend``.  An engine with a link or a simulation
    is closed afterwards (errors too) and the model gets the in-process integer
    reference instead (the same numbers), so the model returned still runs."""
    engine = make_engine(backend)
    model.set_engine(engine)
    try:
        yield engine
    finally:
        if hasattr(engine, "close"):
            engine.close()
            model.set_engine(make_engine("ref"))


def _train_epoch(model, optimizer, data: Dataset, config: TrainConfig, shuffle: torch.Generator,
                 progress: bool, desc: str) -> tuple[float, float]:
    """One pass over the training set; mean loss and accuracy (train mode)."""
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
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * yb.shape[0]
            correct += (logits.argmax(dim=1) == yb).sum().item()
            seen += yb.shape[0]
            bar.update(1)
            bar.set_postfix({"loss": f"{loss_sum / seen:.3f}", "acc": f"{correct / seen:.3f}",
                             "samples/s": f"{seen / max(time.perf_counter() - start, 1e-9):.0f}"}, refresh=False)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


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
    epoch = state["epoch"]
    if not isinstance(epoch, int) or not 0 <= epoch:
        raise CheckpointError(f"{path}: bad epoch {epoch!r} in checkpoint; the file was left untouched")
