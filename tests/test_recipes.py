"""The papers' training recipes: every classification config resolves (mmengine Config, bases merged) to the values
of its family's recipe table (``backbonezoo/zoo/<family>.py``, ``Family.recipes``), and the optimizer it builds puts
every parameter in the weight-decay / lr group the official optimizer does."""

from __future__ import annotations

import math
import re

import pytest
import timm
import torch
from helpers import REPO
from mmengine.config import Config

import backbonezoo  # noqa: F401  (registers the zoo's models with timm)
from backbonezoo.zoo import Recipe, families
from backbonezoo.zoo.recipe import RECIPE_FIELDS, recipe_rows

CONFIGS = REPO / 'configs' / 'classification'
CONFIG_FILES = sorted(CONFIGS.glob('*/*.py'))


def _key(path) -> str:
    assert path.name.endswith('_in1k.py'), f'{path}: classification configs are named <recipe key>_in1k.py'
    return path.name[: -len('_in1k.py')]


def _recipe(path) -> Recipe:
    family = families()[path.parent.name]
    return family.recipes[_key(path)]


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def _plain(value):
    """mmengine ConfigDict / tuple-as-list values as plain Python for comparisons."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@pytest.fixture(scope='module', params=CONFIG_FILES, ids=lambda p: f'{p.parent.name}/{p.stem}')
def resolved(request):
    return request.param, Config.fromfile(str(request.param)), _recipe(request.param)


def test_every_classification_config_has_a_recipe_and_every_recipe_a_config():
    assert CONFIG_FILES, f'no classification configs under {CONFIGS}'
    on_disk = {(p.parent.name, _key(p)) for p in CONFIG_FILES}
    in_tables = {(f.name, key) for f in families().values() for key in f.recipes}
    assert on_disk - in_tables == set(), 'configs without a recipe table entry'
    assert in_tables - on_disk == set(), 'recipe table entries without a config'


@pytest.mark.parametrize('family', sorted({p.parent.name for p in CONFIG_FILES}))
def test_recipe_tables_are_consistent(family):
    """Sources name known fields; a linear lr rule gives the table's lr at its total batch; a variant's key names it."""
    fam = families()[family]
    for key, recipe in fam.recipes.items():
        assert key in fam.model_names or key.rsplit('_', 1)[0] in fam.model_names, key
        assert recipe.source, key
        assert set(recipe.sources) <= set(RECIPE_FIELDS), key
        assert all(isinstance(s, str) and s for s in recipe.sources.values()), key
        rule = re.match(r'(?:linear|--auto-lr): (?:BASE_LR )?([0-9.e-]+),? .*x total batch / (\d+)', recipe.lr_rule)
        if rule:
            base, per = float(rule.group(1)), int(rule.group(2))
            assert math.isclose(recipe.lr, base * recipe.batch_size / per), (key, recipe.lr_rule, recipe.lr)
        else:
            assert 'given for the total batch' in recipe.lr_rule, (key, recipe.lr_rule)
        for field in ('drop_path',):
            if getattr(recipe, field) is None:
                assert recipe.notes, f'{key}: {field} is not published: say so in notes'
        assert recipe.warmup_lr < recipe.lr and recipe.min_lr < recipe.lr, key
        assert len(recipe_rows(recipe)) > 30


def test_model(resolved):
    path, cfg, recipe = resolved
    model = cfg.model
    family = families()[path.parent.name]
    assert cfg.model_name == model.model_name and model.model_name in family.model_names
    assert _key(path).startswith(model.model_name)
    assert _close(model.model_kwargs.get('drop_path_rate'), recipe.drop_path), 'drop path'
    for key, value in recipe.model_extra.items():
        assert model.get(key) == value, key
    assert _close(model.get('label_smoothing', 0.0), recipe.label_smoothing), 'label smoothing'
    assert not (model.get('data_preprocessor') or {}).get('mixup'), 'mixup belongs on the model, not the preprocessor'
    if recipe.mixup_active:
        mixup = model.mixup
        expected = dict(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            cutmix_minmax=None,
            prob=recipe.mixup_prob,
            switch_prob=recipe.switch_prob,
            mode=recipe.mixup_mode,
            label_smoothing=recipe.label_smoothing,
        )
        for key, value in expected.items():
            assert _close(mixup.get(key), value), f'mixup.{key}: {mixup.get(key)} != {value}'
    else:
        assert not model.get('mixup'), 'the recipe has no mixup / cutmix'
    assert _plain(model.get('distill')) == _plain(recipe.distill), 'distillation'
    if recipe.finetune_from:
        weights = next(v.weights for v in family.variants if v.name == recipe.finetune_from)
        assert model.get('checkpoint') == weights, 'fine-tuning starts from the official weights'
    else:
        assert not model.get('checkpoint')


def test_data(resolved):
    _, cfg, recipe = resolved
    loader = cfg.train_dataloader
    assert loader.batch_size == recipe.batch_per_gpu, 'batch per GPU'
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=recipe.batch_size), 'auto_scale_lr'
    sampler = loader.sampler
    if recipe.repeated_aug > 1:
        assert sampler.type == 'RepeatAugSampler' and sampler.num_repeats == recipe.repeated_aug
    else:
        assert sampler.type != 'RepeatAugSampler'
    pipeline = loader.dataset.pipeline
    assert [t.type for t in pipeline] == ['LoadImagePIL', 'TimmClsTrain'], 'the timm training pipeline'
    train = pipeline[1]
    expected = dict(
        input_size=recipe.input_size,
        scale=recipe.scale,
        ratio=recipe.ratio,
        hflip=recipe.hflip,
        vflip=0.0,
        color_jitter=recipe.color_jitter,
        auto_augment=recipe.rand_augment,
        interpolation=recipe.train_interpolation,
        re_prob=recipe.reprob,
        re_mode=recipe.remode,
        re_count=recipe.recount,
    )
    for key, value in expected.items():
        assert _close(_plain(train.get(key)), _plain(value)), f'TimmClsTrain.{key}: {train.get(key)} != {value}'


def test_evaluation(resolved):
    _, cfg, recipe = resolved
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        pipeline = loader.dataset.pipeline
        assert [t.type for t in pipeline] == ['LoadImagePIL', 'TimmClsEval']
        evaluation = pipeline[1]
        assert evaluation.model_name == cfg.model_name
        pretrained = timm.models.get_pretrained_cfg(cfg.model_name)
        input_size = evaluation.get('input_size') or pretrained.input_size[-1]
        crop_pct = evaluation.get('crop_pct') or pretrained.crop_pct
        interpolation = evaluation.get('interpolation') or pretrained.interpolation
        crop_mode = evaluation.get('crop_mode') or pretrained.crop_mode or 'center'
        assert (input_size, interpolation, crop_mode) == (
            recipe.input_size,
            recipe.eval_interpolation,
            recipe.eval_crop_mode,
        )
        assert _close(crop_pct, recipe.crop_pct), f'crop_pct {crop_pct} != {recipe.crop_pct}'


def test_optimizer_and_schedule(resolved):
    _, cfg, recipe = resolved
    wrapper = cfg.optim_wrapper
    optimizer = wrapper.optimizer
    assert optimizer.type.lower() == recipe.optimizer
    for key in ('lr', 'betas', 'eps', 'weight_decay'):
        assert _close(_plain(optimizer[key]), _plain(getattr(recipe, key))), key
    clip = wrapper.get('clip_grad')
    assert _close(clip.max_norm if clip else None, recipe.clip_grad), 'gradient clipping'
    if clip:
        assert clip.get('norm_type', 2) == 2
    paramwise = wrapper.get('paramwise_cfg') or {}
    constructor = wrapper.get('constructor', 'DefaultOptimWrapperConstructor')
    if recipe.wd_exclude == 'none':
        assert constructor == 'DefaultOptimWrapperConstructor' and not paramwise, 'every parameter decays'
    else:  # timm's rule, no_weight_decay() included, and the official exceptions as custom_keys
        assert constructor == 'ZooOptimConstructor', "timm's weight-decay rule needs ZooOptimConstructor"
        for key in ('norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult'):
            assert paramwise.get(key, 0.0) == 0.0, key
    assert _plain(paramwise.get('custom_keys') or {}) == _plain(recipe.param_overrides), 'official exceptions'
    assert paramwise.get('layer_decay') == recipe.layer_decay, 'layer-wise lr decay'

    warmup, cosine = cfg.param_scheduler
    iter_based = recipe.lr_step == 'iter'
    assert warmup.type == 'LinearLR' and (warmup.begin, warmup.end) == (0, recipe.warmup_epochs)
    assert _close(warmup.start_factor * optimizer.lr, recipe.warmup_lr), 'warm-up start lr'
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (recipe.warmup_epochs, recipe.epochs)
    assert _close(cosine.eta_min, recipe.min_lr), 'min lr'
    for scheduler in (warmup, cosine):
        assert scheduler.by_epoch and bool(scheduler.get('convert_to_iter_based')) == iter_based, 'lr step'
    assert cfg.train_cfg.max_epochs == recipe.total_epochs, 'epochs (+ cool-down at the min lr)'
    assert (cfg.get('sync_bn') == 'torch') == recipe.sync_bn, 'SyncBatchNorm'
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    if recipe.ema_decay is None:
        assert not ema, 'no EMA'
    else:
        assert len(ema) == 1 and _close(1 - ema[0].momentum, recipe.ema_decay), 'EMA decay'


# Build the real model and the optimizer the config asks for: the first config of each family, and every config
# whose recipe has official exceptions (parameter overrides).
_OPTIM_CASES = sorted(
    set(
        {
            p.parent.name: p
            for p in sorted(CONFIG_FILES, key=lambda p: -len(p.name))
            if _key(p) in families()[p.parent.name].model_names
        }.values()
    )
    | {p for p in CONFIG_FILES if _recipe(p).param_overrides}
)


def _expected_group(name: str, param: torch.Tensor, recipe: Recipe, skip: set[str]) -> tuple[float, float]:
    """(weight decay, lr multiplier) the official optimizer gives a parameter of the timm model."""
    wd, lr_mult = recipe.weight_decay, 1.0
    if recipe.wd_exclude == 'timm' and (param.ndim <= 1 or name.endswith('.bias') or name in skip):
        wd = 0.0
    for key in sorted(sorted(recipe.param_overrides), key=len, reverse=True):  # mmengine: the longest key wins
        override = recipe.param_overrides[key]
        if key in name:
            wd = recipe.weight_decay * override.get('decay_mult', 1.0)
            lr_mult = override.get('lr_mult', 1.0)
            break
    return wd, lr_mult


@pytest.mark.parametrize('path', _OPTIM_CASES, ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_optimizer_groups_follow_the_official_optimizer(path):
    """Every parameter's weight decay and lr, as built by mmengine from the config, are the official optimizer's."""
    pytest.importorskip('backbonezoo.mm')
    from mmengine.optim import build_optim_wrapper

    import backbonezoo.mm  # noqa: F401  (registers ZooOptimConstructor)

    cfg, recipe = Config.fromfile(str(path)), _recipe(path)

    class Holder(torch.nn.Module):  # the parameters as the classifier holds them (under ``model.``)
        def __init__(self, model):
            super().__init__()
            self.model = model

    kwargs = dict(cfg.model.model_kwargs)
    with torch.device('meta'):
        net = timm.create_model(cfg.model_name, num_classes=10, **kwargs)
    wrapper = build_optim_wrapper(Holder(net), cfg.optim_wrapper)
    found = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            found[id(p)] = (group['weight_decay'], group['lr'])
    skip = set(net.no_weight_decay()) if hasattr(net, 'no_weight_decay') else set()
    names = [name for name, _ in net.named_parameters()]
    unmatched = [key for key in recipe.param_overrides if not any(key in name for name in names)]
    assert not unmatched, f'official exceptions that name no parameter of {cfg.model_name}: {unmatched}'
    lr = cfg.optim_wrapper.optimizer.lr
    wrong = []
    decayed = 0
    for name, param in net.named_parameters():
        wd, lr_mult = _expected_group(name, param, recipe, skip)
        got = found.get(id(param))
        decayed += wd > 0
        if got is None or not (_close(got[0], wd) and _close(got[1], lr * lr_mult)):
            wrong.append(f'{name} {tuple(param.shape)}: got (wd, lr) {got}, expected {(wd, lr * lr_mult)}')
    assert not wrong, f'{len(wrong)} parameters in the wrong group:\n' + '\n'.join(wrong[:20])
    assert decayed, 'no parameter decays'


def test_model_cards_show_every_recipe_with_its_sources():
    import sys

    sys.path.insert(0, str(REPO / 'tools'))
    import model_cards

    for family in families().values():
        if not family.recipes:
            continue
        section = '\n'.join(model_cards.render_recipes(family))
        assert section in (REPO / 'model_cards' / f'{family.name}.md').read_text(), f'{family.name}: card out of date'
        header = next(line for line in section.splitlines() if line.startswith('| |'))
        assert header.count('`') == 2 * len(family.recipes)
        for key, recipe in family.recipes.items():
            assert f'`{key}`' in header and recipe.source in section
            assert all(source in section for source in recipe.sources.values()), key
            for label, _, _ in recipe_rows(recipe):
                assert f'| {label} |' in section, label


class _Block(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(dim, dim, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(dim)
        self.ls = torch.nn.Parameter(torch.ones(dim))  # a 1-D layer scale, as timm models name them
        self.gamma = torch.nn.Parameter(torch.ones(1, dim, 1, 1))  # a 4-D one: decays under both rules


class _Toy(torch.nn.Module):
    """Every kind of parameter the two rules treat: convolution weights and biases, norms, 1-D and 4-D scales."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, dim, 3)
        self.blocks = torch.nn.Sequential(*(_Block(dim) for _ in range(3)))
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, 5)

    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r'^stem', blocks=[(r'^blocks\.(\d+)', None), (r'^norm', (99999,))])


class _Holder(torch.nn.Module):  # the classifier holds the timm model under ``model.``
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model


# Overlapping keys (the longest wins), lr and decay multipliers alone and together, keys on a bias, a 1-D scale and a
# norm (which then decay), a key given as the full name with the holder's prefix.
_CUSTOM_KEYS = {
    'head': dict(lr_mult=10.0),
    'blocks.1': dict(lr_mult=0.1, decay_mult=0.5),
    'blocks.1.conv.bias': dict(decay_mult=1.0),
    '.ls': dict(decay_mult=1.0),
    'stem.bias': dict(lr_mult=2.0),
    'blocks.2.norm': dict(decay_mult=0.25, lr_mult=3.0),
    'model.blocks.0.gamma': dict(decay_mult=0.0),
}


def _groups_by_name(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, tuple[float, float]]:
    found = {id(p): (g['weight_decay'], g['lr']) for g in optimizer.param_groups for p in g['params']}
    return {name: found.get(id(p)) for name, p in module.named_parameters()}


def test_zoo_optim_constructor_custom_keys_follow_mmengine():
    """custom_keys in ZooOptimConstructor give every parameter the (weight decay, lr) mmengine's default constructor
    gives it with the same keys and timm's rule spelled out (norms, biases, 1-D parameters at decay 0)."""
    pytest.importorskip('backbonezoo.mm')
    from mmengine.optim import build_optim_wrapper

    import backbonezoo.mm  # noqa: F401  (registers ZooOptimConstructor)

    optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0.05)
    holder = _Holder(_Toy())
    zoo = build_optim_wrapper(
        holder,
        dict(optimizer=optimizer, constructor='ZooOptimConstructor', paramwise_cfg=dict(custom_keys=_CUSTOM_KEYS)),
    )
    reference = build_optim_wrapper(
        holder,
        dict(
            optimizer=optimizer,
            paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0, custom_keys=_CUSTOM_KEYS),
        ),
    )
    got, expected = _groups_by_name(holder, zoo.optimizer), _groups_by_name(holder, reference.optimizer)
    assert None not in got.values(), 'a parameter is missing from the optimizer'
    wrong = {name: (got[name], expected[name]) for name in expected if not _close(got[name], expected[name])}
    assert not wrong, f'(wd, lr) differ from mmengine custom_keys: {wrong}'
    # the keys did something: every override is visible
    assert got['model.head.weight'][1] == pytest.approx(1e-2) and got['model.stem.bias'] == pytest.approx((0.05, 2e-3))
    assert got['model.blocks.0.ls'][0] == 0.05 and got['model.blocks.0.gamma'][0] == 0.0
    assert got['model.blocks.1.conv.bias'] == pytest.approx((0.05, 1e-3))  # the longer key wins over 'blocks.1'
    assert got['model.blocks.1.conv.weight'] == pytest.approx((0.025, 1e-4))


def test_zoo_optim_constructor_custom_keys_with_no_weight_decay_and_layer_decay():
    """A key overrides the model's no_weight_decay() exclusion too, and its lr_mult multiplies the layer-decay scale."""
    pytest.importorskip('backbonezoo.mm')
    from mmengine.optim import build_optim_wrapper

    import backbonezoo.mm  # noqa: F401

    toy = _Toy()
    toy.no_weight_decay = lambda: {'blocks.0.gamma', 'blocks.2.gamma'}
    holder = _Holder(toy)
    optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0.05)
    keys = {'blocks.2.gamma': dict(decay_mult=1.0), 'blocks.1.conv': dict(lr_mult=0.5, decay_mult=2.0)}
    for layer_decay in (None, 0.5):
        paramwise = dict(layer_decay=layer_decay) if layer_decay else {}
        plain = _groups_by_name(
            holder,
            build_optim_wrapper(
                holder, dict(optimizer=optimizer, constructor='ZooOptimConstructor', paramwise_cfg=paramwise)
            ).optimizer,
        )
        custom = _groups_by_name(
            holder,
            build_optim_wrapper(
                holder,
                dict(
                    optimizer=optimizer,
                    constructor='ZooOptimConstructor',
                    paramwise_cfg=dict(paramwise, custom_keys=keys),
                ),
            ).optimizer,
        )
        assert plain['model.blocks.0.gamma'][0] == 0.0 and plain['model.blocks.2.gamma'][0] == 0.0
        for name, (wd, lr) in plain.items():
            if 'blocks.2.gamma' in name:
                expected = (0.05, lr)
            elif 'blocks.1.conv' in name:
                expected = (0.1, lr * 0.5)
            else:
                expected = (wd, lr)
            assert _close(custom[name], expected), (layer_decay, name, custom[name], expected)
        lrs = {lr for _, lr in plain.values()}
        assert (len(lrs) > 1) == bool(layer_decay), 'layer decay gives the layers different lrs'
