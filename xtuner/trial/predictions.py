"""A trial's per-example test predictions, kept for the paired bootstrap of `xtuner report`.

At the end of a trial the zero-shot predictions of every language are written with
`xtuner.metrics.examples.write_predictions` (``<lang>.parquet`` + ``meta.json``) into ``predictions_dir``: in a
sweep ``<storage>/<sweep>/predictions/<trial_id>/`` (beside the kept weights, so a local folder, ``s3://`` or
``gs://`` alike), for ``xtuner trial`` the folder of ``--predictions`` (default ``<output_dir>/predictions`` when
``output_dir`` is set). The sweep's driver uploads the folder as the ``predictions/`` artifacts of the trial's
MLflow child run (`xtuner.sweep.tracking.MlflowWriter.log_predictions`); workers need no MLflow access.

The folder appears whole or not at all: the files are written into a temp folder and published like kept weights
(a rename locally; on an object store ``meta.json`` is uploaded last). A retried trial writes it again, replacing
the earlier one. Tasks whose main metric has no per-example form (BUCC's F1, whose threshold is chosen over all
pairs) write nothing. ``predictions: false`` (trial setting) turns it off.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from xtuner.trial.weights import _is_remote


def predictions_location(cfg: Any) -> str | None:
    """Where this trial writes its predictions, or None."""
    if not cfg.predictions:
        return None
    if cfg.predictions_dir:
        return cfg.predictions_dir
    if cfg.output_dir:
        return str(Path(cfg.output_dir).expanduser() / "predictions")
    return None


def save_predictions(task: Any, predictions: dict[str, Any], location: str) -> str | None:
    """Write every language's `xtuner.trial.evaluate.Predictions` to `location`; the location, or None when the
    task's metric has no per-example form."""
    from xtuner.metrics.examples import kind_of, write_predictions

    if kind_of(task) is None or not predictions:
        return None
    with tempfile.TemporaryDirectory(prefix="xtuner-predictions-") as tmp:
        staged = Path(tmp) / "predictions"
        for lang, p in sorted(predictions.items()):
            write_predictions(staged, task, lang, p.ids, p.preds, p.refs)
        publish(staged, location)
    return location


def publish(staged: Path, location: str) -> None:
    """Copy the files of `staged` to `location` (a folder or an object-store URI), replacing what is there."""
    files = sorted(p for p in staged.iterdir() if p.is_file())
    last = [p for p in files if p.name == "meta.json"]  # marks the folder complete
    files = [p for p in files if p.name != "meta.json"] + last
    if _is_remote(location):
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(location)
        with contextlib.suppress(OSError):  # a retried trial: no stale language files of an earlier run
            fs.delete_dir(path)
        fs.create_dir(path, recursive=True)
        for f in files:
            pafs.copy_files(str(f), f"{location.rstrip('/')}/{f.name}")
        return
    target = Path(location.removeprefix("file://")).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    tmp.chmod(0o755)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def local_copy(location: str, dest: Path) -> Path:
    """`location`'s files in a local folder: the folder itself when local, else a download into `dest`."""
    if not _is_remote(location):
        return Path(location.removeprefix("file://")).expanduser()
    import pyarrow.fs as pafs

    dest.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(location.rstrip("/"), str(dest))
    return dest
