"""The dataset's file names: shard names round trip, shard assignment is stable and spread."""

import numpy as np
import pytest

from schemas.layout import parse_shard_name, shard_name, shard_of


def test_shard_assignment_is_stable_and_spread():
    ids = [f"{index:064x}" for index in range(2000)]
    shards = [shard_of(row_id, 8) for row_id in ids]
    assert shards == [shard_of(row_id, 8) for row_id in ids]
    counts = np.bincount(shards, minlength=8)
    # 2000 ids over 8 shards: about 250 each; a hash puts every shard within 25 % of that.
    assert counts.min() > 187 and counts.max() < 313
    assert shard_name(3, 12) == "part-00003-of-00012.parquet"


@pytest.mark.parametrize("index, count, prefix", [(0, 1, "part"), (3, 12, "part"),
                                                   (99999, 99999, "failures-detect")])
def test_shard_names_round_trip(index, count, prefix):
    assert parse_shard_name(shard_name(index, count, prefix)) == (prefix, index, count)


@pytest.mark.parametrize("name", ["manifest.json", "part-3-of-12.parquet",
                                  "part-00003-of-00012.parquet.tmp", "part-00003-of-00012"])
def test_other_files_are_not_shards(name):
    assert parse_shard_name(name) is None
