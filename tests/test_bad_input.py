"""Bad input from a hostile or clumsy user: each case is ONE `error: ...` line (exit code 2, no traceback) that names
the file, key or value, through the real CLI (in this process, so it is cheap). No Ray is needed: every case fails
before a sweep starts (dry run, pre-flight, trial setup) or reads only the state file.

- spec files: not UTF-8, a YAML alias bomb, a recursive alias, a 300-character name, infinite numbers (epochs, lr,
  a distribution's end), max_seq_length past the model's positions (at dry-run time) or a prompt length that
  leaves too few of them (dry run and `xtuner trial`), cache_dir naming a file;
  ``epochs: 1e9`` is accepted with a warning that carries the dry run's estimate;
- state files: ``[]``, ``{}``, an extra key, an unknown trial state, a mistyped value, bytes that are not UTF-8
  (for `status` and for `sync`, which must not blame MLflow);
- model folders: no tokenizer files, a tokenizer larger or much smaller than the embeddings, a truncated
  tokenizer.json, a truncated or garbage safetensors file, a config whose sizes do not match the weights;
- URIs: a ``file://user:password@localhost/abs`` storage for status/list/sync; `report` and `analyze` against a
  tracking server that does not answer (fast, one line, password masked), or a tracking URI MLflow refuses;
  their `--out` naming a file; `analyze --batch-size 0`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from xtuner.cli import main as cli_main
from xtuner.models import resolve_model

BOMB = """name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def spec(model: str, **over) -> dict:
    raw = {"name": "bad", "model": model, "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": [1.0e-3]}},
           "epochs": 1, "trial": {"max_train_examples": 16}}  # fmt: skip
    for key, value in over.items():
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return raw


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(rc: int, err: str, *needles: str) -> str:
    """The single `error:` line of a failed command, checked to contain every needle."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def write(tmp_path: Path, raw: dict | str | bytes, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return str(path)


# ------------------------------------------------------------------------------------------------ spec files
def test_spec_that_is_not_utf8(capsys, tmp_path: Path, tiny_model: str) -> None:
    data = (yaml.safe_dump(spec(tiny_model)) + "description: café\n").encode("latin-1")  # a Latin-1 editor
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, data), "--dry-run")
    one_error(rc, err, "spec.yaml", "not UTF-8", "byte 0xe9")


def test_yaml_alias_bomb_and_recursive_alias(capsys, tmp_path: Path) -> None:
    assert len(BOMB) < 700  # the 645-byte case
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, BOMB), "--dry-run")
    one_error(rc, err, "spec.yaml", "expands to more than 50,000 values")
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, "name: &a [*a]\n"), "--dry-run")
    one_error(rc, err, "alias inside its own anchor")


def test_sweep_name_length_is_bounded(capsys, tmp_path: Path, tiny_model: str) -> None:
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model, name="n" * 300)), "--dry-run")
    one_error(rc, err, ": name: ", "at most 100 characters")


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("epochs", float("inf"), "epochs: Input should be a finite number"),
        ("methods.finetune.lr", float("inf"), "methods.finetune.lr"),
        ("trial.warmup_ratio", float("nan"), "trial.warmup_ratio"),
        ("methods.finetune.lr", {"loguniform": [1.0e-5, float("inf")]}, "finite numbers"),
    ],
)
def test_numbers_must_be_finite(capsys, tmp_path: Path, tiny_model: str, key: str, value, needle: str) -> None:
    raw = spec(tiny_model, **{key: value})
    if isinstance(value, dict):
        raw["search"], raw["num_samples"] = "random", 2
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")
    one_error(rc, err, needle)


def test_huge_epochs_warn_with_the_estimate(capsys, tmp_path: Path, tiny_model: str) -> None:
    rc, out, err = cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model, epochs=1.0e9)), "--dry-run")
    assert rc == 0, err
    assert "warning: epochs 1e+09 is far beyond" in out and "every trial trains 1e+09 times" in out
    raw = spec("xlm-roberta-base", epochs=1.0e9, tasks=["xnli"], **{"resources.gpu": 1})  # a model it can estimate
    rc, out, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")
    assert rc == 0, err
    assert "warning: epochs 1e+09 is far beyond" in out and "the dry run estimates" in out and "GPU-hours" in out


def test_max_seq_length_beyond_the_model_is_a_dry_run_error(capsys, tmp_path: Path, tiny_model: str) -> None:
    raw = spec(tiny_model, **{"trial.max_seq_length": 1000000})
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")
    one_error(rc, err, "trial.max_seq_length", "1,000,000", "512 tokens")
    raw = spec(tiny_model, **{"methods.finetune.max_seq_length": [128, 600]})
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")
    one_error(rc, err, "methods.finetune.max_seq_length", "600")
    assert cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model, **{"trial.max_seq_length": 512})),
               "--dry-run")[0] == 0  # fmt: skip


def test_a_prompt_longer_than_the_positions_left_is_an_error_before_training(capsys, tmp_path: Path,
                                                                            tiny_model: str) -> None:
    """mpt's UD-POS prompt tuning reads 496 tokens, 512 minus its psl 16: psl 32 would shift the last token to
    position 528, past the model's 512 (a crash at the first long sentence, mid-sweep). The tiny model has XLM-R's
    positions."""
    arm = {"protocol": "mpt", "psl": [16, 32]}
    raw = spec(tiny_model, tasks=["udpos"], methods={"deep_prompt": arm})
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")
    one_error(rc, err, "methods.deep_prompt.psl", "task udpos, method deep_prompt", "psl 32",
              "max_seq_length 496", "512 tokens", "lower max_seq_length to 480 or psl to 16")  # fmt: skip
    for fits in ({**arm, "shift_positions": False},  # the prefix then takes no positions
                 {**arm, "max_seq_length": 480}):
        raw = spec(tiny_model, tasks=["udpos"], methods={"deep_prompt": fits})
        assert cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")[0] == 0
    for order in ([False, True], [True, False]):  # a grid point without shifted positions hides no later one
        raw = spec(tiny_model, tasks=["udpos"], methods={"deep_prompt": {**arm, "shift_positions": order}})
        rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")
        one_error(rc, err, "task udpos, method deep_prompt", "psl 32")
    raw = spec(tiny_model, tasks=["synth-panx"], methods={"soft_prompt": {"lr": 0.03, "psl": 20, "max_seq_length": 500}})
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, raw), "--dry-run")  # virtual tokens take positions
    one_error(rc, err, "task synth-panx, method soft_prompt", "psl 20 + max_seq_length 500 = 520")
    rc, _, err = cli(capsys, "trial", "--task", "udpos", "--method", "deep_prompt", "--protocol", "mpt", "--psl",
                     "32", "--model", tiny_model)  # fmt: skip
    one_error(rc, err, "task udpos, method deep_prompt: psl 32 + max_seq_length 496")


def test_cache_dir_naming_a_file(capsys, tmp_path: Path, tiny_model: str) -> None:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model, **{"trial.cache_dir": str(blocker)})),
                     "--dry-run")  # fmt: skip
    one_error(rc, err, "trial.cache_dir", "is a file, not a folder")
    rc, _, err = cli(capsys, "trial", "--task", "synth-xnli", "--model", tiny_model, "--set", f"cache_dir={blocker}")
    one_error(rc, err, "cache_dir", "is a file, not a folder")
    # a folder under that file cannot be created (it was a NotADirectoryError traceback at the first cache write)
    under = blocker / "sub"
    rc, _, err = cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model, **{"trial.cache_dir": str(under)})),
                     "--dry-run")  # fmt: skip
    one_error(rc, err, "trial.cache_dir", "cannot be created", f"{str(blocker)!r} is a file")
    rc, _, err = cli(capsys, "trial", "--task", "synth-xnli", "--model", tiny_model, "--set", f"cache_dir={under}")
    one_error(rc, err, "cache_dir", "cannot be created", f"{str(blocker)!r} is a file")


def test_a_password_in_an_unreachable_tracking_uri_is_not_printed(capsys, tmp_path: Path, tiny_model: str) -> None:
    from conftest import free_port

    uri = f"http://alice:Sup3rSecretPw@127.0.0.1:{free_port()}"
    rc, out, err = cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model)), "--tracking-uri", uri,
                       "--storage", str(tmp_path / "r"))  # fmt: skip
    one_error(rc, err, "does not answer", "alice:***@127.0.0.1")
    assert "Sup3rSecretPw" not in out + err
    rc, out, err = cli(capsys, "sweep", "run", write(tmp_path, spec(tiny_model)),
                       "--storage", "s3://AKIAEXAMPLE:Sup3rStorageKey@bucket/sweeps")  # fmt: skip
    one_error(rc, err, "credentials never go in the URI")
    assert "Sup3rStorageKey" not in out + err


# ------------------------------------------------------------------------------------------------ state files
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[]", "expected an object"),
        ("{}", "missing key 'name'"),
        (json.dumps({"name": "s", "spec": {}, "surprise": 1}), "unknown key 'surprise'"),
        (json.dumps({"name": 3, "spec": {}}), "key 'name': expected str, got int"),
        ("TRIAL_STATE", "trials.t1: key 'state': unknown trial state 'paused'"),
        (b"\xff\xfe{}", "cannot read the sweep state"),
    ],
)
def test_broken_state_files(capsys, tmp_path: Path, content, needle: str) -> None:
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    if content == "TRIAL_STATE":
        rec = {"trial_id": "t1", "group": "g00", "task": "synth-xnli", "method": "finetune", "model": "m", "seed": 1,
               "main_metric": "accuracy", "params": {}, "searched": [], "state": "paused"}  # fmt: skip
        content = json.dumps({"name": "s", "spec": {}, "tracking_uri": "sqlite:///x.db", "trials": {"t1": rec}})
    path = folder / "xtuner_sweep.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for command in ("status", "sync"):
        rc, _, err = cli(capsys, "sweep", command, "s", "--storage", str(tmp_path / "results"))
        line = one_error(rc, err, "xtuner_sweep.json", needle)
        assert "MLflow" not in line


# ------------------------------------------------------------------------------------------------ model folders
def broken_model(tmp_path: Path, name: str, damage) -> Path:
    src = Path(resolve_model("builtin:tiny-xlmr"))
    folder = tmp_path / name
    shutil.copytree(src, folder)
    (folder / "xtuner_build.json").unlink(missing_ok=True)
    damage(folder)
    return folder


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _shrink_embeddings(folder: Path) -> None:
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(folder)
    model.resize_token_embeddings(1000)  # the model now has 1,000 embeddings; its tokenizer still has 2,000 tokens
    model.save_pretrained(folder)


def _config(folder: Path, **over) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(cfg | over))


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (lambda f: [(f / "tokenizer.json").unlink(), (f / "tokenizer_config.json").unlink()],
         ["has no tokenizer files", "<unk>"]),
        (lambda f: _truncate(f / "tokenizer.json", 5000), ["cannot load the tokenizer", "JSONDecodeError"]),
        (_shrink_embeddings, ["tokenizer has 2,000 tokens but the model has only 1,000 embeddings"]),
        (lambda f: _truncate(f / "model.safetensors", 100_000), ["model.safetensors are truncated"]),
        (lambda f: (f / "model.safetensors").write_bytes(b"garbage" * 100), ["not a safetensors file"]),
        (lambda f: _config(f, hidden_size=64), ["shape [2000, 128]", "config.json says", "[2000, 64]"]),
    ],
    ids=["no-tokenizer", "truncated-tokenizer", "vocab-past-embeddings", "truncated-weights", "garbage-weights",
         "config-mismatch"],
)  # fmt: skip
def test_broken_model_folders(capsys, tmp_path: Path, damage, needles: list[str]) -> None:
    folder = broken_model(tmp_path, "model", damage)
    rc, _, err = cli(capsys, "trial", "--task", "synth-xnli", "--model", str(folder), "--epochs", "1",
                     "--set", "max_train_examples=8", "--set", "max_eval_examples=8")  # fmt: skip
    one_error(rc, err, *needles)
    raw = spec(str(folder))  # the sweep refuses it before Ray starts (pre-flight loads the tokenizer too)
    from xtuner.errors import XtunerError
    from xtuner.sweep.runner import check_sweep, load_plan

    with pytest.raises(XtunerError) as info:
        check_sweep(load_plan(raw | {"storage": str(tmp_path / "r"), "tracking": {"enabled": False}}))
    assert needles[0] in str(info.value) and "model" in str(info.value)


def test_a_stub_tokenizer_much_smaller_than_the_embeddings(tmp_path: Path) -> None:
    from xtuner.errors import XtunerError
    from xtuner.models.checks import check_vocab

    with pytest.raises(XtunerError, match="5 tokens for 2,000 embeddings"):
        check_vocab(5, 2000, "m")
    check_vocab(32100, 32128, "t5-like")  # padded embedding matrices are fine


def test_a_file_uri_with_a_password_finds_the_sweep_and_is_masked(capsys, tmp_path: Path) -> None:
    """`--storage file://user:password@localhost/abs` names /abs for `status`, `list` and `sync` as it does for `run`
    (it was taken for the relative folder ``user:password@localhost/abs``); where nothing is found the error masks
    the password (it printed it: the message quotes the URI without its scheme)."""
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    state = {"name": "s", "spec": {}, "tracking_uri": "sqlite:///x.db", "trials": {}}
    (folder / "xtuner_sweep.json").write_text(json.dumps(state))
    storage = f"file://carol:St0ragePassw0rd@localhost{tmp_path / 'results'}"
    rc, out, err = cli(capsys, "sweep", "list", "--storage", storage)
    assert rc == 0 and "St0ragePassw0rd" not in out + err and "No sweeps" not in out, out + err
    rc, out, err = cli(capsys, "sweep", "status", "s", "--storage", storage, "--json")
    assert rc == 0, err
    assert json.loads(out)["sweep"] == "s" and "St0ragePassw0rd" not in out + err
    for command in ("status", "sync"):
        rc, out, err = cli(capsys, "sweep", command, "nosuch", "--storage", storage)
        one_error(rc, err, "no sweep 'nosuch' found")
        assert "St0ragePassw0rd" not in out + err
    # a percent-encoded path names the same folder for `run` (check_storage) as for status/list/sync (local_path)
    from xtuner.cluster.storage import check_storage
    from xtuner.sweep.state import join

    spaced = f"file://{tmp_path / 'my%20runs'}"
    assert check_storage(spaced) == str(tmp_path / "my runs") == str(Path(join(spaced, "s")).parent)
    assert (tmp_path / "my runs").is_dir() and not (tmp_path / "my%20runs").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "plant"],
        ["analyze", "representations", "0123456789abcdef0123456789abcdef", "--task", "synth-xnli"],
        ["analyze", "retrieval", "plant", "--task", "synth-tatoeba"],
    ],
    ids=["report", "analyze-representations", "analyze-retrieval"],
)
def test_commands_reading_mlflow_fail_fast_on_a_dead_server(capsys, argv: list[str]) -> None:
    """`report` and `analyze` against a tracking server that does not answer: one error line within seconds, the
    password masked (MLflow's client retried for minutes before: 7 retries with backoff)."""
    import time

    from conftest import free_port

    uri = f"http://alice:Rep0rtPassw0rd@127.0.0.1:{free_port()}"
    t0 = time.time()
    rc, out, err = cli(capsys, *argv, "--tracking-uri", uri)
    one_error(rc, err, "does not answer", "alice:***@127.0.0.1")
    assert "Rep0rtPassw0rd" not in out + err
    assert time.time() - t0 < 30


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "plant", "--tracking-uri", "sqlite:///{tmp}/m.db"],
        ["analyze", "representations", "--model", "builtin:tiny-xlmr", "--task", "synth-xnli", "--no-mlflow"],
        ["analyze", "retrieval", "--model", "builtin:tiny-xlmr", "--task", "synth-tatoeba", "--no-mlflow"],
    ],
    ids=["report", "analyze-representations", "analyze-retrieval"],
)
def test_an_out_folder_that_is_a_file_is_refused_before_the_work(capsys, tmp_path: Path, argv: list[str]) -> None:
    """`--out` naming a file: one error line naming it, before MLflow is read or a model is loaded (the analysis
    ended in a FileExistsError traceback after encoding every language)."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, _, err = cli(capsys, *argv, "--out", str(blocker))
    one_error(rc, err, "--out", str(blocker), "is a file, not a folder")
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    ("uri", "needle"),
    [("{tmp}/afile", "filesystem tracking backend"), ("mysql://u:MyPassw0rdDb@127.0.0.1:9/db", "'MySQLdb'")],
    ids=["plain-file", "mysql-without-driver"],
)
@pytest.mark.parametrize("command", ["report", "analyze"])
def test_a_tracking_uri_mlflow_refuses_is_one_error_line(capsys, tmp_path: Path, uri: str, needle: str,
                                                         command: str) -> None:  # fmt: skip
    """A tracking URI MLflow cannot read (a plain path: its retired file store; ``mysql://`` without the driver):
    one error line naming the URI (password masked) and MLflow's reason, not MLflow's traceback."""
    (tmp_path / "afile").write_text("x")
    uri = uri.replace("{tmp}", str(tmp_path))
    argv = ["report", "plant"] if command == "report" else ["analyze", "representations", "plant", "--task",
                                                            "synth-xnli"]  # fmt: skip
    rc, out, err = cli(capsys, *argv, "--tracking-uri", uri)
    one_error(rc, err, "tracking URI", needle)
    assert "MyPassw0rdDb" not in out + err


def test_analyze_batch_size_must_be_positive(capsys) -> None:
    for command, task in (("representations", "synth-xnli"), ("retrieval", "synth-tatoeba")):
        rc, _, err = cli(capsys, "analyze", command, "--model", "builtin:tiny-xlmr", "--task", task, "--batch-size", "0",
                         "--no-mlflow")  # fmt: skip
        one_error(rc, err, "--batch-size must be at least 1, got 0")
