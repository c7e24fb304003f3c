"""ExpressionShards: exactly-once work split, epochs, equal lengths, decoding, refusals."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from schemas import SchemaError
from schemas import rows as columns
from tests.training.conftest import (
    MIXING,
    latent_rows,
    synthetic_metadata,
    write_latent_shards,
    write_shard,
)
from training import ExpressionShards, ExpressionShardsMap
from training.decode import ResizeImage
from training.split import worker_ranges


def shard_ids(folder) -> list:
    return [row_id for path in sorted(folder.glob("*.parquet"))
            for row_id in pq.read_table(path, columns=[columns.ID]).column(0).to_pylist()]


def ids_of_rank(folder, *, rank, world_size, epoch=0, workers=2, **options) -> list:
    """Ids yielded by one simulated rank through a DataLoader with ``workers`` workers."""
    dataset = ExpressionShards(folder, rank=rank, world_size=world_size, columns=[columns.ID],
                               seed=3, shuffle_buffer=8, **options)
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=5, num_workers=workers)
    return [row_id for batch in loader for row_id in batch[columns.ID]]


def test_every_row_once_over_two_ranks_and_two_workers(many_groups):
    expected = shard_ids(many_groups)
    seen = ids_of_rank(many_groups, rank=0, world_size=2) + ids_of_rank(
        many_groups, rank=1, world_size=2)
    counts = collections.Counter(seen)
    assert sorted(counts) == sorted(expected)
    assert max(counts.values()) == 1


def test_set_epoch_changes_order_not_set(many_groups):
    first = ids_of_rank(many_groups, rank=0, world_size=1, epoch=0)
    again = ids_of_rank(many_groups, rank=0, world_size=1, epoch=0)
    second = ids_of_rank(many_groups, rank=0, world_size=1, epoch=1)
    assert first == again  # same seed and epoch: the same order, run after run
    assert first != second
    assert sorted(first) == sorted(second) == sorted(shard_ids(many_groups))


def test_shuffle_false_keeps_file_order_with_one_worker(many_groups):
    ids = ids_of_rank(many_groups, rank=0, world_size=1, workers=0, shuffle=False)
    assert ids == shard_ids(many_groups)


def test_drop_last_gives_equal_counts_and_batches_per_rank(many_groups):
    # 101 rows over 3 ranks: 33 each, 2 dropped; 2 workers batch 17 and 16 rows alike.
    per_rank = [ids_of_rank(many_groups, rank=rank, world_size=3, drop_last=True)
                for rank in range(3)]
    assert [len(ids) for ids in per_rank] == [33, 33, 33]
    everything = [row_id for ids in per_rank for row_id in ids]
    assert len(set(everything)) == 99
    lengths = {len(ExpressionShards(many_groups, rank=rank, world_size=3, drop_last=True))
               for rank in range(3)}
    assert lengths == {33}


def test_len_matches_rows_yielded_without_drop_last(many_groups):
    for rank in range(3):
        dataset = ExpressionShards(many_groups, rank=rank, world_size=3, columns=[columns.ID])
        assert len(dataset) == len(ids_of_rank(many_groups, rank=rank, world_size=3))


def test_worker_ranges_cover_rows_exactly_once_for_any_cut():
    rng = np.random.default_rng(0)
    group_rows = rng.integers(1, 9, size=40)
    order = rng.permutation(40)
    for world_size, num_workers in [(1, 1), (2, 3), (5, 2), (7, 4)]:
        covered = np.zeros(group_rows.sum(), dtype=int)
        offsets = np.concatenate([[0], np.cumsum(group_rows)])
        for rank in range(world_size):
            for worker in range(num_workers):
                for group, start, stop in worker_ranges(
                        group_rows, order, rank=rank, world_size=world_size, worker=worker,
                        num_workers=num_workers, drop_last=False):
                    covered[offsets[group] + start:offsets[group] + stop] += 1
        assert np.all(covered == 1)


def test_yields_decoded_images_and_labels(latent_shards):
    dataset = ExpressionShards(latent_shards, shuffle=False)
    image, expression = next(iter(dataset))
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert expression.shape == (29,) and expression.dtype == torch.float32
    # The synthetic image encodes z in its channel means (128 + 40 z, the ramp averages
    # out); JPEG at quality 95 moves a flat channel mean by well under 2 grey levels.
    latent = (image.mean(dim=(1, 2)).numpy() * 255.0 - 128.0) / 40.0
    np.testing.assert_allclose(latent @ MIXING, expression.numpy(), atol=2.0 / 40.0 * 3.0)
    first = pq.read_table(sorted(latent_shards.glob("*.parquet"))[0]).slice(0, 1)
    np.testing.assert_array_equal(expression.numpy(),
                                  np.asarray(first.column(columns.EXPRESSION)[0].as_py(),
                                             dtype=np.float32))


def test_pil_and_cv2_decoders_agree_and_transform_runs_in_worker(latent_shards):
    by_cv2 = ExpressionShards(latent_shards, shuffle=False, decode="cv2",
                              transform=ResizeImage(16))
    by_pil = ExpressionShards(latent_shards, shuffle=False, decode="pil",
                              transform=ResizeImage(16))
    images_cv2, _ = next(iter(DataLoader(by_cv2, batch_size=4, num_workers=1)))
    images_pil, _ = next(iter(DataLoader(by_pil, batch_size=4, num_workers=1)))
    assert images_cv2.shape == (4, 3, 16, 16)
    # Both use libjpeg; IDCT and upsampling choices may differ by a few grey levels.
    assert torch.max(torch.abs(images_cv2 - images_pil)) < 4.0 / 255.0


def test_dict_output_with_requested_columns(latent_shards):
    dataset = ExpressionShards(latent_shards, shuffle=False,
                               columns=[columns.ID, columns.YAW, columns.LANDMARKS])
    row = next(iter(dataset))
    assert set(row) == {columns.ID, columns.YAW, columns.LANDMARKS}
    assert isinstance(row[columns.ID], str) and len(row[columns.ID]) == 64
    assert row[columns.LANDMARKS].shape == (136,)
    assert float(row[columns.YAW]) == 0.0


def test_metadata_and_expression_std_are_exposed(latent_shards):
    dataset = ExpressionShards(latent_shards)
    assert dataset.metadata == synthetic_metadata()
    assert dataset.expression_std == tuple([2.0] * 29)


def test_unknown_schema_version_is_refused(tmp_path):
    write_shard(tmp_path / "part-00000-of-00001.parquet", latent_rows(3, seed=0),
                metadata=synthetic_metadata(schema_version=4))
    with pytest.raises(SchemaError, match="schema version 4"):
        ExpressionShards(tmp_path)


def test_mixed_models_are_refused_unless_allowed(tmp_path):
    write_shard(tmp_path / "a.parquet", latent_rows(3, seed=0))
    write_shard(tmp_path / "b.parquet", latent_rows(3, seed=1),
                metadata=synthetic_metadata(model_hash="2" * 64, model_id="other"))
    with pytest.raises(SchemaError, match="2 different models"):
        ExpressionShards(tmp_path)
    with pytest.raises(SchemaError, match="different models"):
        ExpressionShardsMap([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    mixed = ExpressionShards(tmp_path, allow_mixed_models=True, columns=[columns.ID])
    assert len(list(mixed)) == 6
    with pytest.raises(SchemaError, match="mix models"):
        _ = mixed.expression_std


def test_folder_reads_only_top_level_parquet_and_globs(tmp_path):
    write_latent_shards(tmp_path, [4, 5], seed=0)
    # A run's failure files live in a sub-folder and have another schema.
    write_shard(tmp_path / "failures" / "part-00000-of-00001.parquet", latent_rows(2, seed=9))
    assert len(ExpressionShards(tmp_path)) == 9
    assert len(ExpressionShards(str(tmp_path / "part-00001-*.parquet"))) == 5
    with pytest.raises(FileNotFoundError):
        ExpressionShards(tmp_path / "missing")


def test_fsspec_uri_reads_like_local(tmp_path):
    import fsspec

    paths = write_latent_shards(tmp_path, [6], seed=5)
    memory = fsspec.filesystem("memory")
    memory.pipe("/shards/part-00000-of-00001.parquet", paths[0].read_bytes())
    remote = ExpressionShards("memory://shards", shuffle=False, columns=[columns.ID])
    assert [row[columns.ID] for row in remote] == shard_ids(tmp_path)


def test_map_dataset_random_access_matches_stream(latent_shards):
    mapped = ExpressionShardsMap(latent_shards)
    streamed = list(ExpressionShards(latent_shards, shuffle=False))
    assert len(mapped) == len(streamed) == 32
    for index in (0, 17, 31, -1):
        image, expression = mapped[index]
        torch.testing.assert_close(image, streamed[index][0])
        torch.testing.assert_close(expression, streamed[index][1])
    with pytest.raises(IndexError):
        mapped[32]


def test_dataset_pickles_for_spawned_workers(many_groups):
    dataset = ExpressionShards(many_groups, columns=[columns.ID], shuffle=False)
    clone = pickle.loads(pickle.dumps(dataset))
    assert [row[columns.ID] for row in clone] == [row[columns.ID] for row in dataset]


def test_bad_arguments_raise(many_groups):
    with pytest.raises(ValueError, match="rank"):
        ExpressionShards(many_groups, rank=2, world_size=2)
    with pytest.raises(ValueError, match="both"):
        ExpressionShards(many_groups, rank=0)
    with pytest.raises(ValueError, match="columns"):
        ExpressionShards(many_groups, columns=["pixels"])
    with pytest.raises(ValueError, match="decode"):
        ExpressionShards(many_groups, decode="turbojpeg")


def test_cv2_decode_gives_rgb_pixels_of_the_bgr_decode(latent_shards):
    import cv2

    from training.decode import decode_image

    data = pq.read_table(sorted(latent_shards.glob("*.parquet"))[0]).column(
        columns.IMAGE)[0].as_py()["bytes"]
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    # Direct RGB decoding (OpenCV >= 4.10) must be the same libjpeg output, channels swapped.
    np.testing.assert_array_equal(decode_image(data), bgr[:, :, ::-1])
    with pytest.raises(ValueError, match="cannot decode"):
        decode_image(b"not an image")


def epoch_batches(folder, *, rank, world_size, batch_size, batched, workers=2, **options):
    """(ids, expressions, images) batches of one simulated rank, per-sample or batched."""
    dataset = ExpressionShards(
        folder, rank=rank, world_size=world_size, seed=3, shuffle_buffer=8,
        columns=[columns.ID, columns.IMAGE, columns.EXPRESSION],
        batch_size=batch_size if batched else None, **options)
    dataset.set_epoch(1)
    loader = DataLoader(dataset, batch_size=None if batched else batch_size,
                        num_workers=workers)
    return [(batch[columns.ID], batch[columns.EXPRESSION], batch[columns.IMAGE])
            for batch in loader]


def test_batched_matches_per_sample_rows_and_pixels_over_ranks_and_workers(many_groups):
    seen = []
    for rank in range(2):
        per_sample = epoch_batches(many_groups, rank=rank, world_size=2, batch_size=5,
                                   batched=False)
        batched = epoch_batches(many_groups, rank=rank, world_size=2, batch_size=5,
                                batched=True)
        assert len(batched) == len(per_sample)
        for (ids, expressions, images), (ids_b, expressions_b, images_b) in zip(per_sample,
                                                                                batched):
            assert ids_b == ids
            assert images_b.shape == images.shape and images_b.dtype == torch.float32
            assert images_b.is_contiguous(memory_format=torch.channels_last)
            # The same libjpeg decode and the same x / 255: bit-identical, not just close.
            assert torch.equal(expressions_b, expressions)
            assert torch.equal(images_b, images)
            seen.extend(ids_b)
    assert sorted(seen) == sorted(shard_ids(many_groups))  # every row once over 2 x 2


def test_batched_last_batch_of_each_worker_is_short_or_dropped(many_groups):
    # 101 rows, 1 rank, 2 workers: 51 and 50 rows; batches of 8 end in 3 and 2 rows.
    sizes = [len(ids) for ids, _, _ in epoch_batches(many_groups, rank=0, world_size=1,
                                                     batch_size=8, batched=True)]
    assert sorted(sizes) == [2, 3] + [8] * 12
    dataset = ExpressionShards(many_groups, seed=3, batch_size=8, columns=[columns.ID])
    assert dataset.num_batches(num_workers=2) == 14
    assert len(dataset) == 101  # len stays the sample count
    # drop_last: 3 ranks x 33 rows, workers 17 + 16 rows, 2 full batches each, rest dropped.
    dropped = ExpressionShards(many_groups, rank=1, world_size=3, drop_last=True, seed=3,
                               batch_size=8, columns=[columns.ID])
    loader = DataLoader(dropped, batch_size=None, num_workers=2)
    assert [len(batch[columns.ID]) for batch in loader] == [8, 8, 8, 8]
    assert dropped.num_batches(num_workers=2) == 4


def test_batched_tuple_output_through_dataloader_without_collate(latent_shards):
    per_sample = list(ExpressionShards(latent_shards, shuffle=False))
    shards = ExpressionShards(latent_shards, shuffle=False, batch_size=12,
                              transform=ResizeImage(16))
    batches = list(DataLoader(shards, batch_size=None, num_workers=1))
    assert [tuple(images.shape) for images, _ in batches] == [(12, 3, 16, 16)] * 2 + [
        (8, 3, 16, 16)]
    expressions = torch.cat([expressions for _, expressions in batches])
    torch.testing.assert_close(expressions, torch.stack([row[1] for row in per_sample]),
                               rtol=0, atol=0)  # labels are copied, never recomputed
    # The transform got the whole batch; resizing a batch equals resizing each image.
    first = torch.stack([ResizeImage(16)(row[0]) for row in per_sample[:12]])
    torch.testing.assert_close(batches[0][0], first, rtol=0, atol=1e-6)  # float rounding only


def test_batched_images_of_different_sizes_raise(tmp_path):
    write_shard(tmp_path / "a.parquet", latent_rows(3, seed=0, image_size=16, prefix="a")
                + latent_rows(3, seed=1, image_size=24, prefix="b"))
    shards = ExpressionShards(tmp_path, shuffle=False, batch_size=6)
    with pytest.raises(ValueError, match=r"differ in size.*\(16, 16, 3\).*\(24, 24, 3\)|"
                                         r"differ in size.*\(24, 24, 3\).*\(16, 16, 3\)"):
        next(iter(shards))
    with pytest.raises(ValueError, match="batch_size"):
        ExpressionShards(tmp_path, batch_size=0)
