# amaranth: UnusedElaboratable=no
"""The catalogue of hardware units that ``dorefa generate`` can emit as Verilog.

Each :class:`UnitSpec` names a unit, the constructor parameters a user may
set (with types, defaults, allowed ranges and help) and the parameters the
shorthand flags (:data:`SHORTHAND_FLAGS`: ``--bits``, ``--width``,
``--max-bits``, ``--pe``, ``--simd``) map to.  Values arrive as strings from
the command line and are converted and range-checked here (every integer
parameter has a ``minimum .. maximum``, shown by ``dorefa generate --list``),
so no request reaches Amaranth or Yosys with a value they would crash on
(Amaranth refuses signals of 65536 bits or more with an internal assertion).
The upper bounds keep a generation to seconds or minutes; rules between
parameters (``pe`` divides ``rows``, ``acc_min <= acc_max`` ...) are the
unit constructor's, which then gets the unit's own message.

The training core and its compute units (``dot_product``, ``mac_array``,
``gemm``) serve every bitwidth up to ``max_bits`` at run time, so their
``--bits`` takes the widths to serve, ``N`` or ``W,A,G``, and sets
``max_bits`` to the widest (:func:`widest_bits`); ``dorefa build`` reads its
flags with the same code (:func:`parse_assignments` on ``UNITS["core"]``).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from amaranth.back import verilog
from amaranth.hdl import Const, Module, Value
from amaranth.lib import wiring

from sw.contract.codes import MAX_CODE_BITS
from sw.contract.core import ACC_LIMIT, CORE_DEFAULTS, CoreConfig, config_params
from sw.contract.gradients import term_bits
from sw.contract.link import LOAD_HEADER, MAX_FMAP_CODES, MAX_PAYLOAD, MAX_SUM_BITS, MAX_SUM_SLOTS
from sw.contract.prng import DEFAULT_SEED, STATE_BITS
from sw.contract.window import MAX_POOL, POOLS

from .batch_sum import MAX_PARTIAL_BITS
from .core import TrainingCore
from .dot_product import DotProduct
from .gemm import GemmEngine
from .gradient_quantizer import MAX_WIDTH as MAX_GRADIENT_WIDTH
from .mac_array import MacArray
from .plane_buffer import MEMORIES
from .popcount import ARCHS
from .threshold import VARIANTS
from .uart import MIN_DIVISOR

__all__ = ["Param", "UnitSpec", "UNITS", "SHORTHAND_FLAGS", "build_unit", "generate_verilog", "standalone",
           "parse_assignments", "widest_bits", "is_module_name"]

#: Command-line flags that set unit parameters (``--max-bits`` is ``max_bits`` here).
SHORTHAND_FLAGS = ("bits", "width", "max_bits", "pe", "simd")


@dataclass(frozen=True)
class Param:
    """One constructor parameter of a unit: its type, default, help and what is allowed.

    An ``int`` parameter must be in ``minimum .. maximum`` (both required);
    a ``str`` one one of ``choices``; a ``bool`` one true or false.  An
    ``int`` whose default is ``None`` also takes ``none``.
    """

    kind: type  # int, bool or str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: int | None = None
    maximum: int | None = None

    def __post_init__(self):
        if self.kind is int and (self.minimum is None or self.maximum is None or self.minimum > self.maximum):
            raise ValueError(f"an int parameter needs minimum <= maximum, got {self.minimum}..{self.maximum}")
        if self.kind is str and not self.choices:
            raise ValueError("a str parameter needs its choices")

    def allowed(self) -> str:
        """What the parameter takes, for messages and ``--list``: ``1..4096``, ``a|b``, ``true|false``."""
        if self.kind is bool:
            return "true|false"
        if self.kind is int:
            return f"{self.minimum}..{self.maximum}" + ("|none" if self.default is None else "")
        return "|".join(self.choices)

    def parse(self, name: str, text: str, param: str | None = None):
        """The value of ``text`` (a command-line string) for parameter ``param``,
        given as ``name`` (a flag such as ``--max-bits``, or ``param`` itself);
        ``ValueError`` saying what is allowed if it is not one."""
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name} must be true or false, got {text!r}")
        if self.kind is int:
            if text.strip().lower() in ("none", "") and self.default is None:
                return None
            try:
                value = int(text, 0)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {text!r}") from None
            if not self.minimum <= value <= self.maximum:
                what = name if param in (None, name) else f"{name}: {param}"
                raise ValueError(f"{what} must be in {self.minimum}..{self.maximum}, got {value}")
            return value
        if self.choices is not None and text not in self.choices:
            raise ValueError(f"{name} must be one of {', '.join(self.choices)}, got {text!r}")
        return text


@dataclass(frozen=True)
class UnitSpec:
    name: str
    summary: str
    factory: Callable[..., Any]
    params: dict[str, Param]
    shorthands: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "bits" -> ("act_bits",)
    #: ``--bits`` gives the widths the unit must serve (``N`` or ``W,A,G``) and
    #: its one target gets the widest: the unit serves every width up to it
    #: at run time (the training core's ``max_bits``).
    bits_widest: bool = False

    def defaults(self) -> dict:
        return {name: p.default for name, p in self.params.items()}


def _popcount(width, stages, arch):
    from .popcount import PopcountTree
    return PopcountTree(width, stages=stages, arch=arch)


def _dot_product(length, max_bits, max_lanes, popcount_stages, popcount_arch):
    from .dot_product import DotProduct
    return DotProduct(length, max_bits=max_bits, max_lanes=max_lanes, popcount_stages=popcount_stages,
                      popcount_arch=popcount_arch)


def _mac_array(**params):
    from .mac_array import MacArray
    return MacArray(**params)


def _gemm(**params):
    from .gemm import GemmEngine
    return GemmEngine(**params)


def _threshold(act_bits, channels, acc_min, acc_max, variant):
    from .threshold import ThresholdUnit
    if acc_max < acc_min:
        raise ValueError(f"acc_max must be >= acc_min, got acc_min={acc_min}, acc_max={acc_max}")
    return ThresholdUnit(act_bits, channels, range(acc_min, acc_max + 1), variant=variant)


def _serial_threshold(max_act_bits, channels, acc_width, read_stages):
    from .serial_threshold import SerialThresholdUnit
    return SerialThresholdUnit(max_act_bits, channels, acc_width, read_stages=read_stages)


def _maxpool(act_bits, channels, height, width, kernel, stride):
    from .maxpool import MaxPool
    return MaxPool(act_bits, channels, height, width, kernel, stride)


def _gradient_quantizer(gbits, width, depth, seed):
    from .gradient_quantizer import GradientQuantizer
    return GradientQuantizer(gbits=gbits, width=width, depth=depth, seed=seed)


def _batch_sum(slots, partial_bits, sum_bits):
    from .batch_sum import BatchSum
    return BatchSum(slots=slots, partial_bits=partial_bits, sum_bits=sum_bits)


def _sum_float(sum_bits):
    from .sum_float import SumToFloat
    return SumToFloat(sum_bits=sum_bits)


def _sum_reader(slots, sum_bits, read_latency):
    from .sum_reader import SumReader
    return SumReader(slots=slots, sum_bits=sum_bits, read_latency=read_latency)


def _window(depth, max_bits, max_cols):
    from .window import WindowGenerator
    return WindowGenerator(depth=depth, max_bits=max_bits, max_cols=max_cols)


def _prng(seed):
    from .prng import XorShift32
    return XorShift32(seed)


def _uart_rx(divisor):
    from .uart import UARTReceiver
    return UARTReceiver(divisor)


def _uart_tx(divisor):
    from .uart import UARTTransmitter
    return UARTTransmitter(divisor)


def _core(**params):
    return TrainingCore(**params)


def _request_checker(**params):
    from .request_checker import RequestChecker
    config = CoreConfig(**params)
    if config.problems():
        raise ValueError("; ".join(config.problems()))
    return RequestChecker(config)


def _uart_core(clk_freq, baud, **params):
    from .core import UARTCore
    return UARTCore(clk_freq, baud, **params)


def _int(default, help, minimum, maximum):
    """An ``int`` :class:`Param` allowed in ``minimum .. maximum``."""
    return Param(int, default, help, minimum=minimum, maximum=maximum)


# Upper bounds of the catalogue (see the module docstring): sizes that generate in
# seconds to a few minutes, well inside what Amaranth can represent.
_MAX_WORD = 4096           # popcount width, vector lengths, matrix sides
_MAX_VECTOR = 1024         # dot-product length, MAC-array and threshold/max-pool sizes
_MAX_LANES = 64            # processing elements
_MAX_SIMD = 1024           # SIMD lanes (columns per cycle; the ULX3S preset has 128)
_MAX_STAGES = 32           # pipeline levels (the unit checks its own, smaller, limit)
_MAX_SEED = 2**STATE_BITS - 1
_MAX_DIVISOR = 1 << 24     # clock cycles per UART bit
_MAX_SUM_LANES = 1 << 16   # lanes of one dot product (sizes its sum)


def _core_params():
    return {
        "max_rows": _int(CORE_DEFAULTS["max_rows"], "largest matrix: rows", 1, _MAX_VECTOR),
        "max_cols": _int(CORE_DEFAULTS["max_cols"], "largest matrix: columns (and a frame must hold a vector)",
                         1, MAX_PAYLOAD),
        "max_bits": _int(CORE_DEFAULTS["max_bits"], "widest code (bits)", 1, MAX_CODE_BITS),
        "pe": _int(CORE_DEFAULTS["pe"], "rows computed in parallel (<= max_rows)", 1, _MAX_LANES),
        "simd": _int(CORE_DEFAULTS["simd"], "columns per cycle (<= max_cols)", 1, _MAX_SIMD),
        "max_payload": _int(CORE_DEFAULTS["max_payload"], "largest frame payload (bytes)", LOAD_HEADER + 1,
                            MAX_PAYLOAD),
        "max_act_bits": _int(CORE_DEFAULTS["max_act_bits"], "widest activation code (0: no threshold stage)",
                             0, MAX_CODE_BITS),
        "sum_slots": _int(CORE_DEFAULTS["sum_slots"], "batch sums of weight gradients held (0: none)",
                          0, MAX_SUM_SLOTS),
        "sum_bits": _int(CORE_DEFAULTS["sum_bits"], "bits of each batch sum (0 without sums)", 0, MAX_SUM_BITS),
        "fmap_codes": _int(CORE_DEFAULTS["fmap_codes"], "feature-map codes held (LOAD_FMAP, windows; 0: none)",
                           0, MAX_FMAP_CODES),
        "packed_accumulators": _int(CORE_DEFAULTS["packed_accumulators"],
                                    "1: RUN replies bit-packed accumulators on request (FLAG_PACKED)", 0, 1),
        "max_pool": _int(CORE_DEFAULTS["max_pool"], "largest max-pool of a window's activation codes "
                         f"(one of {POOLS}; 1: none)", 1, MAX_POOL),
        "vectors": _int(_default(TrainingCore, "vectors"), "vectors of a tile (each matrix word meets them all)",
                        1, 256),
        "popcount_stages": _int(_default(TrainingCore, "popcount_stages"), "pipeline levels in each popcount tree",
                                0, _MAX_STAGES),
        "popcount_arch": Param(str, _default(TrainingCore, "popcount_arch"), "popcount tree architecture", ARCHS),
        "fetch_stages": _int(_default(TrainingCore, "fetch_stages"), "registers after the plane buffers' reads",
                             0, 2),
        "drains": _int(_default(TrainingCore, "drains"), "chains the sums leave through (a divisor of pe)",
                       1, _MAX_LANES),
        "matrix_memory": Param(str, _default(TrainingCore, "matrix_memory"), "where the matrix planes are held",
                               MEMORIES),
    }


def _config_params():
    """The core's parameters that the protocol knows (:func:`sw.contract.core.config_params`)."""
    return config_params(_core_params())


_CONFIG_SHORTHANDS = {"bits": ("max_bits",), "max_bits": ("max_bits",), "pe": ("pe",), "simd": ("simd",)}
_CORE_SHORTHANDS = _CONFIG_SHORTHANDS | {"vectors": ("vectors",)}

#: The run-time-precision units: ``--bits`` gives the widths to serve and sets ``max_bits`` to the widest.
_RUN_TIME_BITS = {"bits": ("max_bits",), "max_bits": ("max_bits",)}
_ARRAY_SHORTHANDS = _RUN_TIME_BITS | {"pe": ("pe",), "simd": ("simd",), "vectors": ("vectors",)}


def _array_params(cls):
    """The parameters of :class:`hw.mac_array.MacArray` and of :class:`hw.gemm.GemmEngine` (the same)."""
    return {
        "pe": _int(4, "rows of a tile (matrix rows in parallel)", 1, _MAX_LANES),
        "vectors": _int(_default(cls, "vectors"), "vectors of a tile (each matrix word meets them all)",
                        1, _MAX_LANES),
        "simd": _int(16, "lanes per plane word (columns per cycle)", 1, _MAX_SIMD),
        "max_bits": _int(MAX_CODE_BITS, "widest code of either side (bits; every width up to it at run time)",
                         1, MAX_CODE_BITS),
        "max_rows": _int(16, "largest matrix: rows", 1, _MAX_WORD),
        "max_cols": _int(64, "largest matrix: columns", 1, _MAX_WORD),
        "popcount_stages": _int(_default(cls, "popcount_stages"), "pipeline levels in each popcount tree",
                                0, _MAX_STAGES),
        "popcount_arch": Param(str, _default(cls, "popcount_arch"), "popcount tree architecture", ARCHS),
        "fetch_stages": _int(_default(cls, "fetch_stages"), "registers after the plane buffers' reads", 0, 2),
        "drains": _int(_default(cls, "drains"), "chains the sums leave through (a divisor of pe; "
                       "a group drains in pe*vectors/drains cycles)", 1, _MAX_LANES),
    }



def _default(cls, name: str):
    """The default of ``cls``'s constructor parameter ``name`` (the one definition)."""
    return inspect.signature(cls).parameters[name].default


UNITS: dict[str, UnitSpec] = {spec.name: spec for spec in [
    UnitSpec("popcount", "compressor-tree popcount (stream)", _popcount, {
        "width": _int(64, "input word width", 1, _MAX_WORD),
        "stages": _int(0, "pipeline register levels (at most the tree's depth)", 0, _MAX_STAGES),
        "arch": Param(str, "chain", "tree architecture", ARCHS),
    }, {"width": ("width",)}),
    UnitSpec("dot_product", "bit-serial dot-product unit (one AND + popcount plane pair per cycle, Eqn 3; "
             "any precision up to max_bits at run time)", _dot_product, {
        "length": _int(64, "lanes per plane (columns per cycle)", 1, _MAX_VECTOR),
        "max_bits": _int(_default(DotProduct, "max_bits"), "widest code of either side (bits)", 1, MAX_CODE_BITS),
        "max_lanes": Param(int, _default(DotProduct, "max_lanes"),
                           "most lanes of one dot product, length x folds (>= length; default: length)",
                           minimum=1, maximum=_MAX_SUM_LANES),
        "popcount_stages": _int(_default(DotProduct, "popcount_stages"), "pipeline levels in the popcount tree",
                                0, _MAX_STAGES),
        "popcount_arch": Param(str, _default(DotProduct, "popcount_arch"), "popcount tree architecture", ARCHS),
    }, _RUN_TIME_BITS | {"width": ("length",)}, bits_widest=True),
    UnitSpec("mac_array", "pe x vectors bit-serial dot-product units over plane buffers (GEMM tiles, "
             "precision at run time)", _mac_array, _array_params(MacArray), _ARRAY_SHORTHANDS, bits_widest=True),
    UnitSpec("gemm", "GEMM engine: plane writer, plane buffers, MAC array, signed correction "
             "(codes in, exact signed or unsigned products out)", _gemm, {
                 **_array_params(GemmEngine),
                 "matrix_memory": Param(str, _default(GemmEngine, "matrix_memory"),
                                        "matrix planes in block RAM or single-port RAM (iCE40 UltraPlus SPRAM; "
                                        "pe*simd <= 64)", MEMORIES),
                 "result_stages": _int(_default(GemmEngine, "result_stages"),
                                       "registers after the result banks' reads (one more cycle of result latency)",
                                       0, 1)},
             _ARRAY_SHORTHANDS, bits_widest=True),
    UnitSpec("threshold", "threshold activation unit (BN + clip + quantize)", _threshold, {
        "act_bits": _int(2, "activation code bits A", 1, MAX_CODE_BITS),
        "channels": _int(16, "channels with their own thresholds", 1, _MAX_VECTOR),
        "acc_min": _int(-4096, "smallest accumulator", -ACC_LIMIT, ACC_LIMIT - 1),
        "acc_max": _int(4096, "largest accumulator (>= acc_min)", -ACC_LIMIT, ACC_LIMIT - 1),
        "variant": Param(str, "parallel", "comparator bank or pipelined binary search", VARIANTS),
    }, {"bits": ("act_bits",)}),
    UnitSpec("serial_threshold", "serial threshold activation, the core's stage (one comparator, code width "
             "up to max_act_bits at run time)", _serial_threshold, {
                 "max_act_bits": _int(2, "widest activation code", 1, MAX_CODE_BITS),
                 "channels": _int(16, "channels with their own thresholds", 1, _MAX_VECTOR),
                 "acc_width": _int(32, "bits of a signed accumulator and of a threshold", 2, 32),
                 "read_stages": _int(0, "registers after the threshold memory's read", 0, 1),
             }, {"bits": ("max_act_bits",), "width": ("acc_width",)}),
    UnitSpec("maxpool", "streaming max-pool on activation codes", _maxpool, {
        "act_bits": _int(2, "activation code bits A", 1, MAX_CODE_BITS),
        "channels": _int(16, "channels", 1, _MAX_VECTOR),
        "height": _int(8, "feature map height", 1, _MAX_VECTOR),
        "width": _int(8, "feature map width", 1, _MAX_VECTOR),
        "kernel": _int(2, "window size", 1, 16),
        "stride": Param(int, None, "window step (default: kernel)", minimum=1, maximum=16),
    }, {"bits": ("act_bits",), "width": ("width",)}),
    UnitSpec("gradient_quantizer", "stochastic gradient quantizer (per-sample max, PRNG noise)",
             _gradient_quantizer, {
                 "gbits": _int(6, "gradient code bits G", 1, MAX_CODE_BITS),
                 "width": _int(16, "bits of a signed input gradient", 1, MAX_GRADIENT_WIDTH),
                 "depth": _int(256, "longest sample (elements)", 1, 1 << 16),
                 "seed": _int(DEFAULT_SEED, "PRNG seed after reset (non-zero)", 1, _MAX_SEED),
             }, {"bits": ("gbits",), "width": ("width",)}),
    UnitSpec("batch_sum", "batch sum of aligned weight-gradient terms (one beat per cycle, sums in block RAM)",
             _batch_sum, {
                 "slots": _int(256, "sums held", 1, MAX_SUM_SLOTS),
                 "partial_bits": _int(32, "bits of a signed partial sum", 2, MAX_PARTIAL_BITS),
                 "sum_bits": _int(96, "bits of a sum (one term at shift 0 must fit)", term_bits(2), MAX_SUM_BITS),
             }),
    UnitSpec("sum_float", "batch sum to the binary32 bits of its 24-bit truncation (READ_SUMS width 0; "
             "pipelined, one a cycle)", _sum_float, {
                 "sum_bits": _int(96, "bits of the signed sum", 2, MAX_SUM_BITS),
             }),
    UnitSpec("sum_reader", "READ_SUMS' bytes: a run of batch sums read from a BatchSum, as low bytes or "
             "binary32, a byte a cycle", _sum_reader, {
                 "slots": _int(256, "sums held", 1, MAX_SUM_SLOTS),
                 "sum_bits": _int(96, "bits of the signed sum", 2, MAX_SUM_BITS),
                 "read_latency": _int(3, "cycles from the sums' read address to their data", 0, 8),
             }),
    UnitSpec("window", "sliding-window generator: a feature map in block RAM, its im2col vectors out "
             "(one code per cycle)", _window, {
                 "depth": _int(1024, "feature-map codes held", 1, MAX_FMAP_CODES),
                 "max_bits": _int(MAX_CODE_BITS, "widest code (bits)", 1, MAX_CODE_BITS),
                 "max_cols": _int(64, "most codes per vector", 1, _MAX_WORD),
             }, _RUN_TIME_BITS, bits_widest=True),
    UnitSpec("prng", "xorshift32 noise generator (16-bit draws)", _prng, {
        "seed": _int(DEFAULT_SEED, "state after reset (non-zero)", 1, _MAX_SEED),
    }),
    UnitSpec("uart_rx", "8N1 UART receiver (byte stream out)", _uart_rx, {
        "divisor": _int(104, "clock cycles per bit (clk_freq / baud)", MIN_DIVISOR, _MAX_DIVISOR),
    }),
    UnitSpec("uart_tx", "8N1 UART transmitter (byte stream in)", _uart_tx, {
        "divisor": _int(104, "clock cycles per bit (clk_freq / baud)", MIN_DIVISOR, _MAX_DIVISOR),
    }),
    UnitSpec("core", "training core: GEMM co-processor behind the framed host protocol (byte streams)", _core,
             _core_params(), _CORE_SHORTHANDS, bits_widest=True),
    UnitSpec("request_checker", "the core's request decoding: every check of a request, pipelined, and the "
             "first failing one", _request_checker, _config_params(), _CONFIG_SHORTHANDS, bits_widest=True),
    UnitSpec("uart_core", "training core with a UART host link (rx/tx pins, for boards)", _uart_core, {
        "clk_freq": _int(12_000_000, "clock frequency (Hz)", 1_000, 1_000_000_000),
        "baud": _int(115200, "serial line rate (at most clk_freq / 4)", 300, 12_000_000),
        **_core_params(),
    }, _CORE_SHORTHANDS, bits_widest=True),
]}


def is_module_name(name) -> bool:
    """Whether ``name`` can name a top module (and the files of a build): an
    identifier of letters, digits and ``_``, not starting with a digit."""
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def widest_bits(text: str) -> tuple[int, tuple[int, ...]]:
    """``(widest, widths)`` from a run-time-bitwidth unit's ``--bits``: ``"N"`` or ``"W,A,G"``.

    Each width must be a code width the core serves, ``1 .. 8`` (there is no
    full-precision 32 in hardware).  ``widest`` is what ``max_bits`` must be.
    """
    parts = [p.strip() for p in str(text).split(",")]
    allowed = f"one width N or W,A,G, each an integer in 1..{MAX_CODE_BITS}"
    if len(parts) not in (1, 3):
        raise ValueError(f"--bits takes {allowed}; got {text!r}")
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--bits takes {allowed}; got {text!r}") from None
    for width in widths:
        if not 1 <= width <= MAX_CODE_BITS:
            raise ValueError(f"--bits takes {allowed} (the core has no full-precision mode); got {text!r}")
    return max(widths), widths


def parse_assignments(spec: UnitSpec, assignments: list[str], *, bits: str | None = None,
                      width: str | None = None, max_bits: str | None = None, pe: str | None = None,
                      simd: str | None = None, vectors: str | None = None) -> dict:
    """Constructor keyword arguments from ``NAME=VALUE`` strings and the shorthand flags.

    ``bits``, ``width``, ``max_bits``, ``pe``, ``simd``, ``vectors`` are the texts of
    ``--bits`` ... ``--vectors`` (``None``: not given); each must apply to
    ``spec`` (:attr:`UnitSpec.shorthands`).  Two of them, or one and a
    ``--set``, giving the same parameter different values is an error.
    """
    values = spec.defaults()
    given = {}  # parameter -> (flag that set it, value)

    def put(target, value, source):
        if target in given and given[target][1] != value:
            raise ValueError(f"{given[target][0]} and {source} disagree on {target} "
                             f"({given[target][1]} against {value}); give one of them")
        given[target] = (source, value)
        values[target] = value

    flags = {"bits": bits, "width": width, "max_bits": max_bits, "pe": pe, "simd": simd, "vectors": vectors}
    for flag, text in flags.items():
        if text is None:
            continue
        option = "--" + flag.replace("_", "-")
        targets = spec.shorthands.get(flag)
        if not targets:
            raise ValueError(f"{option} does not apply to {spec.name}; set its parameters with --set "
                             f"({', '.join(spec.params)})")
        if flag == "bits" and spec.bits_widest:
            (target,) = targets
            put(target, widest_bits(text)[0], f"--bits {text}")
            continue
        parts = text.split(",") if len(targets) > 1 else [text]
        if len(parts) == 1 and len(targets) > 1:
            parts = parts * len(targets)
        if len(parts) != len(targets):
            raise ValueError(f"{option} for {spec.name} takes {len(targets)} values ({','.join(targets)}), "
                             f"got {text!r}")
        for target, part in zip(targets, parts):
            name = option if targets == (flag,) else target
            put(target, spec.params[target].parse(name, part, target), f"{option} {text}")
    for item in assignments:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--set takes NAME=VALUE, got {item!r}")
        if name not in spec.params:
            raise ValueError(f"{spec.name} has no parameter {name!r}; allowed: {', '.join(spec.params)}")
        value = spec.params[name].parse(name, text.strip())
        if name in given and given[name][0].startswith("--set"):
            given.pop(name)  # a later --set overrides an earlier one
        put(name, value, f"--set {item.strip()}")
    return values


def standalone(component):
    """``component`` as a top module that :func:`amaranth.back.verilog.convert` takes.

    An always-ready (or always-valid) stream's ``ready`` (``valid``) is a
    constant, not a signal, and Amaranth 0.5 refuses a constant among a
    top module's ports; such a component comes back wrapped in one whose
    ports are its flattened members (``i__valid``, ``o__payload``, ...: the
    names Amaranth gives them anyway) less the constants.  Any other
    component comes back unchanged.
    """
    members = list(component.signature.flatten(component))
    if all(not isinstance(value, Const) for _, _, value in members):
        return component
    return _Standalone(component, [(path, member, value) for path, member, value in members
                                   if not isinstance(value, Const)])


class _Standalone(wiring.Component):
    def __init__(self, component, members):
        self._component = component
        self._members = [("__".join(map(str, path)), member, value) for path, member, value in members]
        super().__init__({name: wiring.Member(member.flow, member.shape, init=member.init)
                          for name, member, _ in self._members})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self._component
        for name, member, value in self._members:
            port = Value.cast(getattr(self, name))
            if member.flow == wiring.In:
                m.d.comb += Value.cast(value).eq(port)
            else:
                m.d.comb += port.eq(Value.cast(value))
        return m


def build_unit(name: str, **params):
    """Construct unit ``name`` with ``params`` over its defaults."""
    if name not in UNITS:
        raise ValueError(f"unknown unit {name!r}; allowed: {', '.join(UNITS)}")
    spec = UNITS[name]
    unknown = set(params) - set(spec.params)
    if unknown:
        raise ValueError(f"{name} has no parameter {sorted(unknown)[0]!r}; allowed: {', '.join(spec.params)}")
    return spec.factory(**{**spec.defaults(), **params})


def generate_verilog(name: str, *, toplevel: str | None = None, **params) -> str:
    """Verilog text of unit ``name`` (top module ``toplevel``, default ``dorefa_<name>``).

    ``ValueError`` for a ``toplevel`` that is not a module name (:func:`is_module_name`).
    """
    if toplevel is not None and not is_module_name(toplevel):
        raise ValueError(f"top module name {toplevel!r} must be letters, digits and '_', "
                         f"not starting with a digit")
    component = standalone(build_unit(name, **params))
    return verilog.convert(component, name=toplevel or f"dorefa_{name}")
