"""Sampling rows by face track, as a function and through ExpressionShardsMap."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import rows as columns
from tests.schemas.test_schema_versions import version_2_shard
from tests.training.conftest import latent_rows, write_shard
from training import ExpressionShards, ExpressionShardsMap
from training.tracks import rows_per_track


def test_at_most_k_rows_of_each_track_evenly_spaced_and_every_still():
    tracks = ["v-k0"] * 10 + [None, None] + ["v-k1"] * 2
    frames = list(range(10)) + [-1, -1] + [3, 4]
    keep = rows_per_track(tracks, frames, per_track=4)
    # Track k0: frames 0, 3, 6, 9 (first and last included); the stills; all of k1.
    assert keep.tolist() == [0, 3, 6, 9, 10, 11, 12, 13]
    # Order of the rows does not matter: the frame index does.
    order = np.random.default_rng(0).permutation(len(tracks))
    shuffled = rows_per_track(np.array(tracks, dtype=object)[order], np.array(frames)[order],
                              per_track=4)
    assert sorted(order[shuffled].tolist()) == keep.tolist()
    with pytest.raises(ValueError, match="per_track"):
        rows_per_track(tracks, frames, per_track=0)


def test_the_map_dataset_keeps_k_rows_per_track(tmp_path):
    rows = latent_rows(12, seed=8)
    for number, row in enumerate(rows[:9]):          # 9 frames of one track, 3 stills
        row.update({columns.TRACK_ID: "abc-k0", columns.FRAME_INDEX: number,
                    columns.TIME_S: number / 5})
    write_shard(tmp_path / "new" / "part-00000-of-00001.parquet", rows)
    version_2_shard(tmp_path / "new" / "part-00000-of-00002.parquet")   # no video columns
    everything = ExpressionShardsMap(tmp_path / "new", columns=[columns.ID])
    assert len(everything) == 12 + 4
    sampled = ExpressionShardsMap(tmp_path / "new", columns=[columns.ID, columns.TRACK_ID],
                                  max_rows_per_track=3)
    assert len(sampled) == 3 + 3 + 4
    kept_track = [item[columns.ID] for item in sampled if item[columns.TRACK_ID] == "abc-k0"]
    frames = {row[columns.ID]: row[columns.FRAME_INDEX] for row in rows[:9]}
    assert sorted(frames[row_id] for row_id in kept_track) == [0, 4, 8]


def test_streaming_reads_the_video_columns_of_old_and_new_shards(tmp_path):
    rows = latent_rows(3, seed=9)
    rows[0].update({columns.TRACK_ID: "abc-k0", columns.FRAME_INDEX: 0, columns.TIME_S: 0.0})
    write_shard(tmp_path / "part-00000-of-00002.parquet", rows)
    version_2_shard(tmp_path / "part-00001-of-00002.parquet")
    found = [item[columns.TRACK_ID] for item in ExpressionShards(
        tmp_path, columns=[columns.ID, columns.TRACK_ID], shuffle=False)]
    assert sorted(found, key=lambda track: track is None) == ["abc-k0"] + [None] * 6
