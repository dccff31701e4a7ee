"""UPR-Net: a clean, fast, tested PyTorch implementation (CVPR 2023 frame interpolation)."""
from setuptools import find_packages, setup

with open("requirements.txt") as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setup(
    name="upr-net",
    version="0.1.0",
    description="UPR-Net video frame interpolation: model, training, benchmarks, demo and video tool",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["core", "core.*", "tools", "tools.*", "demo", "demo.*"]),
    package_data={"core.ops": ["csrc/*.cpp"]},   # the CPU splatting kernel, compiled on first use
    install_requires=requirements,
    extras_require={
        "cuda": ["cupy-cuda12x"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.17"],   # tools.export_onnx and ONNX Runtime inference
        "test": ["pytest>=7", "onnx>=1.16", "onnxruntime>=1.17"],
        "vapoursynth": ["vapoursynth>=81; python_version >= '3.12'"],   # core.vapoursynth (wheel: core + vspipe)
        "app": [],   # tools.app needs only the standard library (its browser test: .ci/setup_browser.sh)
    },
    entry_points={
        "console_scripts": [
            "upr-demo=demo.interp_imgs:main",
            "upr-interp-video=tools.interp_video:main",
            "upr-train=tools.train:main",
            "upr-benchmark-vimeo90k=tools.benchmark_vimeo90k:main",
            "upr-benchmark-ucf101=tools.benchmark_ucf101:main",
            "upr-benchmark-snufilm=tools.benchmark_snufilm:main",
            "upr-benchmark-4k1000fps=tools.benchmark_8x_4k1000fps:main",
            "upr-runtime=tools.runtime:main",
        ]
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Image Processing"],
)
