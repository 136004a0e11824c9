"""Progress for people: the lines `xtuner sweep run` prints per trial event, and the progress of long work in one
process (`xtuner trial`: what it is doing, training steps, the per-language evaluation).

- `fit_line` keeps a line within `line_width()` columns (100, or a narrower terminal's width).
- `Progress` is what `run_trial` tells its caller, through its reporter's optional ``progress`` attribute
  (`progress_of`): a stage ("loading the model") and counted phases (``train``: optimizer steps; ``test``:
  languages). `NullProgress` ignores it (Ray trials: the sweep driver prints one line per dev evaluation instead).
- `ConsoleProgress` shows it on stderr: rich's progress bar (elapsed time, ETA) on a terminal, otherwise a plain line
  per stage and per phase at most every `period` seconds (and at its end), so logs stay readable.
- `step_callback` feeds the ``train`` phase from transformers' Trainer (a ``TrainerCallback``).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, Protocol, TextIO

WIDTH = 100


def line_width() -> int:
    """`WIDTH` columns, or the terminal's width when stdout is a narrower terminal."""
    if sys.stdout.isatty():
        return max(40, min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns))
    return WIDTH


def fit_line(head: str, params: str, detail: str, width: int = WIDTH) -> str:
    """``head params: detail`` in at most `width` columns: `params` is cut first (ending in "~"), then `detail`."""
    sep = ": " if detail else ""
    room = width - len(head) - 1 - len(sep) - len(detail)
    if len(params) > room:
        params = params[: room - 1] + "~" if room > 1 else ""
    line = f"{head} {params}{sep}{detail}" if params else f"{head}{' ' if detail else ''}{detail}"
    return line if len(line) <= width else line[: width - 1] + "~"


def fmt_seconds(secs: float) -> str:
    """12 s, 3m05s, 2h07m."""
    secs = max(int(round(secs)), 0)
    if secs < 60:
        return f"{secs} s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"


class Progress(Protocol):
    def stage(self, text: str) -> None:
        """What the work does now (one line), e.g. "tokenising train/en"."""

    def start(self, phase: str, total: int, label: str) -> None:
        """A counted phase begins: `total` units (optimizer steps, languages); `label` names it for people."""

    def advance(self, phase: str, done: int, note: str = "") -> None:
        """`done` units of `phase` are finished (absolute, not a delta); `note` is the latest result, if any."""

    def finish(self, phase: str) -> None:
        """The phase ended (possibly early)."""

    def log(self, text: str) -> None:
        """A line of its own (a dev evaluation), printed above a live bar."""


class NullProgress:
    def stage(self, text: str) -> None:
        pass

    def start(self, phase: str, total: int, label: str) -> None:
        pass

    def advance(self, phase: str, done: int, note: str = "") -> None:
        pass

    def finish(self, phase: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass


def progress_of(reporter: Any) -> Progress:
    """The reporter's ``progress`` (a `Progress`), or one that ignores everything."""
    return getattr(reporter, "progress", None) or NullProgress()


class ConsoleProgress:
    """`Progress` on `stream` (stderr): a rich progress bar with ETA when it is a terminal (`live`), else plain lines
    (a phase at most every `period` seconds, and at its end)."""

    def __init__(
        self, stream: TextIO | None = None, *, live: bool | None = None, period: float = 10.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(self.stream.isatty()) if live is None else live
        self.period = period
        self._bar: Any = None  # rich.progress.Progress while a phase runs on a terminal
        self._tasks: dict[str, Any] = {}
        self._phases: dict[str, dict[str, Any]] = {}  # phase -> total, label, started, last printed

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def log(self, text: str) -> None:
        self._print(text)

    def stage(self, text: str) -> None:
        self._print(f"  {text} ...")

    def start(self, phase: str, total: int, label: str) -> None:
        self._phases[phase] = {
            "total": max(int(total), 1),
            "label": label,
            "t0": time.time(),
            "last": time.time(),
        }
        if self.live:
            if self._bar is None:
                self._bar = _rich_bar(self.stream)
                self._bar.start()
            self._tasks[phase] = self._bar.add_task(label, total=max(int(total), 1))
        else:
            self._print(f"  {label}: 0/{total}")

    def advance(self, phase: str, done: int, note: str = "") -> None:
        info = self._phases.get(phase)
        if info is None:
            return
        if self._bar is not None and phase in self._tasks:
            self._bar.update(self._tasks[phase], completed=done,
                             description=f"{info['label']}{' ' + note if note else ''}")  # fmt: skip
            return
        now = time.time()
        if done < info["total"] and now - info["last"] < self.period:
            return
        info["last"] = now
        self._print(plain_progress(info["label"], done, info["total"], now - info["t0"], note))

    def finish(self, phase: str) -> None:
        self._phases.pop(phase, None)
        if self._bar is not None and phase in self._tasks:
            self._bar.remove_task(self._tasks.pop(phase))
            if not self._tasks:
                self.close()

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.stop()
        self._tasks.clear()


def plain_progress(label: str, done: int, total: int, elapsed: float, note: str = "") -> str:
    """``  training: step 120/400 (30%), 45 s, ETA 1m45s, <note>`` (ETA from the mean rate so far)."""
    pct = 100 * done / max(total, 1)
    eta = f", ETA {fmt_seconds(elapsed / done * (total - done))}" if 0 < done < total else ""
    line = f"  {label}: {done}/{total} ({pct:.0f}%), {fmt_seconds(elapsed)}{eta}{', ' + note if note else ''}"
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "~"


def _rich_bar(stream: TextIO):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream, width=min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns))
    return Progress(TextColumn("  {task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    transient=True)  # fmt: skip


def step_callback(progress: Progress):
    """A transformers ``TrainerCallback`` that reports optimizer steps as the ``train`` phase of `progress`."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            progress.start("train", state.max_steps, "training steps")
            if state.global_step:  # resumed from a checkpoint
                progress.advance("train", state.global_step)

        def on_step_end(self, args, state, control, **kw):
            progress.advance("train", state.global_step)

        def on_train_end(self, args, state, control, **kw):
            progress.finish("train")

    return StepProgress()
