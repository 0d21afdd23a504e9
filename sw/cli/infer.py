"""``dorefa infer``: a checkpoint's test set as integer inference on a backend, checked
bit for bit against the float model (:func:`sw.inference.verify_inference`)."""

from __future__ import annotations

import argparse

from . import command
from .train import add_threads, positive_int, set_threads, transport_opener


def _infer_backend(text: str) -> str:
    """An argparse type: a backend ``dorefa infer`` runs on, one of
    :data:`sw.inference.INFER_BACKENDS` (``serial:DEVICE`` for any device)."""
    from sw.inference import INFER_BACKENDS
    for allowed in INFER_BACKENDS:
        prefix, device = allowed.split(":DEVICE")[0], allowed.endswith(":DEVICE")
        if text == allowed if not device else (text.startswith(prefix + ":") and len(text) > len(prefix) + 1):
            return text
    why = " (it computes float convolutions: no integer inference)" if text == "torch" else ""
    raise argparse.ArgumentTypeError(f"unknown backend {text!r}{why}; allowed: {', '.join(INFER_BACKENDS)}")


@command("infer")
def _infer_command(parser):
    from sw.inference import INFER_BACKENDS

    parser.description = ("Rebuild the network of a training checkpoint and run its test set twice: on the "
                           "float golden model, and as integer inference on a backend (products on codes, "
                           "BN + clip + quantize as thresholds -- on the core's activation stage for a core "
                           "backend -- max-pool on codes). Every activation code and logit is compared; "
                           "exit status 1 if any differs.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.pt written by 'dorefa train'")
    parser.add_argument("--backend", type=_infer_backend, default="ref", metavar="NAME",
                        help=f"where the products and thresholds run: {', '.join(INFER_BACKENDS)} "
                             "(default ref; see 'dorefa train --help')")
    parser.add_argument("--data", metavar="PATH", help="directory of the data files (default: the checkpoint's)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="only the first N test samples")
    add_threads(parser)

    def run(args):
        from sw.inference import verify_inference
        set_threads(args)
        report = verify_inference(args.checkpoint, args.backend, data=args.data, limit=args.limit,
                                  open_transport=transport_opener(args.backend))
        print(report.summary())
        return 0 if report.bit_exact else 1

    return run
