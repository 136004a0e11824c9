"""The pieces that guard a sweep folder and its output, each on its own (no Ray): the driver lock (two holders, a
dead holder taken over, `--overwrite` keeping the lock), the pickle signatures (key file, a replaced pickle, an
interrupted upload, the inline-signed searcher pickle), and the one redaction (registered secrets, the redacting
stream, the state file, environment variables that only look like secrets).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import stat
from pathlib import Path

import pytest

from xtuner.cluster import redact
from xtuner.errors import XtunerError
from xtuner.sweep import signing
from xtuner.sweep.lock import LOCK_FILE, DriverLock, remove_contents
from xtuner.sweep.state import SweepState


# ------------------------------------------------------------------------------------------------ driver lock
def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    folder = str(tmp_path / "sweep")
    with DriverLock(folder, "sweep run") as first:
        assert first.held and first.taken_over is None
        with pytest.raises(XtunerError) as info:
            DriverLock(folder, "sweep resume").acquire()
        msg = str(info.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in msg and "sweep run" in msg
        assert LOCK_FILE in msg and "`xtuner sweep status sweep`" in msg and "xtuner sweep resume" in msg
        with pytest.raises(XtunerError, match="in use by sweep run"):
            DriverLock(folder, "sweep run").probe()  # the quick check before pre-flight
        assert first.held
    with DriverLock(folder, "sweep resume") as again:  # released: free, and nothing to take over (clean end)
        assert again.taken_over is None


def test_lock_of_a_dead_driver_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    dead = {"role": "sweep run", "host": "elsewhere", "pid": 424242, "started": 1.7e9}
    (folder / LOCK_FILE).write_text(json.dumps(dead))  # the file of a killed driver; its OS lock died with it
    DriverLock(str(folder), "sweep run").probe()  # free: no refusal, and the dead holder's details stay
    with DriverLock(str(folder), "sweep resume") as lock:
        assert lock.taken_over == dead
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_overwrite_keeps_the_lock_file(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    with DriverLock(str(folder), "sweep run"):
        (folder / "trial_x").mkdir()
        (folder / "trial_x" / "error.pkl").write_bytes(b"x")
        (folder / "tuner.pkl").write_bytes(b"x")
        remove_contents(str(folder))
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]
        with pytest.raises(XtunerError, match="in use by sweep run"):
            DriverLock(str(folder), "sweep run").acquire()


# ------------------------------------------------------------------------------------------------ signatures
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XTUNER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(signing, "_override", False)
    return tmp_path / "home"


def test_key_is_private_and_refused_when_others_can_read_it(home: Path) -> None:
    key = signing.load_key()
    path = home / signing.KEY_FILE
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert signing.load_key() == key  # stable
    path.chmod(0o644)
    with pytest.raises(XtunerError, match="readable or writable by other users"):
        signing.load_key()


def test_a_replaced_pickle_is_refused_and_trust_folder_overrides(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    (folder / "trial_a").mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"ok": 1}))
    (folder / "experiment_state-1.json").write_text('{"trial_data": []}')
    (folder / "trial_a" / "error.pkl").write_bytes(pickle.dumps(ValueError("x")))
    (folder / "xtuner_sweep.json").write_text("{}")  # xtuner's own JSON: never unpickled, never signed
    (folder / "trial_a" / "checkpoint_000000").mkdir()
    (folder / "trial_a" / "checkpoint_000000" / "optimizer.pt").write_bytes(b"weights_only")  # not Tune's
    assert signing.pickled_files(str(folder)) == ["experiment_state-1.json", "trial_a/error.pkl", "tuner.pkl"]
    with pytest.raises(XtunerError, match="the folder has no signatures"):
        signing.verify(str(folder))
    signing.sign_files(str(folder), signing.pickled_files(str(folder)))
    signing.verify(str(folder))

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (folder / "tuner.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(XtunerError) as info:
        signing.verify(str(folder))
    assert "tuner.pkl is not signed with your key" in str(info.value) and "--trust-folder" in str(info.value)
    assert not (tmp_path / "pwned").exists()  # nothing was unpickled
    (folder / "trial_a" / "new.pkl").write_bytes(b"x")  # a pickle that appeared is refused too
    with pytest.raises(XtunerError, match="trial_a/new.pkl"):
        signing.verify(str(folder))
    with signing.trusting(str(folder)):  # the user vouches for it
        signing.verify(str(folder))
        assert signing.loads(pickle.dumps({"a": 1}), "searcher-state.pkl") == {"a": 1}  # unsigned: trusted here
    with pytest.raises(XtunerError, match="not signed"):
        signing.loads(pickle.dumps({"a": 1}), "searcher-state.pkl")  # only inside the block
    signing.verify(str(folder))  # and signed with this key from now on


def test_an_interrupted_upload_still_verifies(home: Path, tmp_path: Path) -> None:
    """Staged files are signed before the upload: the sweep folder may hold the old or the new version."""
    folder, staging = tmp_path / "sweep", tmp_path / "staging"
    folder.mkdir()
    staging.mkdir()
    (staging / "experiment_state-1.json").write_text("v1")
    signing.sign_staged(str(folder), str(staging))
    (folder / "experiment_state-1.json").write_text("v1")  # uploaded
    (staging / "experiment_state-1.json").write_text("v2")
    signing.sign_staged(str(folder), str(staging))  # signed; the driver dies before uploading v2
    signing.verify(str(folder))
    (folder / "experiment_state-1.json").write_text("v2")  # or after
    signing.verify(str(folder))
    for i in range(3, 3 + signing.KEEP):
        (staging / "experiment_state-1.json").write_text(f"v{i}")
        signing.sign_staged(str(folder), str(staging))
    with pytest.raises(XtunerError, match="changed after your xtuner wrote them"):
        signing.verify(str(folder))  # v2 is older than the KEEP kept signatures


def test_inline_signed_pickle(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = signing.dumps({"a": 1})
    assert signing.loads(data, "searcher-state.pkl") == {"a": 1}
    with pytest.raises(XtunerError, match="searcher-state.pkl is not signed"):
        signing.loads(data.replace(b"\x01", b"\x02"), "searcher-state.pkl")
    with pytest.raises(XtunerError, match="not signed"):
        signing.loads(pickle.dumps({"a": 1}), "searcher-state.pkl")  # an unsigned (older) pickle
    monkeypatch.setenv("XTUNER_HOME", str(home.parent / "other-user"))
    with pytest.raises(XtunerError, match="not signed"):
        signing.loads(data, "searcher-state.pkl")  # another user's key


# ------------------------------------------------------------------------------------------------ redaction
def test_registered_secrets_are_masked_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_SECRETS", set())
    redact.register_secrets_in({"tracking": {"uri": "http://bob:p%40ssW0rd!@host:5000"}, "hf_token": "hf_abcdef1"})
    redact.register_env_secrets({"MLFLOW_TRACKING_PASSWORD": "EnvPassw0rd", "PWD": str(tmp_path),
                                 "RAY_AUTH_TOKEN_PATH": str(tmp_path), "DEBUG_FLAG_TOKEN": "1"})  # fmt: skip
    text = f"failed: p@ssW0rd! / p%40ssW0rd! / hf_abcdef1 / EnvPassw0rd in {tmp_path} with 1"
    out = redact.redact_text(text)
    assert "ssW0rd" not in out and "hf_abcdef1" not in out and "EnvPassw0rd" not in out
    assert str(tmp_path) in out and out.endswith("with 1")  # paths and short values stay
    buf = io.StringIO()
    stream = redact.RedactingStream(buf)
    print("uri http://x:EnvPassw0rd@h and http://u:other@h", file=stream)
    assert buf.getvalue() == "uri http://x:***@h and http://u:***@h\n"
    state = SweepState("s", {"tracking": {"uri": "http://bob:p%40ssW0rd!@host:5000"}, "description": "hf_abcdef1"},
                       tracking_uri="http://bob:p%40ssW0rd!@host:5000")  # fmt: skip
    state.save(tmp_path / "state.json")
    saved = (tmp_path / "state.json").read_text()
    assert "ssW0rd" not in saved and "hf_abcdef1" not in saved and "http://bob:***@host:5000" in saved
    assert state.tracking_uri == "http://bob:p%40ssW0rd!@host:5000"  # the live value is untouched


def test_command_tag_masks_secret_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from xtuner.sweep.run_meta import redact_command

    monkeypatch.setattr(redact, "_SECRETS", set())
    argv = ["xtuner", "sweep", "run", "s.yaml", "--set", "trial.hf_token=hf_Planted99", "--set", "lr=[1e-3]",
            "--tracking-uri", "http://al:UriPassw0rd@h:5000", "--set", "description=x y"]  # fmt: skip
    out = redact_command(argv)
    assert "hf_Planted99" not in out and "UriPassw0rd" not in out
    assert "trial.hf_token=***" in out and "http://al:***@h:5000" in out
    assert "lr=[1e-3]" in out and "'description=x y'" in out  # ordinary settings stay as typed


def test_a_short_password_never_masks_what_a_run_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered password that is also an ordinary word ("test") is masked in free text, but not inside the
    tags and params that say what a run is: the report would otherwise take every test run for a dev-split one."""
    from xtuner.analysis.report.runs import eval_split_of, task_label
    from xtuner.sweep.tracking import redact as redact_mlflow_params
    from xtuner.sweep.tracking import redact_tags

    monkeypatch.setattr(redact, "_SECRETS", set())
    redact.register_secrets_in("http://admin:test@127.0.0.1:5000")
    params = redact_mlflow_params({"eval_split": "test", "lr_schedule": "linear", "lr": 0.001, "batch_size": 1234,
                                   "description": "a test run", "hf_token": "abcd1234", "data_dir": "/d/test"})  # fmt: skip
    assert params == {"eval_split": "test", "lr_schedule": "linear", "lr": "0.001", "batch_size": "1234",
                      "description": "a *** run", "hf_token": "***", "data_dir": "/d/***"}  # fmt: skip
    tags = redact_tags({"xtuner.eval_split": "test", "xtuner.sweep": "test", "xtuner.storage": "/runs/test",
                        "xtuner.command": "xtuner sweep run s.yaml --tracking-uri http://admin:test@h"})  # fmt: skip
    assert tags["xtuner.eval_split"] == "test" and tags["xtuner.sweep"] == "test"
    assert tags["xtuner.storage"] == "/runs/***" and "admin:***@h" in tags["xtuner.command"]
    # a value masked by an older writer is not trusted as a split name
    assert eval_split_of({"xtuner.eval_split": "***"}, {"eval_split": "***"}) == "test"
    assert eval_split_of({}, {"eval_split": "validation"}) == "validation"
    assert (task_label("xnli", "test"), task_label("xnli", "***"), task_label("xnli", "validation")) == (
        "xnli", "xnli", "xnli[dev]")  # fmt: skip


def test_a_short_password_never_corrupts_the_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xtuner.sweep.state import TrialRecord

    monkeypatch.setattr(redact, "_SECRETS", set())
    uri = "http://admin:done@127.0.0.1:5000"
    redact.register_secrets_in(uri)
    rec = TrialRecord("t1", "g", "xnli", "finetune", "m", 1, "accuracy", {"eval_split": "test", "lr": 1e-3,
                      "selection": "last", "description": "done by hand"}, ["lr"], state="done")  # fmt: skip
    SweepState("s", {"tracking": {"uri": uri}}, tracking_uri=uri, trials={"t1": rec}).save(tmp_path / "state.json")
    back = SweepState.load(tmp_path / "state.json")
    assert back.trials["t1"].state == "done" and back.trials["t1"].params["eval_split"] == "test"
    assert back.trials["t1"].params["lr"] == 1e-3 and back.trials["t1"].params["selection"] == "last"
    assert back.trials["t1"].params["description"] == "*** by hand"  # free text is still masked
    assert back.tracking_uri == "http://admin:***@127.0.0.1:5000"
