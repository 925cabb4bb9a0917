"""OverLoCK (Base-Net, Overview-Net, Focus-Net with ContMix dynamic kernels): backbonezoo's own models."""

from . import Family, Variant

_RELEASE = 'https://github.com/LMMMEng/OverLoCK/releases/download/v1'


def _weights(name: str) -> str:
    return (
        f'official: {_RELEASE}/overlock_{name}_in1k_224.pth (training form) and '
        f'{_RELEASE}/overlock_{name}_in1k_224_reparam.pth (reparameterised); nested under "state_dict" or bare'
    )


FAMILY = Family(
    name='overlock',
    title='OverLoCK',
    paper='OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels (CVPR 2025)',
    arxiv='2502.20087',
    code='https://github.com/LMMMEng/OverLoCK/tree/2c8ab3b29e3a11fb4a2510d98e4d9ed8b33cf091',
    code_license='Apache-2.0',
    weights_license='Apache-2.0',
    module='backbonezoo.backbones.overlock',
    # stride-2 convs round up and ContMix resizes maps smaller than its kernel: any side >= 32 works
    size_divisor=32,
    min_size=32,
    fixed_size=False,
    variants=(
        # params: the reparameterised (deploy) model without the training-only auxiliary head, which is what the
        # registered models build and what the paper's 16M / 33M / 56M / 95M round (checked against the official
        # code built with deploy=True, use_ds=False). The training form (deploy=False) has 16_969_600 /
        # 34_476_448 / 57_795_748 / 97_434_816; the aux head adds C3 * 1001 + 2 * C3.
        Variant('overlock_xt', 'OverLoCK-XT', 16_453_712, 2.6, 82.7, 224, weights=_weights('xt')),
        Variant('overlock_t', 'OverLoCK-T', 33_467_040, 5.5, 84.2, 224, weights=_weights('t')),
        Variant('overlock_s', 'OverLoCK-S', 56_156_452, 9.7, 84.8, 224, weights=_weights('s')),
        Variant('overlock_b', 'OverLoCK-B', 94_942_528, 16.7, 85.1, 224, weights=_weights('b')),
    ),
    citation="""@inproceedings{lou2025overlock,
  title     = {OverLoCK: An Overview-first-Look-Closely-next ConvNet with Context-Mixing Dynamic Kernels},
  author    = {Lou, Meng and Yu, Yizhou},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {128--138},
  year      = {2025}
}""",
    summary=(
        'A pure ConvNet in three sub-networks: a Base-Net of large-kernel (UniRepLKNet dilated-reparam) blocks at '
        'strides 4-16, an Overview-Net stage at stride 32 that produces a coarse context, and a Focus-Net whose '
        'ContMix blocks apply per-pixel dynamic depthwise kernels (a 5x5 and a stage-sized large kernel) generated '
        'from the affinity of each pixel with 7x7 pooled context regions, with NATTEN-style border-shifted windows '
        '(backbonezoo.kernels.local_aggregate). Runs without natten 0.17, which no longer builds for current torch.'
    ),
    extra=dict(
        onnx_export_slow=(
            'dynamo export of OverLoCK-XT (dynamic H / W) takes about 10 CPU-minutes (one thread) without the '
            'onnxscript graph optimisation the contract test skips (torch.export 172 s, decomposition + translation '
            '423 s; the optimisation adds 524 s), so it runs under make test-slow; make test exports the whole '
            'architecture at a small width with dynamic H / W (tests/test_overlock.py, about 2.5 CPU-minutes)'
        ),
        params_note=(
            'sum(p.numel()) of the reparameterised model without the auxiliary head (equal to the official '
            'overlock_*(deploy=True, use_ds=False)); the sheet / issue figures 16.79M / 33.98M / 56.67M / 95.52M '
            'include the auxiliary head'
        ),
        gmacs_note='paper FLOPs; fvcore on the official reparameterised model counts 4-6 % more (sheet)',
        top1_note='ImageNet-1k top-1 at 224 from the paper / official README',
        forms='deploy=True (default, reparameterised) or deploy=False (training form); model.reparameterize()',
    ),
)
