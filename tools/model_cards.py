#!/usr/bin/env python
"""Write (or check) the model cards ``model_cards/<family>.md`` from the zoo metadata and the results store.

    python tools/model_cards.py                 # measure what is missing, write every card
    python tools/model_cards.py --measure       # re-measure params / GMACs of every registered variant
    python tools/model_cards.py --check         # fail if a committed card is stale (runs in `make test`)

A card is generated from two sources only, so ``--check`` can rebuild it cheaply: the family's metadata
(``backbonezoo.zoo``) and the results store ``benchmarks/results.csv`` (``backbonezoo.benchmarking``): its
``count`` rows (params and GMACs counted by ``backbonezoo.flops``, written by this tool: counting ~60 variants takes
minutes on 2 cores), its ``model`` rows (``tools/benchmark.py``: zoo, deploy, official and reference side by side)
and its ``kernel`` rows of whole backbones (``tools/bench_kernels.py``). ``--check`` also fails when a registered
variant has no count row, or when its parameter count (re-counted on the meta device) differs from the metadata
or the stored count. ``backbonezoo.hub`` reads the same count rows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import sys
import warnings
from pathlib import Path

from backbonezoo.benchmarking import (
    STORE,
    Row,
    comparison_table,
    count_row,
    counts,
    impl_rank,
    read_rows,
    update_store,
)

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / 'model_cards'
RESULTS = STORE
# Keys of Family.extra the card uses for something specific (the rest is listed under "Notes").
_EXTRA_USED = ('mm_type', 'mm_arch', 'notes', 'variants_ours', 'timm_conformance_known_failures', 'benchmark_peers')


# --------------------------------------------------------------------------------------------- measuring
def count_params(name: str) -> int:
    """Parameters of ``timm.create_model(name)``, built on the meta device where the model allows it."""
    import timm
    import torch

    try:
        with torch.device('meta'), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model = timm.create_model(name, pretrained=False)
    except Exception:  # some constructors compute tables from real tensors
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def measure_variant(name: str, img_size: tuple[int, int]) -> dict:
    import timm
    import torch

    from backbonezoo.flops import count_flops

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    result = count_flops(model, (3, *img_size))
    return {
        'params': sum(p.numel() for p in model.parameters()),
        'gmacs': round(result.gmacs, 4),
        'gmacs_bn_folded': round(result.gmacs_bn_folded, 4),
        'img_size': list(img_size),
        'uncounted_ops': result.unexpected_skips,
        'counter': result.method,
    }


def load_measurements(path: Path = RESULTS) -> dict:
    """``{variant: {'params', 'gmacs', 'gmacs_bn_folded', 'img_size', 'uncounted_ops', 'counter'}}`` from the store's
    count rows."""
    return counts(read_rows(path, kind='count'))


def save_measurement(path: Path, family, variant, measured: dict) -> None:
    """Record one variant's count in the store (replacing its earlier count row)."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    row = count_row(variant.name, family.name, measured, variant.top1, 'python tools/model_cards.py --measure', date)
    update_store(path, [row])


# --------------------------------------------------------------------------------------------- benchmark rows
def load_results(path: Path = RESULTS) -> list[Row]:
    """The store's model and kernel rows."""
    return [r for r in read_rows(path) if r.kind != 'count']


def _num(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec)


# --------------------------------------------------------------------------------------------- rendering
def _fmt_params(value: int | None) -> str:
    return '-' if value is None else f'{value / 1e6:.2f}M ({value:,})'


def _fmt(value, spec: str) -> str:
    return '-' if value is None else format(value, spec)


def _vs_paper(measured: float, paper: float | None) -> str:
    """A measured GMACs figure with its deviation from the paper's (expected within 3 %)."""
    if not paper:
        return f'{measured:.3f}'
    return f'{measured:.3f} ({100 * (measured - paper) / paper:+.1f} %)'


def _arch(family, name: str) -> str:
    archs = family.extra.get('mm_arch') or {}
    if name in archs:
        return archs[name]
    prefix = f'{family.name}_'
    return name[len(prefix) :] if name.startswith(prefix) else name


def _weights_line(weights) -> str:
    """One pretrained tag (backbonezoo.zoo.Weights): how it loads."""
    if weights.hf_hub_id:
        text = f'`pretrained=True` downloads it from the Hugging Face Hub (`{weights.hf_hub_id}`)'
    elif weights.url:
        text = f'`pretrained=True` downloads {weights.url}'
    else:
        text = (
            f'manual download from {weights.manual_download} (not a direct file link): fetch the file by hand, '
            'then `pretrained_cfg_overlay=dict(file=PATH)`'
        )
    if weights.official:
        text += f'; official file {weights.official}'
    return text + (f'. {weights.note}' if weights.note else '')


def render_card(family, registered: set[str], measurements: dict, results: list[Row]) -> str:
    """The Markdown card of one family (deterministic: same inputs, same text)."""
    from backbonezoo.flops import CONVENTION

    names = [v.name for v in family.variants if v.name in registered]
    first = names[0] if names else family.variants[0].name
    lines = [
        f'# {family.title}',
        '',
        f'<!-- Generated by tools/model_cards.py from backbonezoo/zoo/{family.name}.py and benchmarks/results.csv',
        '     (the results store). Do not edit by hand: edit the sources and re-run the tool. -->',
        '',
        family.summary or '(no summary in the family metadata)',
        '',
        f'- **Paper:** {family.paper}, [arXiv {family.arxiv}](https://arxiv.org/abs/{family.arxiv})',
        f'- **Official code:** {family.code}',
        f'- **License:** code {family.code_license}; weights {family.weights_license}. '
        'backbonezoo itself is Apache-2.0.',
    ]
    if family.timm_owned:
        lines.append(
            "- **In timm:** yes. The names below that timm registers are timm's own models (backbonezoo never "
            're-registers them); backbonezoo adds checkpoint conversion, the missing variants, OpenMMLab backbones '
            f'and kernels (`{family.module}`).'
        )
    else:
        lines.append(f'- **In timm:** no; `import backbonezoo` registers these models with timm (`{family.module}`).')
    size_rule = (
        f'only at its native size ({family.variants[0].img_size})'
        if family.fixed_size
        else f'at input sides that are multiples of {family.size_divisor} (min {family.min_size})'
    )
    lines += [f'- **Input sizes:** classification models run {size_rule}.', '']

    # families rebuilt without a paper table (TiC) define their own variants: no number is "paper-reported"
    ours = bool(family.extra.get('variants_ours'))
    declared = "ours, not the paper's" if ours else 'paper-reported'
    lines += [
        '## Variants',
        '',
        *(["Every configuration below is ours: the paper's variant tables were not available.", ''] if ours else []),
        f'| model | {"name" if ours else "paper name"} | input | params ({declared}) | params (measured) '
        f'| GMACs ({declared}) | GMACs (measured) | GMACs, BN folded (measured) | top-1 % ({declared}) |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for v in family.variants:
        m = measurements.get(v.name)
        name = f'`{v.name}`' if v.name in registered else f'`{v.name}` (not registered yet)'
        size = 'x'.join(map(str, v.input_hw))
        measured = ('-',) * 3
        if m:
            measured = (
                _fmt_params(m['params']),
                _vs_paper(m['gmacs'], v.gmacs),
                _vs_paper(m['gmacs_bn_folded'], v.gmacs),
            )
        lines.append(
            f'| {name} | {v.paper_name} | {size} | {_fmt_params(v.params)} | {measured[0]} | {_fmt(v.gmacs, ".3f")} '
            f'| {measured[1]} | {measured[2]} | {_fmt(v.top1, ".1f")} |'
        )
    lines += [
        '',
        (
            '"Ours" columns are backbonezoo\'s own configurations (no paper figures exist to compare with). '
            if ours
            else '"Paper-reported" columns are the authors\' figures as recorded in the family metadata (not '
            're-measured: top-1 in particular is not reproduced here). '
        )
        + 'Measured params: `sum(p.numel())` of '
        '`timm.create_model(name)`. Measured GMACs: `backbonezoo.flops.count_flops` (`torch.utils.flop_counter` with '
        "the zoo operators' registered formulas) at the listed input, "
        f'convention: {CONVENTION}. In brackets: the deviation from the paper\'s figure. "BN folded" leaves '
        'BatchNorm out, as in a deploy model with BN folded into '
        'the preceding conv (the form most papers count).',
    ]
    uncounted = {n: measurements[n]['uncounted_ops'] for n in names if measurements.get(n, {}).get('uncounted_ops')}
    if uncounted:
        lines += ['', 'Ops the counter had no formula for (their MACs are missing from the measured GMACs):', '']
        lines += [
            f'- `{n}`: {", ".join(f"`{op}` x{k}" for op, k in sorted(ops.items()))}' for n, ops in uncounted.items()
        ]
    variant_notes = [(v.name, v.notes) for v in family.variants if v.notes]
    if variant_notes:
        lines += ['', 'Variant notes:', '']
        lines += [f'- `{name}`: {note}' for name, note in variant_notes]

    lines += render_throughput(family, names, results)
    lines += render_dense_checkpoints(family)
    lines += render_recipes(family)

    lines += [
        '',
        '## Use from timm',
        '',
        '```python',
        'import timm',
        '',
        "import backbonezoo  # registers the zoo's models with timm",
        '',
        f"model = timm.create_model('{first}', pretrained=False).eval()",
        f"backbone = timm.create_model('{first}', features_only=True)  # list of NCHW feature maps",
        'print(backbone.feature_info.channels(), backbone.feature_info.reduction())',
        '```',
        '',
        '## Use from mmdet / mmseg',
        '',
    ]
    mm_type = family.extra.get('mm_type')
    if mm_type:
        lines += [
            '```python',
            "custom_imports = dict(imports=['backbonezoo.mm'], allow_failed_imports=False)",
            'model = dict(',
            '    backbone=dict(',
            f"        type='{mm_type}',",
            f"        arch='{_arch(family, first)}',",
            '        out_indices=(0, 1, 2),  # stages to return (NCHW maps)',
            '        frozen_stages=-1,',
            '        norm_eval=False,',
            '        with_cp=False,',
            "        init_cfg=dict(type='Pretrained', checkpoint='/path/to/official_or_timm_checkpoint.pth'),",
            '    ),',
            ')',
            '```',
            '',
            f"The `{mm_type}` backbone is registered in both mmdet's and mmseg's `MODELS`; `init_cfg` takes the "
            "official, timm or `backbone.`-prefixed OpenMMLab file and loads it strictly. The family's detection "
            f'and segmentation configs are in `configs/detection/{family.name}/` and '
            f'`configs/segmentation/{family.name}/`.',
        ]
    else:
        lines += [
            "`custom_imports = dict(imports=['backbonezoo.mm'])` registers the zoo's OpenMMLab backbones; "
            "this family's backbone type is not recorded in its metadata yet (`Family.extra['mm_type']`).",
        ]

    lines += ['', '## Load official checkpoints', '']
    weights = [(v.name, w) for v in family.variants for w in v.pretrained]
    if weights:
        lines += [f'- `{name}.{w.tag}`: {_weights_line(w)}' for name, w in weights]
        lines.append('')
    if family.timm_owned:  # timm's names keep timm's own loader: the authors' layout goes through our converter
        load = [
            f"state_dict = backbonezoo.convert_checkpoint('/path/to/file.pth', '{first}')  # authors' layout -> timm's",
            f"model = timm.create_model('{first}', pretrained=True, "
            'pretrained_cfg_overlay=dict(state_dict=state_dict))',
        ]
    else:
        load = [
            f"model = timm.create_model('{first}', pretrained=True, "
            "pretrained_cfg_overlay=dict(file='/path/to/file.pth'))",
            f"state_dict = backbonezoo.convert_checkpoint('/path/to/file.pth', '{first}')  # zoo (timm) layout",
        ]
    lines += [
        '```python',
        *load,
        '```',
        '',
        'or convert once to a verified safetensors file:',
        '',
        '```bash',
        f'python tools/convert_checkpoint.py /path/to/file.pth {first}.safetensors --model {first}',
        '```',
        '',
        'Official, timm and OpenMMLab (`backbone.`-prefixed) layouts are accepted; a file that does not fit fails '
        'with the missing / unexpected keys named.',
    ]

    if family.citation:
        lines += ['', '## Citation', '', '```bibtex', family.citation.strip(), '```']
    lines += render_conformance(family)
    notes = family.extra.get('notes') or []
    notes = [notes] if isinstance(notes, str) else list(notes)
    for key, value in family.extra.items():
        if key not in _EXTRA_USED:
            notes.append(f'**{key.replace("_", " ").capitalize()}**: {_render_value(value)}')
    if notes:
        lines += ['', '## Notes', '']
        lines += [f'- {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def render_throughput(family, names: list[str], results: list[Row]) -> list[str]:
    """Measured throughput from the store: the implementations side by side (zoo, deploy, official, reference), every
    model row in full, and the kernel benchmark's whole-backbone rows of the family."""
    lines = ['', '## Measured throughput', '']
    peers = family.extra.get('benchmark_peers') or {}
    if peers:
        pairs = ', '.join(f'`{name}` / `{peer}`' for name, peer in peers.items())
        lines += [f'Each variant is measured beside the timm model of the same tier, in the same run: {pairs}.', '']
    order = {n: i for i, n in enumerate(names)}
    rows = [r for r in results if r.kind == 'model' and r.model in order]
    if rows:
        lines += [
            "From `benchmarks/results.csv` (`tools/benchmark.py`; see `benchmarks/report.md` for the runs' commands "
            'and machine). img/s at batch B beside the latency of one image (batch-1 ms). Implementations: `zoo` '
            "(what backbonezoo runs), `deploy` (`backbonezoo.deploy.deploy` of it), `official` (the authors' code "
            "with our weights converted), and the reference: timm's model for timm-owned families, "
            '`BACKBONEZOO_KERNEL_BACKEND=reference` (the materialising math) for the others; `timm:<name>` rows are '
            'the timm model the family is measured against, at the same tier. Ratios compare rows of one run.',
        ]
        comparison = comparison_table(rows, code_names=True)
        if comparison:
            lines += ['', *comparison]
        lines += [
            '',
            '| model | impl | input | batch | threads | img/s | batch-1 ms | train img/s | peak MB | % of matmul peak '
            '| speedup | measured on |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|',
        ]
        rows.sort(key=lambda r: (order[r.model], r.device, r.img_size, r.settings(), impl_rank(r.impl), r.date))
        for r in rows:
            lines.append(
                f'| `{r.model}` | {r.impl}{r.settings()} | {r.img_size} | {r.batch_size} | {r.threads} '
                f'| {_num(r.infer_img_s, ".2f")} | {_num(r.latency_ms, ".1f")} | {_num(r.train_img_s, ".2f")} '
                f'| {_num(r.peak_mem_mb, ".0f")} | {_num(r.pct_peak, ".0f")} % | {_num(r.speedup, ".2f")}x '
                f'| {r.date}, {r.device} ({r.machine}) |'
            )
    else:
        pattern = ' '.join(names) if family.timm_owned else f"'{family.name}_*'"
        lines.append(
            f'Not benchmarked yet: run `python tools/benchmark.py --deploy --models {pattern}`, then this tool.'
        )
    kernels = [r for r in results if r.kind == 'kernel' and r.family == family.name]
    if kernels:
        lines += [
            '',
            'Whole backbones at the dense-task sizes (`tools/bench_kernels.py`, `benchmarks/kernels.md`; '
            '`features_only`, fp32): `fast` is the default kernel backend, `materialising` '
            "`BACKBONEZOO_KERNEL_BACKEND=reference` (the official code's top-k copies).",
            '',
            '| case | mode | batch | threads | implementation | median ms | peak MB | time vs materialising '
            '| memory vs materialising | measured on |',
            '|---|---|---|---|---|---|---|---|---|---|',
        ]
        base = {(r.model, r.backward, r.batch_size, r.threads): r for r in kernels if r.impl == 'materialising'}
        for r in sorted(kernels, key=lambda r: (r.backward, r.model, r.batch_size, r.threads, r.impl)):
            ref = base.get((r.model, r.backward, r.batch_size, r.threads))
            t = f'{r.latency_ms / ref.latency_ms:.2f}x' if ref else '-'
            m = f'{r.peak_mem_mb / ref.peak_mem_mb:.2f}x' if ref and ref.peak_mem_mb > 0 else '-'
            mode = 'forward + backward' if r.backward else 'forward'
            lines.append(
                f'| {r.model} | {mode} | {r.batch_size} | {r.threads} | {r.impl} | {_num(r.latency_ms, ".1f")} '
                f'| {_num(r.peak_mem_mb, ".0f")} | {t} | {m} | {r.date}, {r.device} ({r.machine}) |'
            )
    return lines


def render_dense_checkpoints(family) -> list[str]:
    """The authors' dense-task checkpoints (``Family.dense``, when the metadata has them) and the configs that
    rebuild them."""
    dense = getattr(family, 'dense', ()) or ()
    if not dense:
        return []
    lines = [
        '',
        '## Official dense checkpoints',
        '',
        "The authors' detection / segmentation checkpoints (`Family.dense`), the config of ours that rebuilds each "
        "setup, and the authors' published results (not re-measured here).",
        '',
        '| task | method | config | official file | published | source |',
        '|---|---|---|---|---|---|',
    ]
    for ckpt in dense:
        published = ', '.join(f'{metric} {value}' for metric, value in (ckpt.published or {}).items()) or '-'
        name = f'[`{ckpt.official_file}`]({ckpt.url})' if ckpt.url else f'`{ckpt.official_file}`'
        source = str(ckpt.source).replace('|', '/') or '-'
        lines.append(f'| {ckpt.task} | {ckpt.method} | `{ckpt.config}` | {name} | {published} | {source} |')
    return lines


def render_recipes(family) -> list[str]:
    """The training-recipe section: one column per classification config, then each value's source."""
    from backbonezoo.zoo.recipe import _ROWS, TIMM_COSINE, recipe_rows

    recipes = getattr(family, 'recipes', None) or {}
    if not recipes:
        return []
    keys = list(recipes)
    rows = {key: recipe_rows(recipes[key]) for key in keys}
    labels = [label for label, _, _ in rows[keys[0]]]
    lines = [
        '',
        '## Training recipe (ImageNet-1K)',
        '',
        'What produced the released checkpoints, value by value (`Family.recipes` in '
        f'`backbonezoo/zoo/{family.name}.py`). The configs `configs/classification/{family.name}/<column>_in1k.py` '
        'carry exactly these values '
        '(`tests/test_recipes.py`); lr, warm-up and min lr are those of the total batch, and `auto_scale_lr` '
        '(`tools/train.py --auto-scale-lr`) rescales them linearly for another batch. Where the paper and the official '
        'code disagree, the code that produced the checkpoints wins.',
        '',
        '| | ' + ' | '.join(f'`{k}`' for k in keys) + ' |',
        '|---|' + '---|' * len(keys),
    ]
    for i, label in enumerate(labels):
        values = [rows[k][i][1].replace('|', '/') for k in keys]
        if len(keys) > 1 and len(set(values)) == 1 and len(values[0]) > 30:
            values = [values[0]] + ['"'] * (len(keys) - 1)  # a long value shared by every column, written once
        lines.append(f'| {label} | ' + ' | '.join(values) + ' |')

    lines += ['', "Sources (a value without a line of its own comes from its column's main source):", '']
    mains: dict[str, list[str]] = {}
    for k in keys:
        mains.setdefault(recipes[k].source, []).append(k)
    for src, ks in mains.items():
        where = 'all' if len(ks) == len(keys) else ', '.join(f'`{k}`' for k in ks)
        lines.append(f'- main source ({where}): {src}')
    for name, label in _ROWS:
        by_source = {}
        for k in keys:
            if name in recipes[k].sources:
                by_source.setdefault(recipes[k].sources[name], []).append(k)
        for src, ks in by_source.items():
            where = '' if len(ks) == len(keys) else ' (' + ', '.join(f'`{k}`' for k in ks) + ')'
            lines.append(f'- {label}{where}: {src}')

    notes: dict[str, list[str]] = {}
    for k in keys:
        for note in recipes[k].notes:
            notes.setdefault(note, []).append(k)
        for note in recipes[k].not_reproduced:
            notes.setdefault(f'Not reproduced: {note}', []).append(k)
    general = []
    if any(r.schedule == TIMM_COSINE for r in recipes.values()):
        general.append(
            "The official scheduler is timm's cosine, counted from the first step with the warm-up overriding its "
            "start; mmengine's LinearLR + CosineAnnealingLR runs the cosine after the warm-up: up to 1.5 % (5 "
            'warm-up epochs) / 6.3 % (20) of the peak lr apart, mid-schedule.'
        )
    if any(r.rand_augment and r.color_jitter for r in recipes.values()):
        general.append(
            "timm's `create_transform` skips color jitter when RandAugment is on: the recorded color jitter is "
            'inactive there, in the official runs and here alike.'
        )
    if notes or general:
        lines += ['', 'Recipe notes:', '']
        for note, ks in notes.items():
            where = '' if len(ks) == len(keys) else ' (' + ', '.join(f'`{k}`' for k in ks) + ')'
            lines.append(f'- {note}{where}')
        lines += [f'- {note}' for note in general]
    return lines


def _render_value(value) -> str:
    if isinstance(value, dict):
        return '; '.join(f'`{k}`: {_render_value(v)}' for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ', '.join(_render_value(v) for v in value)
    return str(value)


def render_conformance(family) -> list[str]:
    """timm's own test suite on the family: passes everywhere, or which tests are declared as failing and why."""
    lines = ['', '## timm conformance', '']
    known = family.extra.get('timm_conformance_known_failures') or {}
    command = "`make timm-conformance` (timm's own `tests/test_models.py` from the installed timm's sdist)"
    if not known:
        return lines + [f'{command} passes on every variant, apart from the tests that download weights.']
    by_reason: dict[str, list[str]] = {}
    for test, reason in known.items():
        by_reason.setdefault(reason, []).append(test)
    lines += [f'{command} passes on every variant except these tests, declared in the family metadata:', '']
    lines += ['| timm test | why it does not pass yet |', '|---|---|']
    lines += [f'| {", ".join(f"`{t}`" for t in tests)} | {reason} |' for reason, tests in by_reason.items()]
    return lines


def render_index(families: dict, registered: set[str]) -> str:
    lines = [
        '# Model cards',
        '',
        '<!-- Generated by tools/model_cards.py. Do not edit by hand. -->',
        '',
        '| family | paper | variants registered | timm-owned |',
        '|---|---|---|---|',
    ]
    for name, family in families.items():
        count = sum(v.name in registered for v in family.variants)
        owned = 'yes' if family.timm_owned else 'no'
        lines.append(
            f'| [{family.title}]({name}.md) | [arXiv {family.arxiv}](https://arxiv.org/abs/{family.arxiv}) '
            f'| {count} / {len(family.variants)} | {owned} |'
        )
    return '\n'.join(lines) + '\n'


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--check', action='store_true', help='fail (exit 1) if a card is stale; writes nothing')
    parser.add_argument('--measure', action='store_true', help='re-measure every registered variant')
    parser.add_argument('--family', action='append', help='only this family (repeatable)')
    parser.add_argument('--out', type=Path, default=CARDS, help='cards folder (default model_cards/)')
    parser.add_argument(
        '--results', type=Path, default=RESULTS, help='the results store (default benchmarks/results.csv)'
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check and args.measure:
        print('error: --check writes nothing; run --measure without it', file=sys.stderr)
        return 2
    import timm
    import torch
    from tqdm import tqdm

    import backbonezoo

    torch.set_num_threads(min(2, torch.get_num_threads()))
    all_families = backbonezoo.families()
    selected = dict(all_families)
    if args.family:
        unknown = [f for f in args.family if f not in all_families]
        if unknown:
            print(f'error: --family {unknown} unknown; expected some of {sorted(all_families)}', file=sys.stderr)
            return 2
        selected = {k: v for k, v in all_families.items() if k in args.family}
    registered = set(timm.list_models())
    store = args.results
    measurements = load_measurements(store)
    results = load_results(store)
    problems: list[str] = []

    todo = [
        (family, v)
        for family in selected.values()
        for v in family.variants
        if v.name in registered and (args.measure or v.name not in measurements)
    ]
    if args.check:
        problems += [
            f'{store}: no measurement (count row) for registered variant {v.name!r} '
            f'(run: python tools/model_cards.py --family {family.name})'
            for family, v in todo
        ]
    elif todo:
        for family, v in tqdm(todo, desc='measuring params / GMACs', unit='model'):
            try:
                measurements[v.name] = measure_variant(v.name, v.input_hw)
            except Exception as err:
                problems.append(f'{v.name}: measurement failed ({type(err).__name__}: {err})')
                continue
            save_measurement(store, family, v, measurements[v.name])  # kept if a later one fails

    if args.check:  # parameter counts: metadata == model == stored measurement
        checks = [(f, v) for f in selected.values() for v in f.variants if v.name in registered]
        for family, v in tqdm(checks, desc='checking params', unit='model', disable=None):
            counted = count_params(v.name)
            stored = measurements.get(v.name, {}).get('params')
            if stored is not None and stored != counted:
                problems.append(f'{store}: {v.name} params {stored:,} stored, {counted:,} counted now')
            if v.params is not None:
                tolerance = v.params_rtol * v.params
                if abs(counted - v.params) > tolerance:
                    problems.append(
                        f'backbonezoo/zoo/{family.name}.py: {v.name} has {counted:,} params, metadata says '
                        f'{v.params:,}' + (f' (rtol {v.params_rtol})' if v.params_rtol else '')
                    )

    expected = {f'{name}.md': render_card(f, registered, measurements, results) for name, f in selected.items()}
    if not args.family:
        expected['README.md'] = render_index(all_families, registered)
    for file_name, text in expected.items():
        path = args.out / file_name
        if args.check:
            if not path.is_file():
                problems.append(f'{path}: missing (run: python tools/model_cards.py)')
            elif path.read_text() != text:
                problems.append(f'{path}: out of date (run: python tools/model_cards.py)')
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if path.read_text() == text:
                    continue
            path.write_text(text)
            print(f'wrote {path}')

    if problems:
        print('\n'.join(f'error: {p}' for p in problems), file=sys.stderr)
        return 1
    if args.check:
        print(f'model cards up to date ({len(expected)} files)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
