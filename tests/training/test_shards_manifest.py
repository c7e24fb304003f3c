"""A folder with a manifest.json is read as the shards the manifest lists."""

import json
import shutil

from tests.training.conftest import write_latent_shards
from training import ExpressionShards


def test_folder_reads_the_shards_its_manifest_lists(tmp_path):
    folder = tmp_path / "out"
    paths = write_latent_shards(folder, [4, 3], seed=5, image_size=16)
    # A shard an unfinished incremental run has already renamed into place.
    shutil.copy(paths[1], folder / "part-r001-00000-of-00001.parquet")
    listed = {"shards": [{"name": path.name, "rows": rows}
                         for path, rows in zip(paths, [4, 3], strict=True)]}
    (folder / "manifest.json").write_text(json.dumps(listed))
    assert sum(1 for _ in ExpressionShards(folder, shuffle=False)) == 7
    (folder / "manifest.json").unlink()
    # Without a manifest every shard in the folder is read, the unlisted one included.
    assert sum(1 for _ in ExpressionShards(folder, shuffle=False)) == 10
