"""`xtuner report [SWEEP ...] [--experiment NAME]`: Table 1, per-language tables with significance, plots and one
HTML page from the MLflow runs of one or more sweeps (docs/report.md)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from xtuner.cli.common import output_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, significance and plots from MLflow runs of one or more sweeps")
    p.add_argument(
        "sweeps", nargs="*", metavar="SWEEP", help="sweep names (tag xtuner.sweep); several are combined"
    )
    p.add_argument("--experiment", help="MLflow experiment: its sweeps (all of them when no SWEEP is named)")
    p.add_argument(
        "--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db, as sweeps)"
    )
    p.add_argument("--out", type=Path, help="output folder (default report-out/<sweeps>)")
    p.add_argument(
        "--format", default="md,html,csv,json", help="comma-separated: md,html,csv,json (PNGs always)"
    )
    p.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's random draws (default 0)")
    p.add_argument(
        "--reference",
        type=Path,
        help="YAML of published numbers (default: the package's reference.yaml; docs/report.md)",
    )
    p.add_argument(
        "--no-log", action="store_true", help="do not log the files to the sweeps' MLflow parent runs"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xtuner.errors import XtunerError

    if args.resamples < 1:
        raise XtunerError(f"--resamples must be at least 1, got {args.resamples}")
    from xtuner.analysis.report import log_to_parents, report
    from xtuner.analysis.report.render import parse_formats, terminal, write

    formats = parse_formats(args.format)
    if args.out:
        output_folder(args.out, create=False)  # before reading MLflow and the bootstrap
    rep = report(args.sweeps, experiment=args.experiment, tracking_uri=args.tracking_uri, resamples=args.resamples,
                 seed=args.seed, reference=args.reference)  # fmt: skip
    out = output_folder(
        args.out or Path("report-out") / re.sub(r"[^A-Za-z0-9_.+-]+", "_", "+".join(rep.selection.sweeps))[:120]
    )
    paths = write(rep, out, formats)
    terminal(rep)
    kinds = sorted({p.suffix[1:] for p in paths})
    print(f"wrote {len(paths)} files ({', '.join(kinds)}) to {out}")
    if not args.no_log:
        runs = log_to_parents(rep, out)
        if runs:
            print(f"logged under report/ of the MLflow parent run of {', '.join(rep.selection.sweeps)}")
    return 0
