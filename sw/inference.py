"""Inference of a trained checkpoint on a backend, checked bit for bit against the float model.

:func:`verify_inference` is ``dorefa infer``: it rebuilds the network of a
training checkpoint, runs its test set through

* the float golden model (eval mode: BN with running statistics), and
* :func:`sw.intref.integer_inference` on a backend's engine: quantized
  products on integer codes, BN + clip + quantize as thresholds (on the
  core's activation stage when the backend is a core and the layer fits it),
  max-pool on codes,

and compares every block's activation codes and the logits.  The contract
(the README's verification contract) is equality: any differing code is reported as a mismatch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .backends import check_backend, make_engine
from .data import iterate_minibatches
from .intref import integer_inference

__all__ = ["InferenceReport", "verify_inference", "INFER_BACKENDS"]

#: Backends whose engine lowers products to integer GEMMs (``torch`` computes
#: float convolutions and has no threshold stage).
INFER_BACKENDS = ("ref", "model", "serial:DEVICE", "sim", "sim:amaranth")


@dataclass
class InferenceReport:
    """What :func:`verify_inference` found."""
    samples: int = 0
    float_correct: int = 0
    integer_correct: int = 0
    code_mismatches: list[int] = field(default_factory=list)  # per activated block
    codes_compared: list[int] = field(default_factory=list)
    logit_mismatches: int = 0
    core_thresholds: int = 0  # activated products thresholded on the core
    host_thresholds: int = 0  # ... on the host (fan-in beyond the core's columns)
    seconds: float = 0.0

    @property
    def bit_exact(self) -> bool:
        return self.logit_mismatches == 0 and not any(self.code_mismatches)

    def summary(self) -> str:
        n = max(self.samples, 1)
        lines = [f"{self.samples} test samples: float model {self.float_correct / n:.2%}, "
                 f"integer inference {self.integer_correct / n:.2%} ({self.seconds:.1f} s)"]
        for layer, (bad, total) in enumerate(zip(self.code_mismatches, self.codes_compared)):
            lines.append(f"  block {layer}: {bad} of {total} activation codes differ")
        lines.append(f"  logits: {self.logit_mismatches} of {self.samples} samples differ")
        if self.core_thresholds or self.host_thresholds:
            lines.append(f"  thresholds applied on the core's activation stage for {self.core_thresholds} "
                         f"layer products, on the host for {self.host_thresholds}")
        lines.append("bit-exact: integer inference equals the float model" if self.bit_exact
                     else "MISMATCH: integer inference differs from the float model")
        return "\n".join(lines)


def verify_inference(checkpoint: str | Path, backend: str = "ref", *, data: str | None = None,
                     limit: int | None = None, batch_size: int = 64, open_transport=None) -> InferenceReport:
    """Run ``checkpoint``'s test set on the float model and on ``backend``; compare.
    ``open_transport``: for a simulated core's backend (:func:`sw.backends.make_engine`)."""
    from .train import TrainConfig, _prepare_data, build_network, load_checkpoint

    backend = check_backend(backend)
    if backend == "torch":
        raise ValueError(f"backend 'torch' has no integer inference; allowed: {', '.join(INFER_BACKENDS)}")
    state = load_checkpoint(checkpoint)
    stored = dict(state["config"])
    config = TrainConfig(**{**stored, "data": data if data is not None else stored.get("data"),
                            "test_limit": limit, "resume": False, "overwrite": False, "backend": backend})
    dataset = _prepare_data(config)
    model = build_network(config, dataset)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint}: weights do not fit the network its config describes: {exc}") from None
    model.eval()
    model.trace(True)
    report = InferenceReport()
    started = time.perf_counter()
    engine = make_engine(backend, open_transport=open_transport)
    try:
        with torch.no_grad():
            for xb, yb in iterate_minibatches(dataset.test_x, dataset.test_y, batch_size, shuffle=False):
                logits = model(xb)
                float_codes = [block.codes for block in model.blocks[:-1]]
                int_logits, int_codes = integer_inference(model, xb, engine=engine)
                if not report.code_mismatches:
                    report.code_mismatches = [0] * len(int_codes)
                    report.codes_compared = [0] * len(int_codes)
                for layer, (f, i) in enumerate(zip(float_codes, int_codes)):
                    report.code_mismatches[layer] += int((f != i).sum())
                    report.codes_compared[layer] += f.numel()
                report.logit_mismatches += int((logits != int_logits).any(dim=1).sum())
                report.samples += xb.shape[0]
                report.float_correct += int((logits.argmax(1) == yb).sum())
                report.integer_correct += int((int_logits.argmax(1) == yb).sum())
    finally:
        if hasattr(engine, "close"):
            engine.close()
    stats = getattr(engine, "stats", {})
    report.core_thresholds = stats.get("core_thresholds", 0)
    report.host_thresholds = stats.get("host_thresholds", 0)
    report.seconds = time.perf_counter() - started
    return report
