import pytest
import torch

from genlab.core.device import autocast, check_precision, grad_scaler, pick_device
from genlab.core.errors import GenlabError


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GenlabError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(GenlabError, match="unknown device"):
        pick_device("tpu9")


def test_autocast_runs_matmuls_in_the_asked_precision():
    cpu = torch.device("cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (a @ b).dtype == torch.float32


def test_precision_checks():
    cpu = torch.device("cpu")
    check_precision("bf16", cpu)
    with pytest.raises(GenlabError, match="fp16 training needs a CUDA GPU"):
        check_precision("fp16", cpu)
    with pytest.raises(GenlabError, match="unknown precision"):
        check_precision("fp8", cpu)
    assert grad_scaler(cpu, "bf16") is None and grad_scaler(cpu, "fp32") is None
