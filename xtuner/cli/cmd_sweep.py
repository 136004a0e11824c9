"""`xtuner sweep run|resume|status|submit|sync`: many trials on Ray Tune with ASHA/Optuna, tracked in MLflow.

`run SPEC --dry-run` validates the spec and prints the trial list, the count and the resource plan without
starting (or importing) Ray. SPEC is a YAML path or the name of a spec in ./sweeps or the package's sweeps/
folder (default: demo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xtuner.errors import XtunerError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run, resume or inspect a sweep (Ray Tune + MLflow)")
    ssub = p.add_subparsers(dest="sweep_command", metavar="ACTION")

    r = ssub.add_parser("run", help="run a sweep spec (YAML)")
    r.add_argument("spec", nargs="?", default="demo", help="spec file or name in sweeps/ (default: demo)")
    r.add_argument("--dry-run", action="store_true", help="validate and print the trials; start nothing")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value by dotted path, e.g. scheduler.type=none, trial.max_train_examples=200")  # fmt: skip
    r.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    r.add_argument("--storage", help="folder for Tune state and checkpoints (overrides storage)")
    r.add_argument("--overwrite", action="store_true", help="delete an earlier sweep of the same name first")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.set_defaults(func=run)

    s = ssub.add_parser("resume", help="continue an interrupted sweep (finished trials are not re-run)")
    s.add_argument("sweep", help="sweep name (under --storage) or its folder")
    s.add_argument("--storage", help="where to look for the sweep name (default ./xtuner_results)")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the sweep used)")
    s.add_argument("--retry-errored", action="store_true", help="also re-run trials that ended in an error")
    s.add_argument("--trust-folder", action="store_true",
                   help="resume even though the folder's pickles are not signed with your key (another user's or "
                        "machine's sweep); they are unpickled, which runs code: only for folders whose writers you "
                        "trust")  # fmt: skip
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=resume)

    sb = ssub.add_parser("submit", help="run a sweep on a Ray cluster (job submission; docs/cluster.md)")
    sb.add_argument("spec", help="spec file inside the working directory (it is what gets uploaded)")
    sb.add_argument("--address", help="the cluster's dashboard, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS, as "
                                      "for `ray job submit`)")  # fmt: skip
    sb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for run")
    sb.add_argument("--tracking-uri", help="MLflow URI as the driver on the head sees it")
    sb.add_argument("--storage", help="storage for Tune state and checkpoints, e.g. s3://bucket/sweeps")
    sb.add_argument("--working-dir", default=".", help="folder uploaded as the job's working_dir (default .)")
    sb.add_argument("--wait", action="store_true", help="wait for the job to end")
    sb.set_defaults(func=submit)

    st = ssub.add_parser("status", help="table of a sweep's trials: state, params, dev metric, best")
    st.add_argument("sweep", help="sweep name (under --storage) or its folder")
    st.add_argument("--storage", help="where to look for the sweep name (default ./xtuner_results)")
    st.add_argument("--json", action="store_true",
                    help="one JSON object: state, MLflow parent run, best configs, trials (config, status, metrics)")  # fmt: skip
    st.set_defaults(func=status)

    ls = ssub.add_parser("list", help="the sweeps in a storage folder: state, trial counts, dates")
    ls.add_argument("--storage", help="the storage folder (default ./xtuner_results)")
    ls.add_argument("--json", action="store_true", help="a JSON list instead of the table")
    ls.set_defaults(func=list_)

    sy = ssub.add_parser("sync", help="write to MLflow what a sweep's tracking missed (no duplicates)")
    sy.add_argument("sweep", help="sweep name (under --storage) or its folder")
    sy.add_argument("--storage", help="where to look for the sweep name (default ./xtuner_results)")
    sy.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the sweep used)")
    sy.set_defaults(func=sync)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def resolve_spec_path(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if "/" not in spec and not spec.endswith((".yaml", ".yml")):
        for folder in (Path.cwd() / "sweeps", Path(__file__).resolve().parents[2] / "sweeps"):
            candidate = folder / f"{spec}.yaml"
            if candidate.is_file():
                return candidate
    raise XtunerError(f"sweep spec {spec!r} not found (a YAML file, or a name in ./sweeps)")


def run(args: argparse.Namespace) -> int:
    from xtuner.cli.common import parse_set
    from xtuner.sweep.report import print_plan
    from xtuner.sweep.runner import check_dry_run, load_plan, run_sweep

    plan = load_plan(resolve_spec_path(args.spec), parse_set(args.set), tracking_uri=args.tracking_uri,
                     storage=args.storage)  # fmt: skip
    if args.dry_run:
        print_plan(plan)
        check_dry_run(plan, args.overwrite)  # after the plan: the error is the last line, as the real run's
        return 0
    state = run_sweep(plan, overwrite=args.overwrite, quiet=args.quiet)
    return exit_code(state)


def exit_code(state) -> int:
    """0 when the sweep finished with at least one trial that has results (done or pruned); 1 when it did not
    finish, or when every trial failed (error or non-finite loss), which is said on stderr: a script that checks
    the exit status must not take a sweep of failures for results."""
    if not state.finished:
        return 1
    counts = state.counts()
    if state.trials and counts["done"] + counts["pruned"] == 0:
        print(f"error: no trial of sweep {state.name} has results ({counts['error']} failed, {counts['nonfinite']} "
              f"with a non-finite loss); `xtuner sweep status {state.name}` lists the errors", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def submit(args: argparse.Namespace) -> int:
    """Validate here (the cluster only sees the file), then submit `python -m xtuner sweep run SPEC ...`."""
    import os

    from xtuner.cli.common import parse_set
    from xtuner.cluster.submit import submit as submit_job
    from xtuner.cluster.submit import withheld_env
    from xtuner.sweep.runner import load_plan

    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise XtunerError("sweep submit: no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    spec = resolve_spec_path(args.spec)
    plan = load_plan(spec, parse_set(args.set), tracking_uri=args.tracking_uri, storage=args.storage)
    extra = [a for item in args.set for a in ("--set", item)]
    extra += ["--tracking-uri", args.tracking_uri] if args.tracking_uri else []
    extra += ["--storage", args.storage] if args.storage else []
    withheld = withheld_env()
    if withheld:
        print(f"note: not forwarding {', '.join(withheld)} to the job: Ray writes a job's environment into its logs "
              "and dashboard. Give the driver its MLflow credentials in ~/.mlflow/credentials on the head "
              "(docs/cluster.md, Security)", file=sys.stderr)  # fmt: skip
    job = submit_job(spec, address, working_dir=args.working_dir, extra_args=extra, wait=args.wait)
    print(f"submitted sweep {plan.spec.name} ({plan.n_trials} trials) as job {job}")
    return 0


def resume(args: argparse.Namespace) -> int:
    from xtuner.sweep.runner import resume_sweep

    state = resume_sweep(args.sweep, storage=args.storage, tracking_uri=args.tracking_uri,
                         retry_errored=args.retry_errored, trust_folder=args.trust_folder, quiet=args.quiet)  # fmt: skip
    return exit_code(state)


def status(args: argparse.Namespace) -> int:
    if args.json:
        import json

        from xtuner.sweep.export import load, status_dict

        state, sweep_dir = load(args.sweep, args.storage)
        print(json.dumps(status_dict(state, sweep_dir), indent=1, default=str))
        return 0
    from xtuner.sweep.runner import sweep_status

    sweep_status(args.sweep, args.storage)
    return 0


def list_(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from xtuner.sweep.export import DEFAULT_STORAGE, list_sweeps

    sweeps = list_sweeps(args.storage)
    if args.json:
        print(json.dumps(sweeps, indent=1))
        return 0
    where = args.storage or DEFAULT_STORAGE
    if not sweeps:
        print(f"no sweeps in {where}")
        return 0
    table = Table(title=f"sweeps in {where}")
    for col in ("sweep", "state", "trials", "started (UTC)", "last trial end (UTC)"):
        table.add_column(col)
    for s in sweeps:
        counts = ", ".join(f"{n} {k}" for k, n in s.get("counts", {}).items()) or s.get("error", "-")
        table.add_row(s["sweep"], s["state"], counts, _day(s.get("started_at")), _day(s.get("last_trial_end")))
    from xtuner.progress import line_width

    Console(width=line_width()).print(table)
    return 0


def _day(iso: str | None) -> str:
    return iso.replace("T", " ")[:16] if iso else "-"


def sync(args: argparse.Namespace) -> int:
    from xtuner.sweep.sync import sync_sweep

    report = sync_sweep(args.sweep, storage=args.storage, tracking_uri=args.tracking_uri)
    print(f"sweep {args.sweep}: {report.summary()}")
    return 0
