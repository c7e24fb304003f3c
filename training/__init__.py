"""The PyTorch side of expnet-data: reading label shards, a reference ExpNet trainer, and
the paper's emotion-recognition evaluation.

    from training import ExpressionShards
    shards = ExpressionShards("out/", drop_last=True)    # (image, 29-D sigma label) stream

Depends on ``schemas`` and torch only; commands: ``training.train``, ``training.predict``,
``training.evaluate`` (each has ``main(argv) -> int``).
"""

from training.dataset import ExpressionShards, ExpressionShardsMap

__all__ = ["ExpressionShards", "ExpressionShardsMap"]
