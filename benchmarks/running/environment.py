"""What every number is recorded with: library versions, hardware, git revision."""

from __future__ import annotations

import platform
import re
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

TRACKED_PACKAGES = (
    "torch",
    "torchvision",
    "anomalib",
    "open_clip_torch",
    "timm",
    "transformers",
    "faiss-cpu",
    "numpy",
    "scikit-learn",
    "pandas",
    "pillow",
    "smartphone-ad-benchmarks",
)


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out.update(git_revision())
    return out


def cpuinfo_field(name: str) -> str | None:
    """The first `name : value` entry of /proc/cpuinfo (Linux), None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def torch_blas(build_config: str, parallel_info: str) -> str:
    """torch's CPU BLAS from its build settings, with the MKL version when MKL is it.

    Matmul-heavy latencies depend on it: on a 2-core AMD EPYC (Zen 4), torch's MKL sgemm ran
    ViT-B batch-1 shapes (197 x 768 x 2304 .. 3072) at 139-161 GFLOP/s where numpy's OpenBLAS ran
    them at 157-186 and oneDNN with packed weights at 187-211, so CPU latencies compare only within
    one vendor and GEMM library (the cell's `gemm_path` says which one its backbones used).
    """
    match = re.search(r"BLAS_INFO=([^,\s]+)", build_config)
    blas = match.group(1) if match else "unknown"
    mkl = re.search(r"Math Kernel Library Version ([0-9][0-9.]*)", parallel_info)
    return f"{blas} {mkl.group(1)}" if blas == "mkl" and mkl else blas


def hardware(device: str = "cpu") -> dict[str, object]:
    import os

    info: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_vendor": cpuinfo_field("vendor_id") or "unknown",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_blas": torch_blas(torch.__config__.show(), torch.__config__.parallel_info()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "device": device,
        "gpu": None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def git_revision() -> dict[str, str]:
    """The suite's git SHA and whether the work tree had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": "unknown", "git_dirty": "unknown"}
    return {"git_sha": sha, "git_dirty": "true" if dirty else "false"}
