"""backbonezoo.layers: shared blocks used by several families."""

from __future__ import annotations

import pytest
import timm
import torch

import backbonezoo  # noqa: F401
from backbonezoo.kernels._backend import ENV_VAR
from backbonezoo.layers.attention import dense_attention


@pytest.mark.parametrize('with_mask', [False, True])
def test_dense_attention_reference_path_is_the_materialising_math(monkeypatch, with_mask: bool):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 5)
    mask = torch.randn(1, 3, 10, 10) if with_mask else None
    logits = q @ k.transpose(-2, -1) / 8**0.5 + (mask if with_mask else 0)
    expected = logits.softmax(-1) @ v
    monkeypatch.delenv(ENV_VAR, raising=False)
    fast = dense_attention(q, k, v, attn_mask=mask)
    monkeypatch.setenv(ENV_VAR, 'reference')
    plain = dense_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['sret_tiny', 'patnet_t0'])
def test_models_agree_on_both_attention_paths(monkeypatch, name: str):
    # The benchmark's reference rows run these models with BACKBONEZOO_KERNEL_BACKEND=reference.
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    x = torch.randn(1, 3, 128, 128)
    monkeypatch.delenv(ENV_VAR, raising=False)
    with torch.no_grad():
        torch.manual_seed(1)  # SReT draws its official shuffles from the global generator
        fast = model(x)
        monkeypatch.setenv(ENV_VAR, 'reference')
        torch.manual_seed(1)
        plain = model(x)
    torch.testing.assert_close(plain, fast, rtol=1e-4, atol=1e-5)
