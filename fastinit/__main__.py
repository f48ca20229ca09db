"""Command line of fastinit: ``python -m fastinit <command>`` or the ``fastinit`` script.

Commands
--------
bench
    Time fastinit's fills against ``torch.nn.init`` side by side on LLM-sized buffers and
    print the table (see :mod:`fastinit.bench`). ``--model`` and ``--orthogonal`` add the
    model-construction and orthogonal sections.

Each command lives in its own sub-parser, so new ones (``config``, ...) are one
``add_parser`` away.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``fastinit`` command line.

    Returns
    -------
    argparse.ArgumentParser
        The top-level parser, with one sub-parser per command.
    """
    from . import bench

    parser = argparse.ArgumentParser(
        prog="fastinit",
        description="fastinit: reproducible, native-accelerated weight initialization.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench_parser = commands.add_parser(
        "bench",
        help="time fastinit's fills against torch.nn.init and print the side-by-side table",
        description=(
            "Time fastinit.uniform_/normal_/trunc_normal_ against torch.nn.init on the same "
            "buffers, with the same threads, next to a plain torch fill_ of each buffer (the "
            "memory-bandwidth reference). Prints time, elements/s, GB/s, speed-up over "
            "torch.nn.init and the percentage of the fill bandwidth. The default run takes "
            "about a minute on 2 cores."
        ),
    )
    bench.add_bench_arguments(bench_parser)
    bench_parser.set_defaults(handler=bench.run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastinit`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status (0 on success).
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
