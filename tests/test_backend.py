"""Jobs assert the accelerator they were asked for instead of silently running on the CPU."""
import os

import pytest

from impls.common.backend import BackendMismatch, require_jax_platform, require_torch_platform


def test_jax_gpu_requested_on_a_cpu_host_fails_loudly():
    with pytest.raises(BackendMismatch, match="must run on platform=gpu, but JAX's backend is 'cpu'"):
        require_jax_platform("gpu")


def test_jax_auto_and_cpu_accept_the_cpu():
    assert require_jax_platform("auto") == "cpu"
    assert require_jax_platform("cpu") == "cpu"


def test_unknown_platform_is_rejected():
    with pytest.raises(BackendMismatch, match="not one of auto, cpu, gpu, tpu"):
        require_jax_platform("cuda")


def test_torch_platforms():
    pytest.importorskip("torch")
    import torch

    assert require_torch_platform("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BackendMismatch, match="run on cpu or gpu only"):
        require_torch_platform("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendMismatch, match="torch.cuda.is_available"):
            require_torch_platform("gpu")


def test_jax_jobs_allocate_gpu_memory_as_needed_so_jobs_can_share_a_card(monkeypatch):
    """Snakemake runs several train jobs on one workstation GPU, and the arena runs JAX and PyTorch
    in one process: JAX must not reserve 75 % of the card at start, unless the user says so."""
    from impls.common.backend import configure_framework

    for framework, expected in (("jax", "false"), ("jax+torch", "false"), ("torch", None)):
        monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
        configure_framework(framework, None, None)
        assert os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") == expected, framework
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    configure_framework("jax", None, None)
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
