"""The deployed (folded, reparameterised) models export to ONNX and run in onnxruntime with the deployed outputs.

Exporter settings as the contract test's (tests/test_contract.py): dynamo export, dynamic height / width unless the
family declares fixed sizes, ``optimize=False``. The smallest variant of every family takes minutes to export on two
cores (the export alone, not counting onnxruntime), so those run under ``make test-slow``; ``make test`` exports one
representative at a small width: PATNet with every fold ``deploy`` applies to it (conv + BN in the stem, the
downsamplings, the MLPs and the channel gate, BN before a 1x1 conv in PAT_sp, the partial mixer's BN folded into
some of the MLP's input columns), so a folded layer that gained a bias, or a module swapped for an identity, that
the exporter translates differently from eager would show.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
from helpers import assert_close_rel
from test_deploy import perturb_batchnorms, perturb_scales

import backbonezoo
from backbonezoo.deploy import deploy

SMALLEST = sorted(family.variants[0].name for family in backbonezoo.families().values())


def _sizes(name: str, height: int, width: int) -> list[tuple[int, int]]:
    family = backbonezoo.family_of(name)
    if family.fixed_size or not family.extra.get('onnx_dynamic_hw', True):
        return [(height, width)]
    step = family.size_divisor
    return [(height, width), (height + step, width)]  # the traced size and a non-square one


def export_and_compare(model: nn.Module, name: str, height: int, width: int, path) -> None:
    """Export ``model`` (deployed, eval) traced at ``height x width``; onnxruntime's logits equal the model's, fp32."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    sizes = _sizes(name, height, width)
    dynamic_shapes = None
    if len(sizes) > 1:
        dim = torch.export.Dim
        dynamic_shapes = {'x': {2: dim.AUTO, 3: dim.AUTO}}
    in_chans = getattr(model, 'in_chans', 3)
    torch.onnx.export(
        model,
        (torch.randn(1, in_chans, height, width),),
        str(path),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        optimize=False,  # onnxscript's optimisation: most of the export time, no change to the results
    )
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    for size in sizes:
        x = torch.randn(1, in_chans, *size)
        with torch.no_grad():
            expected = model(x)
        (actual,) = session.run(None, {input_name: x.numpy()})
        assert_close_rel(torch.from_numpy(actual), expected, rtol=1e-4, what=f'{name} deployed, onnxruntime at {size}')


def deployed(name: str, monkeypatch, **kwargs) -> nn.Module:
    """The deployed model in its documented deterministic mode, with non-trivial BatchNorm and LayerScale values."""
    for key, value in backbonezoo.family_of(name).extra.get('deterministic_env', {}).items():
        monkeypatch.setenv(key, value)
    torch.manual_seed(0)
    model = perturb_scales(perturb_batchnorms(timm.create_model(name, **kwargs))).eval()
    reports = []
    result = deploy(model, report=reports.append)
    assert reports[0].folded or reports[0].reparameterized, f'{name}: deploy changed nothing'
    return result


def test_deployed_patnet_round_trips_through_onnx(monkeypatch, tmp_path):
    """Small PATNet (PAT_ch, PAT_sf, PAT_sp and every BN fold); exported at 64 px, run at 64 and 96 x 64."""
    kwargs = dict(embed_dim=16, depths=(1, 1, 1, 1), spatial_gate=True, feature_dim=64, num_classes=10, num_heads=2)
    model = deployed('patnet_t0', monkeypatch, **kwargs)
    left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert left and all(n.endswith('mlp.4.norm') for n in left), left  # only PAT_sp's gate norms stay
    export_and_compare(model, 'patnet_t0', 64, 64, tmp_path / 'patnet_small.onnx')


@pytest.mark.slow
@pytest.mark.timeout(
    3600
)  # dynamic-shape export: OverLoCK-XT about 10 CPU-minutes, A2Mamba-N over 15 on a busy machine
@pytest.mark.parametrize('name', SMALLEST)
def test_deployed_smallest_variant_round_trips_through_onnx(name, monkeypatch, tmp_path):
    model = deployed(name, monkeypatch)
    _, height, width = timm.get_pretrained_cfg(name).input_size
    export_and_compare(model, name, height, width, tmp_path / f'{name}.onnx')
