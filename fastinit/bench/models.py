"""Model-construction benchmark: a Llama-style model built three ways, side by side.

This module backs ``python -m fastinit bench --model`` and ``benchmarks/bench_model.py``
and holds the one definition of the benchmark model. For every dtype it times, in the same
run and with the same threads:

- ``torch``: the model constructed on the CPU, every module initialized by ``torch.nn.init``
  (torch's default, what users get today);
- ``patched``: the same construction inside :func:`fastinit.torch.patched`;
- ``materialize``: the model constructed on the meta device, then
  :func:`fastinit.torch.materialize_` onto the CPU;
- ``fill_``: the memory floor -- the model constructed on the meta device, then every
  parameter allocated on the CPU and written once with ``torch.Tensor.fill_`` (no random
  numbers). Allocation and first touch of fresh pages are part of every method, so this is
  the fastest any initialization can build the model on the machine.

Every built model is checked (Linear weights within ``1/sqrt(fan_in)``, the embedding
moments of N(0, 1), norms at 1) so that a broken path cannot pass as a fast one.

Importing this module imports torch.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import torch
import torch.nn.functional as F
from torch import nn

from .libraries import run_library_bench
from .rounds import summary_rows, timed_rounds

__all__ = [
    "FULL_CONFIG",
    "INIT_METHODS",
    "METHODS",
    "SMALL_CONFIG",
    "LlamaConfig",
    "LlamaModel",
    "build_model",
    "check_model",
    "format_model_table",
    "run_model_bench",
]

METHODS = ("torch", "patched", "materialize", "fill_")
#: The methods whose models hold real initial values (``fill_`` is the memory floor).
INIT_METHODS = METHODS[:3]
_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Sizes of the benchmark model (Llama-style: RMSNorm, SwiGLU MLP, no biases).

    The default is the ~1.6B-parameter model of the benchmark: vocabulary 128256, hidden
    2048, MLP 8192, 16 layers, 32 heads, untied output head.
    """

    vocab_size: int = 128256
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_layers: int = 16
    num_heads: int = 32

    @property
    def num_parameters(self) -> int:
        """Number of parameters of the model."""
        h, m, v = self.hidden_size, self.intermediate_size, self.vocab_size
        per_layer = 4 * h * h + 3 * h * m + 2 * h
        return 2 * v * h + self.num_layers * per_layer + h


FULL_CONFIG = LlamaConfig()
#: A few-second configuration for quick runs and tests.
SMALL_CONFIG = LlamaConfig(
    vocab_size=32000, hidden_size=512, intermediate_size=2048, num_layers=2, num_heads=8
)


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary position embeddings, no biases."""

    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.q_proj = nn.Linear(h, h, bias=False, **factory)
        self.k_proj = nn.Linear(h, h, bias=False, **factory)
        self.v_proj = nn.Linear(h, h, bias=False, **factory)
        self.o_proj = nn.Linear(h, h, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.num_heads

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.num_heads, d).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q, k = _rotary(q), _rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, h))


def _rotary(x: torch.Tensor, base: float = 500000.0) -> torch.Tensor:
    # Computed on the fly: the model has no buffers, so every tensor has an init rule.
    t, d = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(t, device=x.device, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class MLP(nn.Module):
    """SwiGLU feed-forward block."""

    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        h, m = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, m, bias=False, **factory)
        self.up_proj = nn.Linear(h, m, bias=False, **factory)
        self.down_proj = nn.Linear(m, h, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(cfg.hidden_size, eps=1e-5, **factory)
        self.self_attn = Attention(cfg, **factory)
        self.post_attention_layernorm = nn.RMSNorm(cfg.hidden_size, eps=1e-5, **factory)
        self.mlp = MLP(cfg, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Llama-style causal language model: embedding, blocks, final norm, untied head."""

    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, **factory)
        self.layers = nn.ModuleList(Block(cfg, **factory) for _ in range(cfg.num_layers))
        self.norm = nn.RMSNorm(cfg.hidden_size, eps=1e-5, **factory)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, **factory)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def build_model(
    method: str, cfg: LlamaConfig = FULL_CONFIG, dtype: torch.dtype = torch.float32
) -> LlamaModel:
    """Build the benchmark model on the CPU by one of :data:`METHODS`.

    Parameters
    ----------
    method : {'torch', 'patched', 'materialize', 'fill_'}
        ``torch``: torch's default initialization; ``patched``: the same inside
        ``fastinit.torch.patched()``; ``materialize``: built on the meta device, then
        ``fastinit.torch.materialize_``; ``fill_``: built on the meta device, then every
        parameter allocated and filled with a constant (the memory-bandwidth floor).
    cfg : LlamaConfig, optional
        Model sizes.
    dtype : torch.dtype, optional
        Parameter dtype (the modules are constructed in it directly).

    Returns
    -------
    LlamaModel
        The initialized model.
    """
    if method == "torch":
        return LlamaModel(cfg, dtype=dtype)
    import fastinit.torch as ft

    if method == "patched":
        with ft.patched():
            return LlamaModel(cfg, dtype=dtype)
    if method == "materialize":
        model = LlamaModel(cfg, device="meta", dtype=dtype)
        ft.materialize_(model, device="cpu")
        return model
    if method == "fill_":
        model = LlamaModel(cfg, device="meta", dtype=dtype)
        with torch.no_grad():
            for mod in model.modules():
                for key, p in mod._parameters.items():
                    if p is not None:
                        data = torch.empty_like(p, device="cpu").fill_(0.5)
                        mod._parameters[key] = nn.Parameter(data, p.requires_grad)
        return model
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def check_model(model: LlamaModel, sample_rows: int = 64) -> str | None:
    """Check that every weight of ``model`` follows its module's initialization rule.

    Linear weights: every sampled value within ``1/sqrt(fan_in)`` and not all equal;
    Embedding: sampled mean and variance of N(0, 1); RMSNorm weights: all ones.

    Returns
    -------
    str or None
        The first problem found, or None.
    """
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                w = mod.weight
                bound = 1.0 / math.sqrt(w.shape[1])
                rows = w[:: max(1, w.shape[0] // sample_rows)].float()
                # The bound is rounded to the dtype, as the values are.
                limit = torch.tensor(bound, dtype=w.dtype).float().item()
                if rows.abs().max().item() > limit:
                    return f"{name}.weight exceeds 1/sqrt(fan_in) = {bound:.6g}"
                if abs(rows.std().item() - bound / math.sqrt(3.0)) > 0.05 * bound:
                    return f"{name}.weight std {rows.std().item():.4g} != {bound / 3**0.5:.4g}"
            elif isinstance(mod, nn.Embedding):
                rows = mod.weight[:: max(1, mod.weight.shape[0] // 4096)].float()
                mean, std = rows.mean().item(), rows.std().item()
                tol = 6.0 / math.sqrt(rows.numel())  # 6 sigma of the sample mean
                if abs(mean) > tol or abs(std - 1.0) > tol:
                    return f"{name}.weight mean {mean:.4g} / std {std:.4g}, expected 0 / 1"
            elif isinstance(mod, nn.RMSNorm) and not bool((mod.weight == 1).all()):
                return f"{name}.weight is not all ones"
    return None


def _time_build(method: str, cfg: LlamaConfig, dtype: torch.dtype) -> tuple[float, str | None]:
    gc.collect()
    start = time.perf_counter()
    model = build_model(method, cfg, dtype)
    elapsed = time.perf_counter() - start
    problem = check_model(model) if method in INIT_METHODS else None
    del model
    gc.collect()
    return elapsed, problem


def run_model_bench(
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    repeat: int = 3,
    layers: int | None = None,
    *,
    config: LlamaConfig | None = None,
    methods: Sequence[str] = METHODS,
    threads: int | None = None,
    progress: bool = False,
    out: IO[str] | None = None,
    model: str = "llama",
) -> list[dict[str, Any]]:
    """Time the construction of the Llama-style model by torch, patched and materialize_.

    ``model`` other than ``"llama"`` runs :func:`fastinit.bench.libraries.run_library_bench`
    instead (a real transformers / timm / torchtitan model, float32).

    Parameters
    ----------
    dtypes : sequence of str, optional
        dtype names among float32, bfloat16, float16, float64.
    repeat : int, optional
        Rounds per dtype; a round builds the model once by every method, in turn, each round
        starting with the next method (after one untimed full-size build). The median
        counts.
    layers : int, optional
        Override the number of transformer blocks (quick runs).
    config : LlamaConfig, optional
        Model sizes (default: the ~1.6B :data:`FULL_CONFIG`).
    methods : sequence of str, optional
        Subset of :data:`METHODS`; ``torch`` is the reference of the speed-ups.
    threads : int, optional
        Threads for torch and fastinit (default: leave both as they are).
    progress : bool, optional
        Print one line per timed build on standard error.
    out : file-like, optional
        Where the table goes (default: standard output).

    Returns
    -------
    list of dict
        One row per (dtype, method): ``dtype``, ``method``, ``params``, ``layers``,
        ``threads``, ``times_s``, ``median_s``, ``min_s``, ``speedup`` (torch's median over
        this one, None without a torch row) and ``problem`` (None when the built model passed
        :func:`check_model`; the ``fill_`` floor is not checked).
    """
    import fastinit

    if model != "llama":
        return run_library_bench(model, repeat=repeat, threads=threads, progress=progress, out=out)
    cfg = config if config is not None else FULL_CONFIG
    if layers is not None:
        cfg = dataclasses.replace(cfg, num_layers=int(layers))
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    for name in dtypes:
        if name not in _DTYPES:
            raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(_DTYPES)}")
    saved = (torch.get_num_threads(), fastinit.get_num_threads())
    if threads is not None:
        torch.set_num_threads(threads)
        fastinit.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    try:
        # One-time costs (imports, torch's first meta-tensor ops) stay out of the timings.
        warm = LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=1, num_heads=4
        )
        for method in methods:
            for name in dtypes:
                build_model(method, warm, _DTYPES[name])
        # The first large allocation of a process is the slowest (on a VM the host may have
        # to back the pages first); one untimed full-size build takes that cost, whichever
        # method is timed first.
        largest = max(dtypes, key=lambda n: _DTYPES[n].itemsize)
        _time_build("fill_", cfg, _DTYPES[largest])
        for name in dtypes:
            dtype = _DTYPES[name]

            def build(method: str, dtype: torch.dtype = dtype) -> tuple[float, str | None]:
                return _time_build(method, cfg, dtype)

            times_of, problems = timed_rounds(methods, repeat, build, f"model {name}", progress)
            rows += summary_rows(
                methods,
                times_of,
                problems,
                dtype=name,
                params=cfg.num_parameters,
                layers=cfg.num_layers,
            )
    finally:
        torch.set_num_threads(saved[0])
        fastinit.set_num_threads(saved[1])
    print(format_model_table(rows), file=out if out is not None else sys.stdout, flush=True)
    return rows


def _verdict(row: dict[str, Any]) -> str:
    if row["method"] not in INIT_METHODS:
        return "memory floor (no random numbers)"
    return "ok" if row["problem"] is None else "FAIL: " + row["problem"]


def format_model_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render :func:`run_model_bench`'s rows as a text table."""
    if not rows:
        return "model construction: nothing measured"
    first = rows[0]
    lines = [
        f"model construction: Llama-style, {first['params'] / 1e9:.2f}B parameters, "
        f"{first['layers']} layers, {first['threads']} threads "
        f"(median of {len(first['times_s'])})",
        f"{'dtype':<10} {'method':<12} {'median s':>9} {'min s':>8} {'vs torch':>9}  check",
    ]
    describe: Callable[[dict[str, Any]], str] = lambda r: (  # noqa: E731
        f"{r['speedup']:.1f}x" if r["speedup"] else "-"
    )
    for r in rows:
        lines.append(
            f"{r['dtype']:<10} {r['method']:<12} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
            f"{describe(r):>9}  {_verdict(r)}"
        )
    return "\n".join(lines)
