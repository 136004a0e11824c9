"""The stage-1 store on ``s3://`` (a real S3-protocol server, moto, behind pyarrow's S3 filesystem: the sweep
storage's own code path): a result is published whole (``stage1.json`` last) and downloaded once per node, a killed
upload (encoder without ``stage1.json``) is never used and is removed by the next holder of the lease, and a second
trial waits for the lease rather than training the same key at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_s3_storage import BUCKET, s3_env  # noqa: F401  (the moto server fixture)

from xtuner.intermediate.store import DONE, ENCODER, Stage1Store
from xtuner.sweep.state import exists

pytestmark = pytest.mark.slow


def staged(tmp: Path, text: str) -> Path:
    folder = tmp / f"staged-{text}"
    (folder / ENCODER).mkdir(parents=True)
    (folder / ENCODER / "model.safetensors").write_text(text)
    (folder / DONE).write_text('{"seconds": 1.0}')
    return folder


def test_stage1_store_on_s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    root = f"s3://{BUCKET}/inter/_intermediate"
    store = Stage1Store(root, "k1")
    assert not store.done()
    with store.lock():
        store.discard_partial()
        store.publish(staged(tmp_path, "weights-1"))
    assert store.done() and store.meta() == {"seconds": 1.0}
    local = Path(store.local_encoder(tmp_path / "cache"))
    assert (local / "model.safetensors").read_text() == "weights-1"
    assert store.local_encoder(tmp_path / "cache") == str(local)  # downloaded once

    partial = Stage1Store(root, "k2")  # a killed upload: the encoder is there, stage1.json is not
    import pyarrow.fs as pafs

    pafs.copy_files(str(staged(tmp_path, "half") / ENCODER), f"{root}/k2/{ENCODER}")
    assert exists(f"{root}/k2/{ENCODER}/model.safetensors") and not partial.done()
    with partial.lock():
        partial.discard_partial()
    assert not exists(f"{root}/k2")

    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with Stage1Store(root, "k3").lock():
            held.set()
            time.sleep(3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    held.wait(60)
    with Stage1Store(root, "k3").lock():  # waits for the lease
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]
