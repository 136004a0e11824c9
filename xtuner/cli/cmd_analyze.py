"""`xtuner analyze representations|retrieval SOURCE ...`: analyses of trained encoders (MLflow run ids, sweep names,
kept-weights folders), always beside the untuned pretrained model. See docs/analysis.md."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from xtuner.cli.common import output_folder
from xtuner.errors import XtunerError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="MLflow run ids, sweep names or kept-weights folders (the untuned model is always added)")  # fmt: skip
    p.add_argument("--languages", help="comma-separated languages (default: all of the task's)")
    p.add_argument("--data-dir", help="data folder for real tasks (XTREME download, releases, local parquet)")
    p.add_argument("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--model", help="with no SOURCE: the pretrained model to analyse alone (e.g. builtin:tiny-xlmr)")
    p.add_argument("--out", type=Path, help="output folder (default analysis-out/<command>-<task>)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the results back to the analysed runs")
    p.add_argument("--batch-size", type=int, default=64)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="representation and retrieval analyses of trained encoders")
    asub = p.add_subparsers(dest="analyze_command", metavar="ANALYSIS")
    r = asub.add_parser("representations", help="alignment of parallel sentence representations with English")
    _common(r)
    r.add_argument("--task", help="a sentence-pair task (default: the task the encoders were trained on)")
    r.add_argument("--rows", type=int, default=2000, help="parallel train rows per language (default 2000)")
    r.add_argument("--plot-lang", help="target language of the projection plot (default: the last one)")
    r.add_argument("--projection", choices=("pca", "tsne"), default="pca")
    r.add_argument("--seed", type=int, default=0, help="seed of the random negatives and of the plotted sample")
    r.set_defaults(func=representations)
    t = asub.add_parser("retrieval", help="a retrieval task (tatoeba, bucc2018, synth-*) with trained encoders")
    _common(t)
    t.add_argument("--task", required=True, help="tatoeba | bucc2018 | synth-tatoeba | synth-bucc")
    t.add_argument("--layer", type=int, help="hidden-states layer: 0 = embeddings, L = last, negative counts from the end "
                   "(default: XTREME's for the model's depth)")
    t.add_argument("--split", choices=("test", "validation"), default="test")
    t.set_defaults(func=retrieval)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _languages(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def _common_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of both analyses that `_common`'s options give (libraries quietened first)."""
    from xtuner.trial.run import quiet_libraries

    if args.batch_size < 1:
        raise XtunerError(f"--batch-size must be at least 1, got {args.batch_size}")
    quiet_libraries()
    return {"languages": _languages(args.languages), "data_dir": args.data_dir, "tracking_uri": args.tracking_uri,
            "model": args.model, "batch_size": args.batch_size}  # fmt: skip


def _log_back(args: argparse.Namespace, log, where: str) -> None:
    """Unless --no-mlflow: ``log(tracking_uri)`` and say to how many runs it wrote."""
    from xtuner.analysis.representations.subjects import default_tracking_uri

    if not args.no_mlflow:
        runs = log(default_tracking_uri(args.tracking_uri))
        if runs:
            print(f"logged to {len(runs)} MLflow run(s) under {where}")


def representations(args: argparse.Namespace) -> int:
    if args.out:
        output_folder(args.out, create=False)  # before the analysis, which may take minutes
    options = _common_options(args)
    from xtuner.analysis.representations import outputs
    from xtuner.analysis.representations.run import analyse

    a = analyse(args.sources, task=args.task, rows=args.rows, seed=args.seed, plot_lang=args.plot_lang, **options)
    out = output_folder(args.out or Path("analysis-out") / f"representations-{a.task}")
    paths = outputs.write(out, outputs.files(a, plot_lang=args.plot_lang, projection_kind=args.projection))
    print(outputs.summary_md(a))
    for note in a.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {', '.join(p.name for p in paths)} to {out}")
    _log_back(args, lambda uri: outputs.log_to_mlflow(a, out, uri),
              "analysis/representations/ (and their sweeps' parent runs)")  # fmt: skip
    return 0


def retrieval(args: argparse.Namespace) -> int:
    if args.out:
        output_folder(args.out, create=False)
    options = _common_options(args)
    from xtuner.analysis.representations.retrieval import analyse_retrieval, log_to_mlflow, table_csv

    a = analyse_retrieval(args.sources, task=args.task, layer=args.layer, split=args.split, **options)
    out = output_folder(args.out or Path("analysis-out") / f"retrieval-{a.task}")
    (out / "table.csv").write_text(table_csv(a))
    _print_retrieval(a)
    print(f"wrote table.csv to {out}")
    _log_back(args, lambda uri: log_to_mlflow(a, uri), f"analysis/retrieval/{a.task}/")
    return 0


def _print_retrieval(a) -> None:
    from rich.console import Console
    from rich.table import Table

    from xtuner.tasks import get_task

    main = get_task(a.task).main_metric
    langs = list(next(iter(a.scores.values())))
    table = Table(title=f"{a.task}: {main} (XTREME's retrieval recipe)")
    table.add_column("encoder")
    for lang in langs:
        table.add_column(lang, justify="right")
    for s in a.subjects:
        per = a.scores[s.label]
        table.add_row(s.label, *("-" if math.isnan(per[lang].get(main, math.nan)) else f"{per[lang][main]:.1f}"
                                 for lang in langs))  # fmt: skip
    Console().print(table)
