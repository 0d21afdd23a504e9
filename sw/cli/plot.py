"""``dorefa plot``: the loss and accuracy curves of earlier training runs side by side
(:func:`sw.plots.plot_runs`)."""

from __future__ import annotations

from . import command


@command("plot")
def _plot_command(parser):
    parser.description = ("Draw the loss and accuracy curves (train and test, per epoch) of one or more "
                          "'dorefa train' output directories side by side, one column a run, from each "
                          "RUN_DIR/metrics.jsonl.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a 'dorefa train' output directory")
    parser.add_argument("-o", "--output", default="curves.png", metavar="FILE.png",
                        help="the PNG to write (default curves.png in the current directory)")

    def run(args):
        from sw.plots import plot_runs
        path = plot_runs(args.run_dirs, args.output)
        print(f"curves of {len(args.run_dirs)} run{'s' if len(args.run_dirs) > 1 else ''} in {path}")
        return 0

    return run
