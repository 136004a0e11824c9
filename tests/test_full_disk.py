"""A full disk ends the sweep with one error line that says how to resume, and leaves no temp files.

Two cases: a trial worker cannot write its checkpoint (a real sweep), and the driver cannot write the state file.

The sweep's storage is a small tmpfs (mounting needs root: skipped elsewhere) that the first trial checkpoint
fills. The CLI driver (the session's Ray) must exit with code 2 and one `error:` line naming the failure and the
`xtuner sweep resume` command, print no traceback, leave no temp file (a half-written state file or spec) in the
storage, and leave a state file that still loads, with the unfinished trial still ``running`` (resumable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xtuner.sweep.state import STATE_FILE, SweepState

pytestmark = pytest.mark.slow  # one real trial that fails on its first checkpoint

TINY = {"max_train_examples": 64, "max_eval_examples": 16, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s3"]}  # fmt: skip


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_ends_the_sweep_with_a_resume_hint(ray_cluster, tiny_model, tmp_path, small_disk) -> None:
    raw = {"name": "full", "model": tiny_model, "tasks": ["synth-xnli"], "epochs": 2, "max_concurrent": 1,
           "methods": {"finetune": {"lr": [1.0e-3, 2.0e-3]}}, "trial": dict(TINY),
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test-full"},
           "storage": str(small_disk / "results")}  # fmt: skip
    spec = tmp_path / "full.yaml"
    spec.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, RAY_ADDRESS=ray_cluster, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "xtuner", "sweep", "run", str(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    sweep_dir = small_disk / "results" / "full"
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
    assert f"xtuner sweep resume {sweep_dir}" in errors[0]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    leftovers = [p.name for p in sweep_dir.rglob("*") if p.name.startswith((".xtuner_sweep.json-", "tmp", ".tmp"))
                 or p.name.endswith(".tmp")]  # fmt: skip
    assert not leftovers
    state = SweepState.load(sweep_dir / STATE_FILE)
    assert not state.finished and state.trials
    assert all(r.state in ("running", "done") for r in state.trials.values())  # nothing marked as failed


def test_state_file_on_a_full_disk(tmp_path, small_disk, tiny_model) -> None:
    """The driver's own write: the old state file stays intact, no temp file is left, and the sweep's one error
    names the file and the resume command."""
    from xtuner.errors import XtunerError
    from xtuner.sweep.events import SweepEvents
    from xtuner.sweep.runner import load_plan
    from xtuner.sweep.state import write_text

    folder = small_disk / "results" / "s"
    raw = {"name": "s", "model": tiny_model, "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": 1.0e-3}},
           "tracking": {"enabled": False}, "storage": str(small_disk / "results")}  # fmt: skip
    events = SweepEvents(load_plan(raw), str(folder), None, quiet=True)
    events.open()
    before = (folder / STATE_FILE).read_text()
    with open(small_disk / "filler", "ab", buffering=0) as f, pytest.raises(OSError):  # fill the disk
        while True:
            f.write(b"\0" * 65536)
    with pytest.raises(OSError):
        write_text(str(folder / STATE_FILE), "x" * 1_000_000)
    events.save()  # the state file's next version does not fit
    assert (folder / STATE_FILE).read_text() == before  # replaced atomically or not at all
    assert sorted(p.name for p in folder.iterdir()) == [STATE_FILE]  # no half-written temp file
    with pytest.raises(XtunerError) as info:
        events.check_fatal()
    assert "No space left on device" in str(info.value) and f"xtuner sweep resume {folder}" in str(info.value)
