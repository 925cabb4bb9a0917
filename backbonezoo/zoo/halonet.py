"""HaloNet (blocked local self-attention with halos): the paper's H0-H7 and timm's HaloNet hybrids."""

from . import Family, FamilyExtra, Variant, Weights

_TIMM_RELEASE = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-attn-weights'
_PAPER_TABLE = (
    'paper params / top-1 as transcribed by keras_cv_attention_models (unverified against the PDF); '
    'no weights exist (the authors released none)'
)


def _paper(name: str, paper_name: str, params_m: float, top1: float, img_size: int, notes: str = '') -> Variant:
    return Variant(
        name,
        paper_name,
        int(round(params_m * 1e6)),
        None,
        top1,
        img_size,
        params_rtol=0.02,
        notes='; '.join(filter(None, (_PAPER_TABLE, notes))),
    )


def _timm(name: str, paper_name: str, params: int, gmacs: float, top1: float, tag: str, file: str) -> Variant:
    # file: the weight file name of timm's GitHub release (the same weights as the hub tag)
    return Variant(
        name,
        paper_name,
        params,
        gmacs,
        top1,
        256,
        pretrained=(Weights(tag, url=f'{_TIMM_RELEASE}/{file}', hf_hub_id=f'timm/{name}.{tag}'),),
        notes='timm hybrid, not a paper variant: params measured, GMACs fvcore at 256, top-1 from timm results',
    )


FAMILY = Family(
    name='halonet',
    title='HaloNet',
    paper='Scaling Local Self-Attention for Parameter Efficient Visual Backbones (CVPR 2021)',
    arxiv='2103.12731',
    code='https://github.com/huggingface/pytorch-image-models/blob/aa4b5850c1543fa488abf260f18390eda46cf85d/timm/layers/halo_attn.py',
    code_license='Apache-2.0 (timm; the authors released no code)',
    weights_license='Apache-2.0 (timm-trained weights); the paper variants have no weights',
    module='backbonezoo.backbones.halonet_ext',
    timm_owned=True,
    # timm's HaloAttn needs every attention input to be a multiple of its block (8 at stride 32): 256 multiples.
    # Our paper variants pad to block multiples and accept any size; timm's models do not.
    size_divisor=256,
    min_size=256,
    fixed_size=False,
    variants=(
        _paper('halonet_h0', 'HaloNet-H0', 5.5, 77.9, 256),
        Variant(
            'halonet_h1',
            'HaloNet-H1',
            8_100_056,
            None,
            79.9,
            256,
            notes='timm-owned, no weights (timm registers halonet_h1.untrained); built count 8.100M equals the paper '
            '8.1M; top-1 is the paper figure',
        ),
        _paper('halonet_h2', 'HaloNet-H2', 9.4, 80.4, 256),
        _paper('halonet_h3', 'HaloNet-H3', 11.8, 81.9, 320),
        _paper('halonet_h4', 'HaloNet-H4', 19.1, 83.3, 384, 'top-1 85.5 with ImageNet-21k pre-training'),
        _paper('halonet_h5', 'HaloNet-H5', 30.7, 84.0, 448),
        _paper('halonet_h6', 'HaloNet-H6', 43.4, 84.4, 512),
        _paper('halonet_h7', 'HaloNet-H7', 67.4, 84.9, 600, '600 is not a multiple of 32 x block 10: runs padded'),
        _timm(
            'halonet26t', 'HaloNet-26t (timm)', 12_480_288, 3.194, 79.13, 'a1h_in1k', 'halonet26t_a1h_256-3083328c.pth'
        ),
        _timm(
            'sehalonet33ts',
            'SE-HaloNet-33ts (timm)',
            13_691_712,
            3.552,
            80.98,
            'ra2_in1k',
            'sehalonet33ts_256-87e053f9.pth',
        ),
        _timm(
            'halonet50ts',
            'HaloNet-50ts (timm)',
            22_733_280,
            5.301,
            81.64,
            'a1h_in1k',
            'halonet50ts_a1h2_256-f3a3daee.pth',
        ),
        _timm(
            'eca_halonext26ts',
            'ECA-HaloNeXt-26ts (timm)',
            10_756_885,
            2.441,
            79.52,
            'c1_in1k',
            'eca_halonext26ts_c_256-06906299.pth',
        ),
    ),
    citation="""@inproceedings{vaswani2021scaling,
  title     = {Scaling Local Self-Attention for Parameter Efficient Visual Backbones},
  author    = {Vaswani, Ashish and Ramachandran, Prajit and Srinivas, Aravind and Parmar, Niki and
               Hechtman, Blake and Shlens, Jonathon},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {12894--12904},
  year      = {2021}
}""",
    summary=(
        'A ResNet-like backbone whose bottleneck 3x3 convs are replaced by halo attention: each b x b query '
        'block attends to the (b + 2h) x (b + 2h) window around it, zero-padded at the image border, with a '
        'query-dependent 2-D relative-position term. No official code exists; timm is the reference. backbonezoo '
        "adds the paper variants H0, H2-H7 on timm's ByoaNet machinery, a kernel-backed halo attention "
        '(to_kernel_backed) that also pads inputs to block multiples, and the mmdet/mmseg backbone.'
    ),
    extra=FamilyExtra(
        unsupported=(
            'haloregnetz_b (block 7: needs 224 multiples), halo2botnet50ts_256 and lamhalobotnet50ts_256 (fixed 256) '
            'are timm HaloNets outside this family listing because the family-wide size rule cannot express their '
            'constraints; to_kernel_backed still converts their halo attention'
        ),
        params_note='paper variants: within 2 % of the paper (params_rtol); timm models: exact',
        timm_module='timm.models.byoanet',
    ),
)
