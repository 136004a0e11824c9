"""Model names: `builtin:<name>` resolves to a built-in model directory; anything else goes to `from_pretrained`.

Built-in models ship inside the package (`xtuner/models/builtin/<name>/`), so the embedded default starts at
once. `xtuner model build <name>` rebuilds one into the cache, keyed by recipe version and seed:
``$XTUNER_CACHE/models/<name>-r<recipe>-s<seed>`` (default cache ``~/.cache/xtuner``). A cached build is used
only if its manifest verifies (every file's SHA-256); a partial or corrupt one is rebuilt, never used silently.
`builtin:<name>@<seed>` names a rebuilt model of that seed (built on first use).
"""

from __future__ import annotations

from pathlib import Path

from xtuner.errors import XtunerError, unknown_name
from xtuner.models import build as _build
from xtuner.paths import cache_root

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN = {
    "tiny-xlmr": "XLM-R architecture, 4 layers x 128 hidden, 2k Unigram vocab, MLM on the synthetic corpus"
}
SHIPPED_SEED = 0


def cached_build_dir(name: str, seed: int) -> Path:
    return cache_root() / "models" / f"{name}-r{_build.RECIPE_VERSION}-s{seed}"


def shipped_dir(name: str) -> Path:
    return BUILTIN_DIR / name


def _parse_builtin(model: str) -> tuple[str, int | None]:
    name = model.removeprefix("builtin:")
    seed = None
    if "@" in name:
        name, _, s = name.partition("@")
        try:
            seed = int(s)
        except ValueError:
            raise XtunerError(
                f"bad built-in model {model!r}: the part after '@' must be an integer seed"
            ) from None
    if name not in BUILTIN:
        raise unknown_name("built-in model", f"builtin:{name}", [f"builtin:{n}" for n in BUILTIN])
    return name, seed


def build_model_dir(name: str, *, seed: int = SHIPPED_SEED, steps: int | None = None, force: bool = False,
                    progress: bool = True, log=print) -> Path:  # fmt: skip
    """Return a verified cached build of `name`/`seed`, building it when missing, partial or corrupt."""
    if name not in BUILTIN:
        raise unknown_name("built-in model", name, BUILTIN)
    out = cached_build_dir(name, seed)
    problem = verify(out) if out.exists() else "not built yet"
    if problem is None and steps is not None:
        built_steps = _build.manifest(out).get("steps")
        if built_steps != steps:
            problem = f"cached build has {built_steps} steps, {steps} were asked for"
    if problem is None and not force:
        return out
    if out.exists():
        log(f"rebuilding {out}: {problem}")
    kwargs = {} if steps is None else {"steps": steps}
    return _build.build_tiny_xlmr(out, seed=seed, progress=progress, **kwargs)


def verify(path: Path) -> str | None:
    return _build.verify_build(path)


def resolve_model(model: str, *, build_if_missing: bool = True) -> str:
    """A path or hub id that `from_pretrained` accepts. Raises XtunerError for unknown names or missing paths."""
    if model.startswith("builtin:"):
        name, seed = _parse_builtin(model)
        if seed is None:
            shipped = shipped_dir(name)
            problem = verify(shipped)
            if problem is None:
                return str(shipped)
            raise XtunerError(
                f"the shipped model {model} at {shipped} is broken ({problem}); reinstall xtuner or run "
                f"`xtuner model build {name}` and use builtin:{name}@{SHIPPED_SEED}"
            )
        path = cached_build_dir(name, seed)
        if verify(path) is None:
            return str(path)
        if not build_if_missing:
            raise XtunerError(f"{model} is not built; run `xtuner model build {name} --seed {seed}`")
        return str(build_model_dir(name, seed=seed))
    # a hub id is "name" or "org/name"; anything path-like is a local directory and must exist
    looks_local = (
        model.startswith((".", "/", "~")) or model.count("/") > 1 or Path(model).expanduser().exists()
    )
    if looks_local:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise XtunerError(
                f"model path {model!r} does not exist (expected a directory from save_pretrained)"
            )
        if not (path / "config.json").is_file():
            raise XtunerError(f"model path {model!r} has no config.json; is it a save_pretrained directory?")
        return str(path)
    return model  # a hub id such as "xlm-roberta-large": from_pretrained fetches or reads the HF cache
