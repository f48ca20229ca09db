"""fastinit's benchmark command line (``python -m fastinit bench``).

A separate audience from the library: it imports ``fastinit`` (and torch), and nothing in
``fastinit`` imports it. ``fills`` times the element-wise fills against ``torch.nn.init``
(and owns the command's arguments); ``models`` times model construction and
``orthogonal`` the orthogonal initializers, as optional sections of the same run.
"""

from __future__ import annotations

from .fills import add_bench_arguments, run_from_args

__all__ = ["add_bench_arguments", "run_from_args"]
