"""Published reference numbers (``reference.yaml`` next to this module, or a file of the same form): each with its
source (paper, table, page), shown by the report as labelled rows beside measured rows when task and model match,
never mixed into them. See the YAML file for the rule on what may be entered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    from xtuner.sweep.spec import load_yaml, read_text_file

    path = Path(path) if path else DEFAULT
    try:  # the spec's bounded reader and loader: not UTF-8 named with its byte, no alias bomb
        raw = load_yaml(read_text_file(path, str(path)), str(path)) or {}
    except XtunerError as e:
        raise XtunerError(f"cannot read reference numbers: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sources") or {}, dict) \
            or not isinstance(raw.get("entries") or [], list):  # fmt: skip
        raise XtunerError(f"{path}: expected a mapping with 'sources' (a mapping) and 'entries' (a list), as the "
                          "package's reference.yaml (docs/report.md)")  # fmt: skip
    sources = raw.get("sources") or {}
    refs: dict[tuple[str, str, str], Reference] = {}
    for i, e in enumerate(raw.get("entries") or []):
        if not isinstance(e, dict):
            raise XtunerError(f"{path}: entry {i + 1}: expected a mapping, got {e!r}")
        missing = [k for k in ("source", "table", "page", "label", "model", "task", "metric") if k not in e]
        if missing or e["source"] not in sources:
            what = f"missing {missing}" if missing else f"unknown source {e['source']!r}"
            raise XtunerError(f"{path}: entry {i + 1}: {what}")
        try:
            paper = sources[e["source"]]["paper"]
            citation = f"{paper}, {e['table']}, p. {e['page']}"
            ref = refs.setdefault((e["source"], e["label"], model_key(str(e["model"]))),
                                  Reference(e["label"], model_key(str(e["model"])), e.get("method", ""), citation))  # fmt: skip
            for which in VALUES:
                if e.get(which) is not None:
                    ref.values[(e["task"], which)] = float(e[which])
        except (KeyError, TypeError, ValueError) as err:
            raise XtunerError(f"{path}: entry {i + 1}: {type(err).__name__}: {err} (its source needs a 'paper'; "
                              f"values are numbers)") from None  # fmt: skip
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
