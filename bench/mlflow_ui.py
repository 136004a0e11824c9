"""Look at a sweep in the MLflow UI the way a researcher would, in a real (headless) browser, and keep screenshots.

    .venv/bin/python bench/mlflow_ui.py                  # runs the demo sweep (sweeps/demo.yaml) into a temp DB
    .venv/bin/python bench/mlflow_ui.py --db mlflow.db   # an existing tracking DB (e.g. after scripts/demo.sh)

Starts a real ``mlflow server`` on the sweep's sqlite DB (127.0.0.1, a free port), opens in headless Chromium
(playwright driving the distribution's ``chromium``: ``apt-get install -y chromium``, ``pip install playwright``;
no browser download) and saves in ``bench/results/mlflow_ui/``:

- ``home.png``: the bare server address (what ``http://127.0.0.1:5000`` shows);
- ``runs_default.png``: the address the sweep prints at its end (model-training mode), columns as MLflow picks them;
- ``runs_view.png``: the same table with the documented default view (docs/sweeps.md, "Reading a sweep in MLflow":
  `VIEW_COLUMNS`), set the way the UI's column picker stores it, the sweep's parent run expanded;
- ``runs_languages.png``: one task's finished runs, FT and DPT side by side, with ``test/<lang>/main`` per
  language and ``test/others/main``, sorted by the latter (a search filter and a sort, as a user sets them);
- ``parent.png``: the sweep's parent run (the second address the sweep prints);
- ``compare.png``: the compare view of the sweep's finished FT and DPT runs of one task (parallel coordinates,
  params and metrics side by side).

It prints what it looked at (addresses, run names, the stored column state) as JSON lines; bench/MLFLOW_UI.md
records what the screenshots showed and what was changed because of them. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "mlflow_ui"
VIEW_COLUMNS = [  # the documented default view: what a run is, its state, and the numbers that compare tasks
    ("tags", "xtuner.status"),
    ("params", "task"),
    ("params", "method"),
    ("params", "lr"),
    ("params", "psl"),
    ("params", "seed"),
    ("metrics", "best/dev/en/main"),
    ("metrics", "test/en/main"),
    ("metrics", "test/others/main"),
    ("metrics", "test/gap/main"),
    ("metrics", "test/avg/main"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(work: Path) -> Path:
    from xtuner.sweep.runner import load_plan, run_sweep

    db = work / "mlflow.db"
    if db.exists():  # --work with a finished demo sweep: reuse it
        return db
    plan = load_plan(
        ROOT / "sweeps" / "demo.yaml", tracking_uri=f"sqlite:///{db}", storage=str(work / "results")
    )
    t0 = time.time()
    run_sweep(plan, overwrite=True)
    print(json.dumps({"demo_sweep_seconds": round(time.time() - t0, 1)}), flush=True)
    return db


def start_server(db: Path, port: int) -> subprocess.Popen:
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("mlflow server did not answer within 120 s")


def sweep_runs(uri: str, experiment: str | None) -> tuple[str, dict, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exps = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    exps = [e for e in exps if e is not None and e.name != "Default"]
    if not exps:
        raise SystemExit(f"no experiment {experiment or ''} in {uri}")
    exp = exps[0]
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parent = next(r for r in runs if r.data.tags.get("xtuner.kind") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return exp.experiment_id, parent, children


def shoot(base: str, exp_id: str, parent, children: list) -> dict:
    from playwright.sync_api import sync_playwright

    from xtuner.sweep.run_meta import WORKFLOW, ui_links

    _, (runs_url, parent_url) = ui_links(base, exp_id, parent.info.run_id)
    names = sorted(r.info.run_name for r in children)
    seen: dict = {"runs_url": runs_url, "parent_url": parent_url, "run_names": names}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = new_page(browser, {})
        page.goto(base + "/")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(OUT / "home.png"))

        page.goto(runs_url)
        page.get_by_text(parent.info.run_name, exact=True).first.wait_for(timeout=60000)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(OUT / "runs_default.png"))
        stored = dict(page.evaluate("() => Object.entries(window.localStorage)"))
        (OUT / "stored_state.json").write_text(json.dumps(stored, indent=1))

        # the documented view, stored the way the column picker stores it, in a fresh browser profile
        view = view_state(stored, exp_id, parent.info.run_id)
        seen["view_state_key"] = next(iter(view), None)
        page = new_page(browser, view)
        page.goto(runs_url)
        page.get_by_text(names[0], exact=True).first.wait_for(timeout=60000)
        page.wait_for_timeout(4000)
        page.screenshot(path=str(OUT / "runs_view.png"))

        # per-language columns of one task, FT and DPT side by side, sorted by the mean of the other languages
        done = [r for r in children if r.data.tags.get("xtuner.status") == "done"]
        task = sorted({r.data.params.get("task") for r in done})[0]
        langs = sorted({k.split("/")[1] for r in done for k in r.data.metrics if k.startswith("test/")
                        and k.endswith("/main")} - {"avg", "others", "gap"})  # fmt: skip
        columns = [("params", "method"), ("params", "lr"), ("params", "psl"),
                   *(("metrics", f"test/{lang}/main") for lang in langs), ("metrics", "test/others/main")]  # fmt: skip
        filt = f"params.task = '{task}' and tags.`xtuner.status` = 'done'"
        view = view_state(stored, exp_id, parent.info.run_id, columns, search=filt,
                          order="metrics.`test/others/main`")  # fmt: skip
        page = new_page(browser, view)
        page.goto(runs_url)
        page.get_by_text("test/others/main").first.wait_for(timeout=60000)
        page.wait_for_timeout(4000)
        page.screenshot(path=str(OUT / "runs_languages.png"))
        seen["languages_view"] = {"task": task, "filter": filt, "languages": langs}

        page.goto(parent_url)
        page.get_by_text("xtuner.sweep", exact=False).first.wait_for(timeout=90000)  # its tags have loaded
        page.wait_for_timeout(3000)
        page.screenshot(path=str(OUT / "parent.png"))
        seen["parent_landed_on"] = page.url

        ids = [r.info.run_id for r in done if r.data.params.get("task") == task]
        compare = (
            f"{base}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([exp_id])}&{WORKFLOW}"
        )
        seen["compare_url"], seen["compare_runs"] = compare, len(ids)
        page.goto(compare)
        page.get_by_text("Parallel Coordinates Plot").first.wait_for(timeout=60000)
        page.wait_for_timeout(4000)
        seen["compare_axes"] = pick_axes(page, ["lr", "psl", "method"], ["test/others/main"])
        page.wait_for_timeout(3000)
        page.screenshot(path=str(OUT / "compare.png"), full_page=True)
        browser.close()
    return seen


def new_page(browser, storage: dict[str, str]):
    """A page in a fresh profile whose local storage holds `storage` before MLflow's code runs; MLflow 3.17 opens
    its assistant panel (a third of the window) on a first visit, which a user closes once: closed here."""
    items = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false",
             **storage}  # fmt: skip
    context = browser.new_context(viewport={"width": 1920, "height": 1000})
    context.add_init_script(f"if (!window.__xt) {{ window.__xt = 1; for (const [k, v] of Object.entries("
                            f"{json.dumps(items)})) window.localStorage.setItem(k, v); }}")  # fmt: skip
    return context.new_page()


def view_state(stored: dict[str, str], exp_id: str, parent_id: str, columns=VIEW_COLUMNS, *, search: str = "",
               order: str | None = None) -> dict[str, str]:  # fmt: skip
    """The runs table's stored UI state (the entry the column picker writes) with `VIEW_COLUMNS` selected and the
    sweep's parent run expanded; {} when the UI stored none (then the default view stays)."""
    for key, value in stored.items():
        if exp_id not in key or "selectedColumns" not in value:
            continue
        data = json.loads(value)
        holder = _find(data)
        if holder is None:
            continue
        holder["selectedColumns"] = [f"{kind}.`{name}`" for kind, name in columns]
        holder["runsExpanded"] = {parent_id: True}
        holder["searchFilter"] = search
        if order:
            holder["orderByKey"], holder["orderByAsc"] = order, False
        return {key: json.dumps(data)}
    return {}


def pick_axes(page, params: list[str], metrics: list[str]) -> str:
    """Choose the parallel-coordinates axes the way a user does: Clear All, then type each name into the Parameters
    and the Metrics box. Returns "ok" or what went wrong (the screenshot then shows MLflow's own choice)."""
    try:
        page.get_by_role("button", name="Clear All").click()
        boxes = page.get_by_role("combobox")
        for box, names in ((boxes.nth(0), params), (boxes.nth(1), metrics)):
            for name in names:
                box.click()
                box.fill(name)
                page.wait_for_timeout(500)
                page.keyboard.press("Enter")
            page.keyboard.press("Escape")
        return "ok"
    except Exception as e:  # noqa: BLE001 - a UI that changed: keep MLflow's axes, say so
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def _find(data):
    if isinstance(data, dict):
        if "selectedColumns" in data:
            return data
        for v in data.values():
            found = _find(v)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--db", type=Path, help="an existing sqlite tracking DB (default: run the demo sweep first)"
    )
    ap.add_argument("--experiment", help="experiment name (default: the first one with runs)")
    ap.add_argument("--work", type=Path, help="keep the demo sweep here (reused when it holds one)")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xtuner-mlflow-ui-") as tmp:
        work = args.work.resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = args.db.resolve() if args.db else run_demo(work)
        port = free_port()
        proc = start_server(db, port)
        try:
            base = f"http://127.0.0.1:{port}"
            exp_id, parent, children = sweep_runs(base, args.experiment)
            seen = shoot(base, exp_id, parent, children)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    print(json.dumps(seen, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
