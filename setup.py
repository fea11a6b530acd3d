"""Install facestyle: ``pip install -e .`` (add ``-c constraints.txt`` on CPU-only machines).

Set ``FACESTYLE_BUILD_KERNELS=1`` to compile the CUDA kernels now (needs a CUDA build of torch and
nvcc); otherwise they are built on first CUDA use and cached (see README, "Hardware").
"""
import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ext_modules, cmdclass = [], {}
if os.environ.get("FACESTYLE_BUILD_KERNELS") == "1":
    from kernels.aot import cuda_extensions, export_cuda_home

    export_cuda_home()  # CUDA_HOME unset: the toolkit nvcc really runs from (torch guesses at import)
    from torch.utils.cpp_extension import BuildExtension  # noqa: E402

    ext_modules, cmdclass = cuda_extensions(), {"build_ext": BuildExtension}

setup(
    name="facestyle",
    version="0.1.0",
    description="Stylize faces in real footage with the StyleGANEX model family",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "pipeline.*", "kernels", "kernels.*"]),
    py_modules=["cli"],
    package_data={"kernels": ["csrc/*.cu", "csrc/*.h", "csrc/*.cpp"]},
    install_requires=[
        "torch>=2.1",
        "av>=12",
        "opencv-python>=4.8",
        "numpy>=1.24",
        "tqdm>=4.60",
        "kornia>=0.7",
        "ffmpeg-python>=0.2",
        "pillow>=9.1",
        "dlib-bin>=19.24",
        "face_recognition_models>=0.3",
        "watchdog>=3",
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "sse-starlette>=2",
    ],
    # ray: --ray, long clips and folders on a Ray cluster (Ray Core only, no ray[data]).
    extras_require={"test": ["pytest>=7", "ruff>=0.5", "ray>=2.60", "schemathesis>=4.0"], "ray": ["ray>=2.60"]},
    entry_points={"console_scripts": ["facestyle=cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
