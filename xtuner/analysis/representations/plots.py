"""The representation analysis's plots (matplotlib `Figure` without pyplot; PNG bytes):

- ``projection_<lang>.png``: per method (its first seed) and the untuned baseline, a 2-D projection (PCA, or t-SNE
  on request; scikit-learn) of the English vectors and those of one target language, fitted on both together;
  colour = label, marker = language (o English, x the other), thin grey lines join up to 60 parallel pairs;
- ``heatmap.png``: methods (mean over seeds) × languages (and their average), one panel per metric.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict

import numpy as np

from xtuner.analysis.representations.run import Analysis
from xtuner.analysis.representations.subjects import UNTUNED

DPI = 110
HEATMAP_METRICS = ("pos", "neg", "rel_diff", "acc1_en_to_x")
MAX_POINTS = 400
LINES = 60


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def by_method(analysis: Analysis) -> dict[str, list[str]]:
    """Configuration (`Subject.group`: the method and what else differs) -> subject labels (its seeds), baseline
    first, then fine-tuning."""
    groups: dict[str, list[str]] = defaultdict(list)
    for s in analysis.subjects:
        groups[s.group or s.method].append(s.label)
    return {m: groups[m] for m in sorted(groups, key=lambda m: (not m.startswith(UNTUNED), not m.startswith("finetune"), m))}


def project(x: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    if kind == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(x)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x)


def projection(analysis: Analysis, lang: str, *, kind: str = "pca", seed: int = 0,
               label_names: tuple[str, ...] = ()) -> bytes:  # fmt: skip
    groups = by_method(analysis)
    n = min(len(analysis.rows.ids), MAX_POINTS)
    keep = np.random.default_rng(seed).permutation(len(analysis.rows.ids))[:n]
    labels = analysis.rows.labels[keep]
    classes = sorted(set(labels.tolist()))
    colours = [f"C{i}" for i in range(len(classes))]
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = _figure(4.0 * cols, 3.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, subjects in zip(axes.flat, groups.values(), strict=False):
        vec = analysis.vectors[subjects[0]]
        xy = project(np.concatenate([vec["en"][keep], vec[lang][keep]]), kind, seed)
        en, other = xy[:n], xy[n:]
        for i in range(min(LINES, n)):
            ax.plot([en[i, 0], other[i, 0]], [en[i, 1], other[i, 1]], color="0.8", lw=0.5, zorder=1)
        for c, colour in zip(classes, colours, strict=True):
            m = labels == c
            name = label_names[c] if 0 <= c < len(label_names) else str(c)
            ax.scatter(en[m, 0], en[m, 1], s=9, c=colour, marker="o", zorder=2, label=f"en: {name}")
            ax.scatter(other[m, 0], other[m, 1], s=12, c=colour, marker="x", zorder=2, label=f"{lang}: {name}")
        ax.set_title(subjects[0] if len(subjects) == 1 else f"{subjects[0]} (1 of {len(subjects)})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(6, len(names)), fontsize=8)
    fig.suptitle(f"{analysis.task}: en and {lang}, last-layer <s> vectors ({kind.upper()})", fontsize=10)
    return _png(fig)


def method_means(analysis: Analysis, metric: str, langs: list[str]) -> tuple[list[str], np.ndarray]:
    groups = by_method(analysis)
    values = np.array([[np.nanmean([analysis.metrics[s][lang][metric] for s in subjects]) for lang in langs]
                       for subjects in groups.values()])  # fmt: skip
    return list(groups), values


def heatmap(analysis: Analysis, metrics=HEATMAP_METRICS) -> bytes:
    langs = [*analysis.rows.languages, "avg"]
    names = list(by_method(analysis))
    cols = 2 if len(metrics) > 1 else 1
    grid = math.ceil(len(metrics) / cols)
    fig = _figure(cols * (1.6 + 0.6 * len(langs)), grid * (0.9 + 0.45 * len(names)))
    axes = list(fig.subplots(grid, cols, squeeze=False).flat)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    for k, (ax, metric) in enumerate(zip(axes, metrics, strict=False)):
        _, values = method_means(analysis, metric, langs)
        im = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(langs)), langs, fontsize=8)
        ax.set_yticks(range(len(names)), names if k % cols == 0 else [""] * len(names), fontsize=8)
        finite = values[np.isfinite(values)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(len(names)):
            for j in range(len(langs)):
                v = values[i, j]
                ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="black" if np.isfinite(v) and v > mid else "white")  # fmt: skip
        ax.set_title(metric, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{analysis.task}: representation alignment with English (mean over seeds)", fontsize=10)
    return _png(fig)
