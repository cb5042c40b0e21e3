"""speechbrain-sqe: self-supervised speech quality estimation and enhancement for SpeechBrain."""

from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

setup(
    name="speechbrain-sqe",
    version="0.1.0",
    description="Self-supervised speech quality estimation (VQScore) and enhancement for SpeechBrain",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["speechbrain_sqe", "speechbrain_sqe.*"]),
    package_data={"speechbrain_sqe": ["pretrained/*/*", "dataio/*.txt"]},
    include_package_data=True,
    install_requires=[
        "speechbrain>=1.1,<1.2",
        "torch",
        "torchaudio",
        "hyperpyyaml",
        "pesq",
        "pystoi",
        "sentencepiece",
        "soundfile",
        "numpy",
        "scipy",
        "tqdm",
        "matplotlib",
        "webdataset",  # training from tar shards (dataio/shards.py)
    ],
    extras_require={
        "eval": ["speechmos", "onnxruntime", "librosa", "requests", "distillmos>=0.9.1"],
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "ruff"],
        # Peer enhancers of benchmarks/bench_enhance_peers.py.
        "bench": ["noisereduce>=3.0", "pyroomacoustics>=0.7", "pyrnnoise>=0.4.5,<0.5"],
    },
    entry_points={"console_scripts": ["sqe=speechbrain_sqe.cli:run"]},
)
