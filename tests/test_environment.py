"""What every number is recorded with: the hardware record names the CPU and torch's BLAS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from benchmarks.running import environment

MKL_BUILD = "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl, USE_MKL=ON,"
MKL_PARALLEL = ("ATen/Parallel:\n\tat::get_num_threads() : 2\n"
                "Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64\n")


def test_torch_blas_names_mkl_with_its_version() -> None:
    assert environment.torch_blas(MKL_BUILD, MKL_PARALLEL) == "mkl 2024.2"


def test_torch_blas_names_other_backends_and_unknown_builds() -> None:
    assert environment.torch_blas("Build settings: BLAS_INFO=open, USE_MKL=OFF", "") == "open"
    assert environment.torch_blas("Build settings: BLAS_INFO=accelerate", MKL_PARALLEL) == "accelerate"
    assert environment.torch_blas("no build settings here", "") == "unknown"


def test_hardware_record_carries_cpu_vendor_capability_and_blas() -> None:
    info = environment.hardware("cpu")
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    # this suite's pinned torch wheel is an MKL build: the record must say so, with MKL's version
    assert torch.backends.mkl.is_available()
    assert re.fullmatch(r"mkl \d{4}\.\d+", info["torch_blas"]), info["torch_blas"]
    assert isinstance(info["cpu_vendor"], str) and info["cpu_vendor"] != ""
    assert info["device"] == "cpu" and info["gpu"] is None


def test_cpuinfo_field_reads_the_named_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    real_path = environment.Path
    monkeypatch.setattr(environment, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert environment.cpuinfo_field("vendor_id") == "AuthenticAMD"
    assert environment.cpu_model() == "AMD EPYC 7B13"
    assert environment.cpuinfo_field("flags") is None
