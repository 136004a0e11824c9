"""`xtuner data inspect TASK --lang L --split S`: row count and one example of a split; `xtuner data prepare SPEC`:
load (and cache) every split a sweep reads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect and prepare datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    ins = dsub.add_parser("inspect", help="print the row count and one example of a split")
    ins.add_argument("task")
    ins.add_argument("--lang", default="en", help="language code (default: en)")
    ins.add_argument("--split", default="test", help="train | validation | test (default: test)")
    ins.add_argument("--index", type=int, default=0, help="which example to show (default: 0)")
    ins.add_argument(
        "--data-dir", type=Path, default=None, help="XTREME download/ dir or local parquet files"
    )
    ins.add_argument("--json", action="store_true", help='print {"count": N, "example": {...}}')
    ins.set_defaults(func=inspect)
    prep = dsub.add_parser("prepare", help="load and cache every dataset a sweep spec needs, once")
    prep.add_argument("spec", help="a sweep spec (YAML)")
    prep.add_argument("--data-dir", type=Path, default=None, help="overrides the spec's data_dir")
    prep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec key")
    prep.set_defaults(func=prepare)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def prepare(args: argparse.Namespace) -> int:
    """Run before a sweep (on a cluster: on the head), so that trials never race to download. Each task's data
    is loaded as its trials will read it: data_dir, per-split sources, languages and eval_split from the spec
    (top level, trial: and tasks.<task>.trial:)."""
    from xtuner.cli.common import parse_set
    from xtuner.sweep.report import planned_trials
    from xtuner.sweep.space import build_plan
    from xtuner.sweep.spec import load_spec
    from xtuner.tasks.xtreme.prepare import Job, prepare_jobs

    overrides = parse_set(args.set)
    if args.data_dir:
        overrides["data_dir"] = str(args.data_dir)
    spec = load_spec(args.spec, overrides)
    jobs: dict[tuple, Job] = {}
    for trial in planned_trials(build_plan(spec)):  # resolved: a protocol may select on another dev split
        job = _job(trial["task"], trial)
        jobs.setdefault((job.task, job.ctx.data_dir, tuple(sorted(job.ctx.splits.items())), job.languages,
                         job.eval_split, job.dev_split), job)  # fmt: skip
    print(f"preparing the data of {len(spec.tasks)} task(s); a line per split as it is ready", flush=True)
    done = prepare_jobs(jobs.values(), on_split=lambda i, n, line: print(f"  [{i:>{len(str(n))}}/{n}] {line}",
                                                                         flush=True))  # fmt: skip
    print(
        f"all {len(done)} splits of {len(spec.tasks)} task(s) load; downloads, if any, are now in the datasets cache"
    )
    return 0


def _job(task: str, fixed: dict):
    """The data a trial of `task` with these settings reads."""
    from xtuner.tasks import LoadContext
    from xtuner.tasks.xtreme.prepare import Job

    splits = {s: fixed[f"{s}_data"] for s in ("train", "validation", "test") if fixed.get(f"{s}_data")}
    data_dir = Path(fixed["data_dir"]) if fixed.get("data_dir") else None
    langs = tuple(fixed["languages"]) if fixed.get("languages") else None
    return Job(task, LoadContext(data_dir=data_dir, splits=splits), langs, fixed.get("eval_split", "test"),
               fixed.get("dev_split") or "validation")


def inspect(args: argparse.Namespace) -> int:
    from xtuner.errors import XtunerError
    from xtuner.tasks import LoadContext, get_task

    task = get_task(args.task)
    ds = task.load(args.split, args.lang, LoadContext(data_dir=args.data_dir))
    if not 0 <= args.index < max(len(ds), 1):
        raise XtunerError(f"--index {args.index} out of range: the split has {len(ds)} rows")
    example = _readable(ds.features, ds[args.index]) if len(ds) else None
    if args.json:
        print(json.dumps({"count": len(ds), "example": example}, ensure_ascii=False))
        return 0
    print(f"{task.name} {args.split}/{args.lang}: {len(ds)} rows")
    for key, value in (example or {}).items():
        print(f"  {key}: {value}")
    return 0


def _readable(features, row: dict) -> dict:
    """Add label names next to ClassLabel ids (e.g. label: 2 -> label_name: contradiction)."""
    from datasets import ClassLabel, List

    out = dict(row)
    for key, feat in features.items():
        if isinstance(feat, ClassLabel):
            out[f"{key}_name"] = feat.int2str(row[key])
        elif isinstance(feat, List) and isinstance(feat.feature, ClassLabel):
            out[f"{key}_names"] = [feat.feature.int2str(v) for v in row[key]]
    return out
