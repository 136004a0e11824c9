"""Published reference numbers (``reference.yaml`` next to this module, or a file of the same form): each with its
source (paper, table, page), shown by the report as labelled rows beside measured rows when task and model match,
never mixed into them. See the YAML file for the rule on what may be entered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xtuner.errors import XtunerError

DEFAULT = Path(__file__).with_name("reference.yaml")
VALUES = ("avg", "en", "others", "gap")


@dataclass
class Reference:
    label: str
    model: str
    method: str
    citation: str
    values: dict[tuple[str, str], float] = field(default_factory=dict)  # (task, avg|en|others|gap) -> number

    def cell(self, task: str, which: str) -> str | None:
        v = self.values.get((task, which))
        if v is None and which in ("others", "gap"):
            return None
        return None if v is None else f"{v:.1f}"


def model_key(model: str) -> str:
    return model.rstrip("/").split("/")[-1].split("@")[0].lower()


def load(path: str | Path | None = None) -> list[Reference]:
    path = Path(path) if path else DEFAULT
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise XtunerError(f"{path}: cannot read reference numbers ({e})") from None
    sources = raw.get("sources") or {}
    refs: dict[tuple[str, str, str], Reference] = {}
    for i, e in enumerate(raw.get("entries") or []):
        missing = [k for k in ("source", "table", "page", "label", "model", "task", "metric") if k not in e]
        if missing or e["source"] not in sources:
            what = f"missing {missing}" if missing else f"unknown source {e['source']!r}"
            raise XtunerError(f"{path}: entry {i + 1}: {what}")
        paper = sources[e["source"]]["paper"]
        citation = f"{paper}, {e['table']}, p. {e['page']}"
        ref = refs.setdefault((e["source"], e["label"], model_key(e["model"])),
                              Reference(e["label"], model_key(e["model"]), e.get("method", ""), citation))  # fmt: skip
        for which in VALUES:
            if e.get(which) is not None:
                ref.values[(e["task"], which)] = float(e[which])
    return list(refs.values())


def matching(refs: list[Reference], tasks_models: set[tuple[str, str]]) -> list[Reference]:
    """The references (restricted to their matching tasks) whose task and model match a measured (task, model)."""
    keys = {(t, model_key(m)) for t, m in tasks_models}
    out = []
    for ref in refs:
        values = {k: v for k, v in ref.values.items() if (k[0], ref.model) in keys}
        if values:
            out.append(Reference(ref.label, ref.model, ref.method, ref.citation, values))
    return out
