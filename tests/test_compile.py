"""torch.compile(fullgraph=True) and torch.export of every family's smallest variant: no graph break, the kernels as
single operator nodes (``torch.ops.backbonezoo.*``), the same outputs and gradients as eager mode.

``backend='aot_eager'`` traces forward and backward exactly as Inductor would see them (a graph break raises under
``fullgraph=True``) without Inductor's code generation; one Inductor case is ``slow``.
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

import backbonezoo  # noqa: F401
from backbonezoo.zoo import families

# The smallest variant of each family, at the smallest input its contract tests use (multiples of the divisor).
_SMALLEST = {
    name: (min(family.variants, key=lambda v: v.params or float('inf')).name, family)
    for name, family in families().items()
}
# Families whose models call backbonezoo.kernels, with the operators their graphs must hold.
_KERNEL_OPS = {
    'a2mamba': {'local_probs', 'local_aggregate_probs', 'selective_scan_states'},
    'biformer': {'routing_attention'},
    'halonet': {'local_attention'},
    'litv2': {'local_attention'},
    'overlock': {'local_scores', 'local_aggregate'},
    'tic': {'local_attention'},
}
# Heavier at their smallest input (seconds of tracing on a quiet 2-core machine): the rest of make test-slow.
_SLOW = {'a2mamba', 'litv2', 'overlock', 'halonet'}


def _input_size(family) -> int:
    size = max(family.min_size, 64)
    return -(-size // family.size_divisor) * family.size_divisor


def _recording_backend(graphs: list):
    """aot_eager that keeps the forward / backward ATen graphs it is given."""

    def compiler(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    return aot_autograd(fw_compiler=compiler, bw_compiler=compiler)


def _kernel_ops(graphs) -> set[str]:
    found = set()
    for gm in graphs:
        for node in gm.graph.nodes:
            name = str(node.target)
            if node.op == 'call_function' and name.startswith('backbonezoo.'):
                found.add(name.split('.')[1])
    return found


# Graph-break-free but failing in compiled backward for reasons outside the kernels: family -> reason (none now).
_KNOWN_COMPILE_FAILURES: dict[str, str] = {}


def _params(family_name: str, known_failures: dict | None = None):
    marks = [pytest.mark.slow] if family_name in _SLOW else []
    if known_failures and family_name in known_failures:
        marks.append(pytest.mark.xfail(reason=known_failures[family_name], strict=False))
    return pytest.param(family_name, marks=marks, id=family_name)


@pytest.mark.parametrize('family_name', [_params(name, _KNOWN_COMPILE_FAILURES) for name in sorted(_SMALLEST)])
def test_compile_fullgraph_forward_backward(family_name):
    """fullgraph=True raises on any graph break; outputs and input gradients equal eager mode's."""
    name, family = _SMALLEST[family_name]
    torch.manual_seed(0)
    # train mode (no eval-time caches of parameters' views); dropout and drop path are off by default
    model = timm.create_model(name, num_classes=10).train()
    size = _input_size(family)
    x = torch.randn(2, 3, size, size)
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()

    torch.manual_seed(1)  # the same random draws (if any) in both runs
    expected = model(x_eager)
    expected.square().sum().backward()
    grads_eager = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    torch._dynamo.reset()
    graphs: list = []
    compiled = torch.compile(model, backend=_recording_backend(graphs), fullgraph=True)
    torch.manual_seed(1)
    actual = compiled(x_compiled)
    actual.square().sum().backward()

    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-3, atol=1e-4)
    for n, p in model.named_parameters():
        if n in grads_eager:
            torch.testing.assert_close(p.grad, grads_eager[n], rtol=1e-3, atol=1e-4, msg=n)
    assert len(graphs) == 2, 'one forward and one backward graph'
    ops = _kernel_ops(graphs)
    assert _KERNEL_OPS.get(family_name, set()) <= ops, f'kernel operators missing from the graph: {ops}'
    if family_name in _KERNEL_OPS:  # the backward graph holds the operators' registered backwards
        assert any(op.endswith('_backward') for op in _kernel_ops(graphs[1:])), _kernel_ops(graphs[1:])


@pytest.mark.parametrize('family_name', [_params(name) for name in sorted(_KERNEL_OPS)])
def test_export_keeps_the_kernel_operators(family_name):
    """torch.export of a kernel-backed model: one node per kernel call, and the program runs like the model."""
    if family_name == 'litv2':
        pytest.skip('LITv2 does not export yet (see test_litv2.py: a data-dependent branch of the model)')
    name, family = _SMALLEST[family_name]
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    size = _input_size(family)
    x = torch.randn(1, 3, size, size)
    program = torch.export.export(model, (x,))
    ops = _kernel_ops([program.graph_module])
    assert _KERNEL_OPS[family_name] <= ops, ops
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_inductor_compiles_a_kernel_model():
    """Inductor (code generation included) runs TiC, whose MSA-Conv is one local_attention operator per block."""
    name, family = _SMALLEST['tic']
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
