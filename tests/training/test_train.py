"""`expnet train` and `expnet predict`: learning, checkpoints, resuming, prediction files."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from schemas import PREDICTION_SCHEMA
from schemas import rows as columns
from tests.training.conftest import encode_jpeg, latent_image
from training import ExpressionShards
from training import predict as predict_command
from training import train as train_command
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.decode import ResizeImage


def train_flags(shards, output, *extra) -> list[str]:
    return ["--train", str(shards), "--val", str(shards), "--output", str(output),
            "--batch-size", "8", "--image-size", "32", "--workers", "0",
            "--optimizer", "adamw", "--lr", "0.001", "--seed", "5", "--quiet", *extra]


def without_timing(history: list) -> list:
    return [{key: value for key, value in record.items() if key != "seconds"}
            for record in history]


def test_resumed_run_equals_uninterrupted_run(latent_shards, tmp_path):
    assert train_command.main(train_flags(latent_shards, tmp_path / "straight",
                                          "--epochs", "2")) == 0
    assert train_command.main(train_flags(latent_shards, tmp_path / "resumed",
                                          "--epochs", "1")) == 0
    assert train_command.main(train_flags(latent_shards, tmp_path / "resumed",
                                          "--epochs", "2", "--resume")) == 0
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    # 32 rows in batches of 8: 4 steps an epoch.
    assert (resumed["epoch"], resumed["step"]) == (2, 8)
    adam_steps = {float(state["step"]) for state in resumed["optimizer"]["state"].values()}
    assert adam_steps == {8.0}
    for name, tensor in straight["model"].items():
        # Same process, same thread count, same data order: bit-identical arithmetic.
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0)
    assert without_timing(resumed["history"]) == without_timing(straight["history"])
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (tmp_path / "resumed" / "checkpoints" / "epoch-0001.pt").exists()


def test_training_on_generated_shards_lowers_its_error(generated_shards, tmp_path):
    flags = ["--train", str(generated_shards), "--output", str(tmp_path), "--epochs", "8",
             "--batch-size", "8", "--image-size", "64", "--workers", "0", "--optimizer",
             "adamw", "--lr", "0.003", "--seed", "0", "--quiet"]
    assert train_command.main(flags) == 0
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == list(range(1, 9))
    assert all(record["train_samples"] == 8 for record in history)
    # Eight full-batch steps on eight real faces: the fit must at least halve its error.
    assert history[-1]["train_rmse"] < 0.5 * history[0]["train_rmse"]


@pytest.fixture(scope="module")
def checkpoint(latent_shards, tmp_path_factory):
    output = tmp_path_factory.mktemp("predict-run")
    assert train_command.main(train_flags(latent_shards, output, "--epochs", "1")) == 0
    return output / "last.pt"


def model_outputs(checkpoint_path, images: torch.Tensor) -> np.ndarray:
    model = model_from_checkpoint(load_checkpoint(checkpoint_path))
    with torch.no_grad():
        return model(images).numpy()


def test_predict_on_shards_writes_one_row_per_row(checkpoint, latent_shards, tmp_path):
    output = tmp_path / "predictions.parquet"
    assert predict_command.main(["--checkpoint", str(checkpoint), "--input",
                                 str(latent_shards), "--output", str(output),
                                 "--batch-size", "10"]) == 0
    table = pq.read_table(output)
    assert table.schema.remove_metadata().equals(PREDICTION_SCHEMA)
    shards = list(ExpressionShards(latent_shards, shuffle=False, transform=ResizeImage(32),
                                   columns=[columns.ID, columns.IMAGE]))
    assert table.column(columns.ID).to_pylist() == sorted(row[columns.ID] for row in shards)
    assert set(table.column(columns.SOURCE).to_pylist()) == {"predicted"}
    assert set(table.column(columns.CHECKPOINT).to_pylist()) == {
        hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    by_id = dict(zip(table.column(columns.ID).to_pylist(),
                     table.column(columns.EXPRESSION).to_pylist(), strict=True))
    expected = model_outputs(checkpoint, torch.stack([row[columns.IMAGE] for row in shards]))
    predicted = np.array([by_id[row[columns.ID]] for row in shards])
    # Batches of 10 versus one batch of 32: only float32 summation order differs.
    np.testing.assert_allclose(predicted, expected, atol=1e-4)
    metadata = table.schema.metadata
    assert json.loads(metadata[b"expnet.model_hash"]) == "1" * 64


def test_predict_on_image_files_ids_are_content_hashes(checkpoint, tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    latents = np.random.default_rng(3).normal(size=(3, 3))
    for index, latent in enumerate(latents):
        (folder / f"face{index}.jpg").write_bytes(encode_jpeg(latent_image(latent, 48)))
    output = tmp_path / "predictions.parquet"
    assert predict_command.main(["--checkpoint", str(checkpoint), "--input", str(folder),
                                 "--output", str(output)]) == 0
    table = pq.read_table(output)
    hashes = sorted(hashlib.sha256(path.read_bytes()).hexdigest()
                    for path in folder.glob("*.jpg"))
    assert table.column(columns.ID).to_pylist() == hashes
    assert all(np.isfinite(value).all() for value in table.column(columns.EXPRESSION).to_pylist())


def test_bad_flags_and_missing_checkpoint_fail_with_status_2(latent_shards, tmp_path, capsys):
    assert train_command.main(train_flags(latent_shards, tmp_path, "--epochs", "0")) == 2
    assert "--epochs" in capsys.readouterr().err
    assert train_command.main(train_flags(latent_shards, tmp_path, "--epochs", "1",
                                          "--resume", str(tmp_path / "none.pt"))) == 2
    assert predict_command.main(["--checkpoint", str(tmp_path / "none.pt"), "--input",
                                 str(latent_shards), "--output", str(tmp_path / "p.parquet")]) == 2


def test_train_and_predict_console_commands_exit_cleanly(latent_shards, tmp_path):
    """``expnet train`` and ``expnet predict`` as a user runs them: fresh processes, status 0.

    Both hold torch and Arrow at interpreter exit, where a thread left behind once aborted
    ``expnet generate`` (status 134); each command runs twice to give a race two chances.
    """
    import subprocess
    import sys
    from pathlib import Path

    expnet = str(Path(sys.executable).parent / "expnet")
    for attempt in range(2):
        output = tmp_path / f"run{attempt}"
        trained = subprocess.run([expnet, "train", *train_flags(latent_shards, output,
                                                                "--epochs", "1")],
                                 capture_output=True, text=True, timeout=600)
        assert trained.returncode == 0, trained.stderr[-2000:]
        checkpoints = sorted(output.rglob("*.pt"))
        assert checkpoints, f"no checkpoint under {output}"
        predictions = output / "predictions.parquet"
        predicted = subprocess.run([expnet, "predict", "--checkpoint", str(checkpoints[-1]),
                                    "--input", str(latent_shards), "--output",
                                    str(predictions)], capture_output=True, text=True,
                                   timeout=600)
        assert predicted.returncode == 0, predicted.stderr[-2000:]
        # latent_shards: two shards of 16 rows; one prediction per row.
        assert pq.read_metadata(predictions).num_rows == 32
