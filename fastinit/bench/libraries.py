"""``python -m fastinit bench --model hf-llama|timm-vit|timm-convnext|titan-llama``: real
models of real libraries, built by the library's default path, under ``patched()``, and
with ``empty_init()``/meta + ``materialize_``, side by side in one run.

Every build is checked against the default build of the same run: each parameter's values
follow the same law (two-sample KS test on a sample, constants equal) and every buffer is
identical. Only one model is alive at a time (the default build leaves a sample of each
parameter and a copy of the buffers behind), so a ~1B-parameter float32 model needs about
twice its size in memory at most.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch
from scipy import stats

import fastinit
import fastinit.torch as ft

from .rounds import summary_rows, timed_rounds

__all__ = [
    "LIBRARY_MODELS",
    "LibraryModel",
    "Reference",
    "check_against",
    "format_library_table",
    "reference_of",
    "run_library_bench",
]

SAMPLE = 20_000
P_MIN = 1e-6  # ~150 parameters are tested per build: keep false alarms rare


@dataclass(frozen=True)
class LibraryModel:
    """One model of one library and the ways to build it.

    Attributes
    ----------
    library : str
        The package that must be importable.
    description : str
    methods : dict of str to callable
        Method name -> ``build() -> nn.Module``; ``torch`` (the library's default path) is
        the reference.
    """

    library: str
    description: str
    methods: dict[str, Callable[[], torch.nn.Module]]


def _hf_llama() -> LibraryModel:
    import transformers

    # Llama 3.2 1B's shapes (1.24B parameters, tied embeddings).
    cfg = transformers.LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
    )

    def default() -> torch.nn.Module:
        return transformers.AutoModelForCausalLM.from_config(cfg)

    def patched() -> torch.nn.Module:
        with ft.patched():
            return default()

    def empty_init() -> torch.nn.Module:
        with ft.empty_init():
            model = default()
        return ft.materialize_(model, seed=0)

    def meta() -> torch.nn.Module:
        with torch.device("meta"):
            model = default()
        return ft.materialize_(model, seed=0)

    return LibraryModel(
        "transformers",
        "transformers LlamaForCausalLM (Llama 3.2 1B shapes), AutoModelForCausalLM.from_config",
        {
            "torch": default,
            "patched": patched,
            "empty_init+materialize_": empty_init,
            "meta+materialize_": meta,
        },
    )


def _timm(name: str) -> Callable[[], LibraryModel]:
    def make() -> LibraryModel:
        import timm

        def default() -> torch.nn.Module:
            return timm.create_model(name, pretrained=False)

        def patched() -> torch.nn.Module:
            with ft.patched():
                return default()

        def empty_init() -> torch.nn.Module:
            with ft.empty_init():
                model = default()
            return ft.materialize_(model, seed=0)

        return LibraryModel(
            "timm",
            f"timm {name}, timm.create_model",
            {"torch": default, "patched": patched, "empty_init+materialize_": empty_init},
        )

    return make


def _titan_llama() -> LibraryModel:
    from torchtitan.models.llama3 import llama3_configs

    cpu = torch.device("cpu")

    def config() -> Any:
        return llama3_configs["1B"](attn_backend="flex")

    def on_meta() -> torch.nn.Module:
        with torch.device("meta"):
            return config().build()

    def init_states(model: torch.nn.Module) -> torch.nn.Module:
        model.to_empty(device=cpu)
        model.init_states(buffer_device=cpu)  # type: ignore[operator]
        return model

    def default() -> torch.nn.Module:
        return init_states(on_meta())

    def patched() -> torch.nn.Module:
        model = on_meta()
        with ft.patched():
            return init_states(model)

    def meta() -> torch.nn.Module:
        return ft.materialize_(on_meta(), seed=0)

    return LibraryModel(
        "torchtitan",
        "torchtitan llama3 1B: build on meta, to_empty, init_states(buffer_device=cpu)",
        {"torch": default, "patched": patched, "meta+materialize_": meta},
    )


#: ``--model`` name -> how to make the :class:`LibraryModel` (imports the library).
LIBRARY_MODELS: dict[str, Callable[[], LibraryModel]] = {
    "hf-llama": _hf_llama,
    "timm-vit": _timm("vit_base_patch16_224"),
    "timm-convnext": _timm("convnext_base"),
    "titan-llama": _titan_llama,
}
_LIBRARY_OF = {
    "hf-llama": "transformers",
    "timm-vit": "timm",
    "timm-convnext": "timm",
    "titan-llama": "torchtitan",
}


@dataclass
class Reference:
    """What a default build leaves behind to check the other builds against."""

    samples: dict[str, np.ndarray]
    constants: dict[str, float | None]
    buffers: dict[str, torch.Tensor]
    ties: set[tuple[str, ...]]


def _sample(t: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    flat = t.detach().reshape(-1)
    if flat.numel() > SAMPLE:
        idx = torch.from_numpy(rng.choice(flat.numel(), SAMPLE, replace=False))
        flat = flat[idx]
    return flat.double().numpy()


def _ties(model: torch.nn.Module) -> set[tuple[str, ...]]:
    ids: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        ids.setdefault(id(p), []).append(n)
    return {tuple(v) for v in ids.values() if len(v) > 1}


def reference_of(model: torch.nn.Module) -> Reference:
    rng = np.random.default_rng(0)
    samples, constants = {}, {}
    for name, p in model.named_parameters():
        x = _sample(p, rng)
        samples[name] = x
        constants[name] = float(x[0]) if x.min() == x.max() else None
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    return Reference(samples, constants, buffers, _ties(model))


def check_against(model: torch.nn.Module, ref: Reference) -> str | None:
    """None when ``model`` follows the reference's laws and buffers, else what differs."""
    rng = np.random.default_rng(1)
    params = dict(model.named_parameters())
    if set(params) != set(ref.samples):
        return "not the same parameters as the default build"
    for name, p in params.items():
        if p.is_meta:
            return f"{name} is still on the meta device"
        x = _sample(p, rng)
        const = ref.constants[name]
        if const is not None or x.min() == x.max():
            if not (x.min() == x.max() == const):
                return f"{name}: constant {const} expected, got [{x.min():.4g}, {x.max():.4g}]"
            continue
        pvalue = stats.ks_2samp(x, ref.samples[name]).pvalue
        if pvalue < P_MIN:
            y = ref.samples[name]
            return (
                f"{name}: KS p={pvalue:.2g} (mean/std {x.mean():.4g}/{x.std():.4g}, default "
                f"{y.mean():.4g}/{y.std():.4g})"
            )
    buffers = dict(model.named_buffers())
    if set(buffers) != set(ref.buffers):
        return "not the same buffers as the default build"
    for name, b in buffers.items():
        if not torch.equal(b, ref.buffers[name]):
            return f"buffer {name} differs from the default build"
    if _ties(model) != ref.ties:
        return "tied parameters differ from the default build"
    return None


def run_library_bench(
    model: str,
    repeat: int = 3,
    threads: int | None = None,
    progress: bool = False,
    out: IO[str] | None = None,
    methods: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Time one library model built by each method, in rounds; check every build.

    Parameters
    ----------
    model : str
        A key of :data:`LIBRARY_MODELS`.
    repeat : int, optional
        Rounds; a round builds the model once by every method, each round starting with the
        next method (after one untimed default build, which is the reference of the checks).
        Medians count.
    threads : int, optional
        Threads for torch and fastinit (default: leave both as they are).
    progress : bool, optional
        One line per timed build on standard error.
    out : file-like, optional
        Where the table goes (standard output by default).
    methods : sequence of str, optional
        A subset of the model's methods (``torch`` is needed for the speed-ups).

    Returns
    -------
    list of dict
        One row per method: ``model``, ``method``, ``params``, ``threads``, ``times_s``,
        ``median_s``, ``min_s``, ``speedup`` and ``problem`` (None when every build of that
        method passed the check).
    """
    if model not in LIBRARY_MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(LIBRARY_MODELS)}")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    try:
        spec = LIBRARY_MODELS[model]()
    except ImportError as exc:
        raise ImportError(
            f"fastinit bench --model {model} needs {_LIBRARY_OF[model]}, which cannot be "
            f"imported: {exc}"
        ) from exc
    chosen = list(methods) if methods is not None else list(spec.methods)
    saved = (torch.get_num_threads(), fastinit.get_num_threads())
    if threads is not None:
        torch.set_num_threads(threads)
        fastinit.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        built = spec.methods["torch"]()
        params = sum(p.numel() for p in built.parameters())
        ref = reference_of(built)
        del built
        gc.collect()

        def build(method: str) -> tuple[float, str | None]:
            gc.collect()
            start = time.perf_counter()
            built = spec.methods[method]()
            elapsed = time.perf_counter() - start
            problem = check_against(built, ref)
            del built
            gc.collect()
            return elapsed, problem

        times, problems = timed_rounds(chosen, repeat, build, model, progress)
        rows = summary_rows(
            chosen, times, problems, model=model, description=spec.description, params=params
        )
    finally:
        torch.set_num_threads(saved[0])
        fastinit.set_num_threads(saved[1])
    print(format_library_table(rows), file=out if out is not None else sys.stdout, flush=True)
    return rows


def format_library_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render :func:`run_library_bench`'s rows as a text table."""
    if not rows:
        return "library model: nothing measured"
    first = rows[0]
    lines = [
        f"{first['description']}: {first['params'] / 1e9:.3f}B parameters, float32, "
        f"{first['threads']} threads (median of {len(first['times_s'])})",
        f"{'method':<24} {'median s':>9} {'min s':>8} {'vs torch':>9}  check",
    ]
    for r in rows:
        speedup = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
        check = "ok" if r["problem"] is None else "FAIL: " + r["problem"]
        lines.append(
            f"{r['method']:<24} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {speedup:>9}  {check}"
        )
    return "\n".join(lines)
