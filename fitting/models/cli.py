"""``expnet models``: list, inspect, convert and build morphable models.

Examples::

    expnet models list
    expnet models info open
    expnet models convert --format bfm2009+3ddfa --bfm 01_MorphableModel.mat \\
        --expression Model_Expression.mat --shape-layout Model_Shape.mat --output bfm.npz
    expnet models convert --format 3ddfa --shape Model_Shape.mat \\
        --expression Model_Expression.mat --output 3ddfa.npz
    expnet models convert --format expnet --bfm BaselFaceModel_mod.mat --output expnet.npz
    expnet models convert --format 3ddfa_v2 --pkl bfm_noneck_v3.pkl --trust-pickle \\
        --output v2.npz
    expnet models build-open --output fitting/models/data/open_model.npz

Errors (a missing, malformed or refused file) end with one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fitting.models import BUILTIN_MODELS, load_model
from fitting.models.convert import (
    FORMATS,
    convert_3ddfa,
    convert_3ddfa_v2,
    convert_bfm2009_3ddfa,
    convert_expnet,
)
from fitting.models.model import ModelFileError, MorphableModel, read_model_file, save_model

PROG = "expnet models"
_HASH_PREFIX = 12


def main(argv: list[str] | None = None) -> int:
    """Run ``expnet models`` with ``argv`` (the arguments after ``models``); return the status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build-open"]:
        # build-open owns its flags; hand them over untouched.
        return _build_open(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ModelFileError, ValueError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="List, inspect, convert and build morphable models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="built-in models")
    listing.set_defaults(handler=_list)

    info = commands.add_parser("info", help="everything about one model")
    info.add_argument("spec", metavar="SPEC", help="a built-in name ('open') or a model .npz")
    info.set_defaults(handler=_info)

    convert = commands.add_parser("convert", help="convert BFM / 3DDFA / ExpNet model files")
    convert.add_argument("--format", required=True, choices=FORMATS)
    convert.add_argument("--output", required=True, type=Path, help="model .npz to write")
    convert.add_argument("--model-id", help="name stored in the model (default: output stem)")
    convert.add_argument("--bfm", type=Path,
                         help="01_MorphableModel.mat (bfm2009+3ddfa) or "
                              "BaselFaceModel_mod.mat (expnet)")
    convert.add_argument("--expression", type=Path, help="3DDFA Model_Expression.mat")
    convert.add_argument("--shape-layout", type=Path,
                         help="3DDFA Model_Shape.mat: keypoints, tri (and trimIndex if present)")
    convert.add_argument("--trim-index", type=Path, help=".mat with trimIndex (1-based)")
    convert.add_argument("--shape", type=Path, help="3DDFA Model_Shape.mat (3ddfa)")
    convert.add_argument("--pkl", type=Path, help="3DDFA_V2 model pickle (3ddfa_v2)")
    convert.add_argument("--trust-pickle", action="store_true",
                         help="allow reading --pkl (arrays only are admitted)")
    convert.set_defaults(handler=_convert)

    # Listed for --help only: main() hands build-open its arguments before parsing.
    commands.add_parser("build-open", help="build the open CC0 model (see its --help)",
                        add_help=False)
    return parser


_REQUIRED_FLAGS = {
    "bfm2009+3ddfa": ("bfm", "expression"),
    "3ddfa": ("shape", "expression"),
    "expnet": ("bfm",),
    "3ddfa_v2": ("pkl",),
}


def _convert(args: argparse.Namespace) -> int:
    missing = [f"--{name.replace('_', '-')}" for name in _REQUIRED_FLAGS[args.format]
               if getattr(args, name) is None]
    if missing:
        raise ValueError(f"--format {args.format} needs {', '.join(missing)}")
    model_id = args.model_id or args.output.stem
    if args.format == "bfm2009+3ddfa":
        model = convert_bfm2009_3ddfa(args.bfm, args.expression,
                                      shape_layout_path=args.shape_layout,
                                      trim_index_path=args.trim_index, model_id=model_id)
    elif args.format == "3ddfa":
        model = convert_3ddfa(args.shape, args.expression, model_id=model_id)
    elif args.format == "expnet":
        model = convert_expnet(args.bfm, model_id=model_id)
    else:
        model = convert_3ddfa_v2(args.pkl, trust_pickle=args.trust_pickle, model_id=model_id)
    path = save_model(model, args.output)
    print(f"wrote {path}: {_summary(model)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, path in BUILTIN_MODELS.items():
        if not path.is_file():
            print(f"{name}: not built yet ({path} is missing; run 'expnet models build-open')")
            continue
        try:
            model = read_model_file(path)
        except ModelFileError as error:
            print(f"{name}: unreadable ({' '.join(str(error).split())})")
            continue
        licence = model.metadata.get("licence", model.metadata.get("license", "unknown"))
        print(f"{name}: {path} {_summary(model)} licence={licence}")
    return 0


def _info(args: argparse.Namespace) -> int:
    model = load_model(args.spec)
    path = BUILTIN_MODELS.get(args.spec, Path(args.spec))
    print(f"model_id: {model.model_id}")
    print(f"path: {path}")
    print(f"units: {model.units}")
    print(f"content_hash: {model.content_hash}")
    print(f"vertices: {model.num_vertices}  triangles: {model.triangles.shape[0]}  "
          f"K_id: {model.identity_dim}  K_exp: {model.expression_dim}")
    print("arrays:")
    for name in ("mean", "identity_basis", "identity_std", "expression_basis",
                 "expression_std", "landmark_indices", "triangles", "contour_candidates"):
        value = getattr(model, name)
        if value is None:
            print(f"  {name}: none")
        else:
            print(f"  {name}: {value.shape} {value.dtype} "
                  f"min {np.min(value):.6g} max {np.max(value):.6g}")
    print("metadata:")
    print(json.dumps(model.metadata, indent=2, sort_keys=True))
    return 0


def _build_open(rest: list[str]) -> int:
    # Imported here, not at the top: the build tool is never on the library's import path.
    from fitting.models.build import open_model

    return open_model.main(rest)


def _summary(model: MorphableModel) -> str:
    return (f"model_id={model.model_id} vertices={model.num_vertices} "
            f"K_id={model.identity_dim} K_exp={model.expression_dim} "
            f"hash={model.content_hash[:_HASH_PREFIX]}")


if __name__ == "__main__":
    sys.exit(main())
