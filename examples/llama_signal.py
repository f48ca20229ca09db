"""A ~1.2B-parameter Llama-style model and a short batch, for ``python -m fastinit report``.

The shape of Llama 3.2 1B (hidden 2048, 16 blocks, 32 query / 8 key-value heads, MLP 8192,
vocabulary 128256, tied embeddings), built from transformers' ``LlamaConfig`` with random
weights (initialized by fastinit through ``fastinit.torch.patched()``), on one sequence of 128
tokens. From the repository root::

    python -m fastinit report --model examples.llama_signal:build --time 3 --no-plot

prints the per-layer report and times ``signal_report`` against one plain forward + backward
pass of the same model and batch. ``build_small`` is the same architecture at toy size.
"""

from __future__ import annotations

import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import fastinit.torch

__all__ = ["build", "build_small"]


def _build(config: LlamaConfig, seq_len: int) -> tuple[LlamaForCausalLM, torch.Tensor]:
    with fastinit.torch.patched():
        model = LlamaForCausalLM(config)
    model.train()
    ids = torch.randint(config.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(0))
    return model, ids


def build() -> tuple[LlamaForCausalLM, torch.Tensor]:
    """The ~1.2B-parameter model and one sequence of ``LLAMA_SIGNAL_TOKENS`` (128) tokens."""
    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        use_cache=False,
    )
    return _build(config, int(os.environ.get("LLAMA_SIGNAL_TOKENS", "128")))


def build_small() -> tuple[LlamaForCausalLM, torch.Tensor]:
    """The same architecture at toy size (2 blocks, hidden 64), for a quick look."""
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        use_cache=False,
    )
    return _build(config, 32)
