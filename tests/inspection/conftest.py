"""Inspection is checked on a real generated dataset: the pipeline tests' collection and run."""

from tests.pipelines.conftest import folder_run, photo_folder  # noqa: F401 (fixtures)
