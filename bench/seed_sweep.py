"""How much of a board build's Fmax is the design, and how much nextpnr's placement seed.

On a nearly full chip (the iCEBreaker's preset fills 90 % of the UP5K) nextpnr's
placement seed moves Fmax by a quarter or more, and a netlist change moves it as
a new seed would.  One build's Fmax is one draw; this bench reruns place and
route of one synthesised netlist under many seeds and reports the spread, so
that the Fmax a board's pinned seed (:attr:`boards.top.Board.seed`) closes can
be read against it: the design's Fmax is the distribution, the committed report
one reproducible point of it.

It reuses a finished build (``dorefa build --board B --out DIR``): DIR's build
script names nextpnr's command line and DIR holds yosys's netlist and the pin
constraints.  For each seed it runs that line with the seed replaced, its report
and log renamed (``seed_<N>.json``, ``seed_<N>.log`` in DIR) and no bitstream
written, and reads the achieved Fmax of the core's clock and the critical path's
end points.  A seed whose place and route runs past ``--step-timeout`` minutes is
stopped and recorded as not routed (nextpnr's router2 may loop forever on a few
overused wires for an unlucky seed: YosysHQ/nextpnr issue 1341).  ``--resume``
reads a seed's report where DIR already holds one newer than the netlist
instead of placing it again (a long sweep stopped half way goes on).

``--nextpnr-opts "OPTS"`` adds options to every seed's run (a placer setting
weighed against the build's own, on the same netlist and seeds); its reports are
then ``seed_<N>+<OPTS as a slug>.json`` beside the plain ones, and the report
names the options.  Options the sweep sets itself (the seed, the report, the
log, the netlist, the pins, the outputs) are refused.

Usage::

    python bench/seed_sweep.py DIR [--seeds 1-24] [--step-timeout MIN] [--resume] [--nextpnr-opts OPTS] [--out STEM]

writes ``STEM.json`` and ``STEM.md`` (default ``bench/reports/seed_sweep.<board>``).
One iCEBreaker seed takes 1-2 minutes on this machine kind, one ULX3S seed 40 or more.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/seed_sweep.py`
    sys.path.insert(0, str(ROOT))

from bench.reporting import write_report  # noqa: E402
from boards.build import build_steps, run_tool, toolchain_env  # noqa: E402
from boards.top import BOARDS  # noqa: E402

__all__ = ["parse_seeds", "parse_options", "run_name", "seed_command", "sweep", "summarise"]

DEFAULT_OUT = ROOT / "bench" / "reports" / "seed_sweep"

#: nextpnr's options that write the placed design (left out of a sweep's runs: only
#: the report is wanted, and the build's own outputs stay as they were).
_OUTPUTS = ("--asc", "--textcfg", "--write")
#: nextpnr's options a sweep sets itself (or takes from the build), refused in ``--nextpnr-opts``.
_OWN = ("--seed", "--report", "--log", "--json", "--pcf", "--lpf", "-r", "--randomize-seed") + _OUTPUTS


def parse_seeds(text: str) -> list[int]:
    """``"1-4,7"`` -> ``[1, 2, 3, 4, 7]``; ``ValueError`` unless integers >= 0, ascending ranges, no repeats."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"seeds must be integers or ranges like 1-24, got {part.strip()!r}") from None
        if low < 0 or high < low:
            raise ValueError(f"a seed range must be ascending integers >= 0, got {part.strip()!r}")
        seeds.extend(range(low, high + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat in {text!r}")
    return seeds


def parse_options(text: str) -> list[str]:
    """``--nextpnr-opts``' words; ``ValueError`` (one line) for an option the sweep sets itself."""
    words = shlex.split(text)
    own = sorted({word.partition("=")[0] for word in words} & set(_OWN))
    if own:
        raise ValueError(f"--nextpnr-opts may not set {', '.join(own)}: the sweep sets the seed, the report, "
                         f"the log and the outputs, and places the build's netlist and pins")
    return words


def run_name(seed: int, options=()) -> str:
    """The stem of a seed's report and log: ``seed_<seed>``, with ``+<options as a slug>`` where
    extra options are added (so that runs with and without them share a build directory)."""
    slug = "_".join(word.lstrip("-") for word in options)
    return f"seed_{seed}" + (f"+{re.sub(r'[^A-Za-z0-9._-]', '-', slug)}" if slug else "")


def seed_command(line: str, seed: int, options=()) -> list[str]:
    """nextpnr's command line from the build script's ``line`` (``"$NEXTPNR_..." ...``), run under
    ``seed`` with the extra ``options`` (words) last: its report to ``<run_name>.json``, its log to
    ``<run_name>.log``, no placed design written.  ``ValueError`` if the line has no ``--seed`` or
    no ``--report``."""
    words = shlex.split(line)
    if "--seed" not in words or "--report" not in words:
        raise ValueError(f"not a nextpnr line of a dorefa build (no --seed or --report): {line!r}")
    name = run_name(seed, options)
    replace = {"--seed": str(seed), "--report": f"{name}.json", "--log": f"{name}.log"}
    command, index = [], 0
    while index < len(words):
        word = words[index]
        if word in _OUTPUTS:
            index += 2
            continue
        command.append(word)
        if word in replace:
            command.append(replace[word])
            index += 1
        index += 1
    if "--log" not in command:
        command += ["--log", replace["--log"]]
    return command + list(options)


def _critical_path(report: dict) -> dict:
    """The first critical path's start and end cells and its delay (ns)."""
    paths = report.get("critical_paths") or []
    if not paths:
        return {}
    steps = paths[0]["path"]
    return {"from": steps[0]["from"]["cell"], "to": steps[-1]["to"]["cell"],
            "delay_ns": round(sum(step["delay"] for step in steps), 2)}


def sweep(build_dir: Path, seeds: list[int], *, options=(), step_timeout_s=None, resume=False, runner=run_tool,
          log=print) -> list[dict]:
    """Place and route ``build_dir``'s netlist under each seed, with nextpnr's extra ``options``
    (words); a row per seed: its Fmax (MHz, of the report's one clock; ``None`` if not routed)
    and critical path.  With ``resume``, a seed whose report is already there, newer than the
    netlist, is read."""
    script = next(build_dir.glob("build_*.sh"), None)
    if script is None:
        raise ValueError(f"{build_dir} holds no build script: run dorefa build --out {build_dir} first")
    _, steps = build_steps(script.read_text())
    variable, line = next(((v, l) for v, l in steps if v.startswith("NEXTPNR")), (None, None))
    if line is None:
        raise ValueError(f"{script} runs no nextpnr")
    env = toolchain_env()
    program = env[variable]
    words = shlex.split(line)
    netlist = build_dir / words[words.index("--json") + 1]  # yosys's, which every seed places
    rows = []
    for seed in seeds:
        command = [program if word == f"${variable}" else word for word in seed_command(line, seed, options)]
        path = build_dir / f"{run_name(seed, options)}.json"
        if resume and path.is_file() and path.stat().st_mtime > netlist.stat().st_mtime:
            log(f"seed {seed}: placed before, its report read")
        else:
            log(f"seed {seed} ...")
            try:
                runner(command, cwd=build_dir, env=env, timeout=step_timeout_s)
            except subprocess.TimeoutExpired:
                rows.append({"seed": seed, "fmax_mhz": None, "routed": False})
                log(f"seed {seed}: stopped after {step_timeout_s / 60:g} minutes, not routed")
                continue
        report = json.loads(path.read_text())
        (fmax,) = report["fmax"].values()  # the core's clock, the one clock a board build constrains
        rows.append({"seed": seed, "fmax_mhz": round(float(fmax["achieved"]), 2), "routed": True,
                     "constraint_mhz": round(float(fmax["constraint"]), 2), "critical_path": _critical_path(report)})
        log(f"seed {seed}: {rows[-1]['fmax_mhz']:.2f} MHz")
    return rows


def summarise(rows: list[dict], board_seed: int) -> dict:
    """Minimum, median, mean and maximum Fmax over the routed seeds, the best seed, and the board's
    pinned seed's Fmax and rank (1: the best) where it was swept."""
    routed = [row for row in rows if row["routed"]]
    if not routed:
        return {"routed": 0, "seeds": len(rows)}
    fmax = [row["fmax_mhz"] for row in routed]
    best = max(routed, key=lambda row: row["fmax_mhz"])
    summary = {"seeds": len(rows), "routed": len(routed), "min_mhz": min(fmax),
               "median_mhz": round(statistics.median(fmax), 2), "mean_mhz": round(statistics.fmean(fmax), 2),
               "max_mhz": max(fmax), "best_seed": best["seed"]}
    pinned = next((row for row in routed if row["seed"] == board_seed), None)
    if pinned is not None:
        summary["board_seed"] = board_seed
        summary["board_seed_mhz"] = pinned["fmax_mhz"]
        summary["board_seed_rank"] = 1 + sum(f > pinned["fmax_mhz"] for f in fmax)
    return summary


def _markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"# Fmax against nextpnr's placement seed: {result['board']}", "",
        f"Written by `{result['command']}`: one synthesised netlist (`{result['build']}`, the core "
        f"{result['core']}) placed and routed under each seed, asked {result['constraint_mhz']} MHz"
        + (f", with nextpnr's options `{result['nextpnr_opts']}` added to the build's." if result.get("nextpnr_opts")
           else "."), "",
    ]
    if s["routed"]:
        lines += [
            f"Over {s['routed']} routed seeds of {s['seeds']}: Fmax {s['min_mhz']:.2f} to {s['max_mhz']:.2f} MHz, "
            f"median {s['median_mhz']:.2f}, mean {s['mean_mhz']:.2f}; the best, seed {s['best_seed']}."
            + (f" The board's pinned seed ({s['board_seed']}) closes {s['board_seed_mhz']:.2f} MHz, "
               f"rank {s['board_seed_rank']} of {s['routed']}." if "board_seed" in s else ""), "",
        ]
    lines += ["| seed | Fmax (MHz) | critical path (from -> to) | delay (ns) |", "|---:|---:|---|---:|"]
    for row in result["rows"]:
        if not row["routed"]:
            lines.append(f"| {row['seed']} | not routed | | |")
            continue
        path = row.get("critical_path") or {}
        lines.append(f"| {row['seed']} | {row['fmax_mhz']:.2f} | `{path.get('from', '')}` -> `{path.get('to', '')}` "
                     f"| {path.get('delay_ns', '')} |")
    return "\n".join(lines) + "\n"


def _joined(argv: list[str]) -> list[str]:
    """``argv`` with ``--nextpnr-opts VALUE`` written ``--nextpnr-opts=VALUE``: argparse
    takes a lone value that starts with a dash (``--opt-timing``) for an option of its own."""
    out, words = [], iter(argv)
    for word in words:
        value = next(words, None) if word == "--nextpnr-opts" else None
        out.append(word if value is None else f"{word}={value}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="a finished `dorefa build --out DIR`")
    parser.add_argument("--seeds", default="1-24", help="seeds, e.g. 1-24 or 1,3,5-8 (default 1-24)")
    parser.add_argument("--step-timeout", type=float, metavar="MIN", default=None,
                        help="stop a seed's place and route after MIN minutes (default: no limit)")
    parser.add_argument("--resume", action="store_true",
                        help="read a seed's report already in DIR (newer than the netlist) instead of placing it again")
    parser.add_argument("--nextpnr-opts", default="", metavar="OPTS",
                        help="options added to every seed's nextpnr run, e.g. \"--placer-heap-timingweight 60\"")
    parser.add_argument("--out", type=Path, default=None, help="report stem (default bench/reports/seed_sweep.<board>)")
    args = parser.parse_args(_joined(sys.argv[1:] if argv is None else argv))
    try:
        seeds = parse_seeds(args.seeds)
        options = parse_options(args.nextpnr_opts)
        if args.step_timeout is not None and not args.step_timeout > 0:
            raise ValueError(f"--step-timeout must be minutes > 0, got {args.step_timeout:g}")
        report_path = args.build / "report.json"
        if not report_path.is_file():
            raise ValueError(f"{args.build} holds no report.json: run dorefa build --out {args.build} first")
        build = json.loads(report_path.read_text())
        if build.get("board") not in BOARDS:
            raise ValueError(f"{report_path} is not a board build's report")
    except ValueError as error:
        print(f"seed_sweep: {error}", file=sys.stderr)
        return 2
    rows = sweep(args.build, seeds, options=options,
                 step_timeout_s=None if args.step_timeout is None else 60 * args.step_timeout,
                 resume=args.resume, log=lambda text: print(text, file=sys.stderr, flush=True))
    board = build["board"]
    core = " ".join(f"{k}={v}" for k, v in build["core_params"].items()
                    if k in ("pe", "vectors", "simd", "max_bits", "max_act_bits"))
    result = {
        "command": "python bench/seed_sweep.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "board": board, "build": str(args.build), "core": core, "core_params": build["core_params"],
        "constraint_mhz": build["freq_mhz"], "nextpnr_opts": shlex.join(options), "rows": rows,
        "summary": summarise(rows, BOARDS[board].seed),
    }
    write_report(args.out or DEFAULT_OUT.with_name(f"seed_sweep.{board}"), result, _markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
