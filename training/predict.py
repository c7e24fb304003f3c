"""`expnet predict`: a trained ExpNet's 29 coefficients for every image, as Parquet.

    expnet predict --checkpoint runs/expnet/last.pt --input out/ --output predictions.parquet

``--input`` takes label shards (files or folders of ``*.parquet``: their stored face crops
are used, ids kept) or image files and folders of images, which must already be face crops
(``expnet generate`` makes them from photos; this command does not detect faces). An image
file's id is the sha256 of its bytes, as in the pipeline. Rows follow
``schemas.PREDICTION_SCHEMA``, sorted by id; ``checkpoint`` is the sha256 of the checkpoint
file and the schema metadata names the label model the coefficients are in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from schemas import PREDICTION_SCHEMA, SchemaError
from schemas import rows as columns
from training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from training.dataset import ExpressionShards
from training.decode import ResizeImage, decode_image, image_to_tensor
from training.distributed import resolve_device

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expnet predict", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of expnet train")
    parser.add_argument("--input", nargs="+", required=True,
                        help="label shards / folders of shards, or face-crop images / folders")
    parser.add_argument("--output", required=True, help="predictions file (.parquet)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return parser


def is_shard_input(spec: str) -> bool:
    """A ``.parquet`` file, a glob of them, or a folder holding any (local paths and URIs)."""
    if spec.endswith(".parquet") or "://" in spec:
        return True
    path = Path(spec)
    return path.is_dir() and any(path.glob("*.parquet"))


def image_files(specs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively) in folders, in path order."""
    files = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files.extend(sorted(found for found in path.rglob("*")
                                if found.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no image file or folder at {spec!r}")
    return files


class ImageFiles(Dataset):
    """Face-crop image files -> dicts of id, source_uri and a resized image tensor."""

    def __init__(self, paths: list[Path], transform):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        data = self.paths[index].read_bytes()
        image = self.transform(image_to_tensor(decode_image(data)))
        return {columns.ID: hashlib.sha256(data).hexdigest(),
                columns.SOURCE_URI: str(self.paths[index].resolve()), columns.IMAGE: image}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prediction_metadata(state: dict, checkpoint: Path) -> dict[bytes, bytes]:
    labels = state["label_model"]
    entries = {"expnet.model_id": labels["model_id"], "expnet.model_hash": labels["model_hash"],
               "expnet.expression_std": labels["expression_std"],
               "expnet.expression_units": "sigma", "expnet.checkpoint_path": str(checkpoint)}
    return {key.encode(): json.dumps(value).encode() for key, value in entries.items()}


def make_dataset(inputs: list[str], transform, state: dict):
    """Shards (ids and crops as stored) or image files, both yielding dicts."""
    if all(is_shard_input(spec) for spec in inputs):
        dataset = ExpressionShards(inputs, shuffle=False, transform=transform,
                                   columns=[columns.ID, columns.SOURCE_URI, columns.IMAGE])
        if dataset.metadata.model_hash != state["label_model"]["model_hash"]:
            print("expnet predict: note: the shards' labels come from another model than the "
                  "checkpoint's; predictions are in the checkpoint's model units",
                  file=sys.stderr)
        return dataset
    if any(is_shard_input(spec) for spec in inputs):
        raise ValueError("--input mixes shards and image files; give one kind")
    files = image_files(inputs)
    if not files:
        raise FileNotFoundError(f"no images in {inputs}")
    return ImageFiles(files, transform)


@torch.no_grad()
def predict(args: argparse.Namespace) -> int:
    """Write the predictions file; returns the number of rows written."""
    checkpoint = Path(args.checkpoint)
    device = resolve_device(args.device)
    state = load_checkpoint(checkpoint, map_location=device)
    model = model_from_checkpoint(state).to(device)
    transform = ResizeImage(state["config"]["image_size"])
    loader = DataLoader(make_dataset(args.input, transform, state),
                        batch_size=args.batch_size, num_workers=args.workers)
    checkpoint_hash = file_sha256(checkpoint)
    rows = []
    for batch in loader:
        expressions = model(batch[columns.IMAGE].to(device)).cpu().numpy()
        for row_id, uri, expression in zip(batch[columns.ID], batch[columns.SOURCE_URI],
                                           expressions, strict=True):
            rows.append({columns.ID: row_id, columns.SOURCE_URI: uri,
                         columns.EXPRESSION: expression.tolist(),
                         columns.SOURCE: columns.PREDICTED, columns.CHECKPOINT: checkpoint_hash})
    rows.sort(key=lambda row: (row[columns.ID], row[columns.SOURCE_URI]))
    schema = PREDICTION_SCHEMA.with_metadata(prediction_metadata(state, checkpoint))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), output)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.batch_size < 1 or args.workers < 0:
        print("expnet predict: error: --batch-size must be >= 1 and --workers >= 0",
              file=sys.stderr)
        return 2
    try:
        count = predict(args)
    except (SchemaError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"expnet predict: error: {error}", file=sys.stderr)
        return 2
    print(f"expnet predict: {count} predictions -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
