"""Checkpoint trust boundary and strict loading (issue 20).

* No loading route runs a pickle's code unless that one file is trusted: a payload pickle (its ``__reduce__``
  writes a marker file) inside the work dir (any depth) and outside it is refused with ``UnsafeCheckpointError``
  by every route: train ``load_from``, ``--resume FILE``, ``--resume`` (auto) via ``last_checkpoint``, test.py,
  ``init_cfg`` Pretrained, ``ZooClassifier(checkpoint=)``, ``convert_checkpoint`` (eval_imagenet's route),
  ``tools/convert_checkpoint.py``, mmengine's loader, timm's ``pretrained_cfg_overlay``.
* A Runner's own checkpoints still resume (auto), and a file outside the rule resumes with ``--trust-checkpoint``.
* Loading for evaluation / fine-tuning is strict with the converter in front: a checkpoint that does not fit
  raises ``CheckpointMismatchError`` (classification and detection models); timm layouts and our safetensors fit;
  ``--load-partial`` is the explicit way to a partial load.
* Unreadable files give named errors; ``--resume`` of weights only is a named error; safetensors are sniffed;
  ``pretrained=True`` with the hub offline fails at once with a named error (our names; timm's own names through
  ``ensure_pretrained_available``).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import backbonezoo
import backbonezoo.checkpoint as ckpt
from backbonezoo.checkpoint import CheckpointMismatchError, CheckpointReadError, UnsafeCheckpointError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / 'configs' / 'demo'
MODEL = 'efficientvit_m0'


def _tool(name: str):
    sys.path.insert(0, str(REPO / 'tools'))
    spec = importlib.util.spec_from_file_location(f'bz_safety_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").write("payload ran")',)


def _write_payload(path: Path, marker: Path, state_dict: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = state_dict if state_dict is not None else {'w': torch.ones(2)}
    torch.save({'meta': {'epoch': 1, 'iter': 1}, 'state_dict': state_dict, 'message_hub': _Payload(marker)}, path)
    return path


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch):
    """Every test starts as a fresh process: no file trusted yet."""
    monkeypatch.setattr(ckpt, '_trusted_files', set())


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / 'PAYLOAD_RAN'
    yield path
    assert not path.exists(), 'the payload pickle ran'


@pytest.fixture(scope='module')
def m0_state_dict() -> dict:
    torch.manual_seed(0)
    return timm.create_model(MODEL, num_classes=6, img_size=64).state_dict()


LOCATIONS = ['outside', 'work_dir_nested', 'work_dir_top']


def _payload_at(location: str, tmp_path: Path, marker: Path, state_dict: dict | None = None) -> Path:
    """A payload pickle outside the work dir, deep inside it (named like a Runner checkpoint and listed in
    ``last_checkpoint``: still not the Runner's own), or directly in it under another name."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir(exist_ok=True)
    if location == 'outside':
        return _write_payload(tmp_path / 'downloads' / 'evil.pth', marker, state_dict)
    if location == 'work_dir_nested':
        path = _write_payload(work_dir / 'any' / 'sub' / 'folder' / 'epoch_1.pth', marker, state_dict)
        (work_dir / 'last_checkpoint').write_text(str(path))
        return path
    return _write_payload(work_dir / 'evil.pth', marker, state_dict)


# ---- fault 1: library routes -------------------------------------------------------------------------------------
def _route_load_state_dict_file(path, tmp_path):
    ckpt.load_state_dict_file(path)


def _route_convert_checkpoint(path, tmp_path):  # eval_imagenet's and ZooClassifier(checkpoint=)'s reader
    backbonezoo.convert_checkpoint(path, MODEL)


def _route_mmengine_loader(path, tmp_path):
    pytest.importorskip('mmengine')
    from mmengine.runner import CheckpointLoader

    import backbonezoo.mm  # noqa: F401  (registers the loader)

    CheckpointLoader.load_checkpoint(str(path))


def _route_mmengine_url_loader(path, tmp_path):  # what http(s)://, open-mmlab://, torchvision:// load_from use
    pytest.importorskip('mmengine')
    import mmengine.runner.checkpoint as mm_checkpoint

    import backbonezoo.mm  # noqa: F401  (makes the downloads weights_only)

    mm_checkpoint.load_url(path.as_uri(), model_dir=str(tmp_path / 'hub'))  # file:// stands for a download


def _route_init_cfg_pretrained(path, tmp_path):
    pytest.importorskip('mmengine')
    from backbonezoo.mm import ZooTimmBackbone

    ZooTimmBackbone(MODEL, init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def _route_zoo_classifier_checkpoint(path, tmp_path):
    pytest.importorskip('mmengine')
    from backbonezoo.mm import ZooClassifier

    ZooClassifier(MODEL, num_classes=6, checkpoint=str(path), model_kwargs=dict(img_size=64))


def _route_timm_pretrained_cfg_overlay(path, tmp_path):
    try:
        timm.create_model(MODEL, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    except RuntimeError as err:  # timm reads with weights_only=True itself and refuses with its own message
        assert 'weights_only' in str(err), err
        return
    raise AssertionError('timm loaded a payload pickle')


LIBRARY_ROUTES = {name[len('_route_') :]: fn for name, fn in globals().items() if name.startswith('_route_')}


@pytest.mark.parametrize('location', LOCATIONS)
@pytest.mark.parametrize('route', sorted(LIBRARY_ROUTES))
def test_payload_pickle_never_runs_through_library_routes(tmp_path, marker, route, location):
    path = _payload_at(location, tmp_path, marker)
    if route == 'timm_pretrained_cfg_overlay':
        LIBRARY_ROUTES[route](path, tmp_path)
        return
    with pytest.raises(UnsafeCheckpointError, match='--trust-checkpoint') as info:
        LIBRARY_ROUTES[route](path, tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('location', LOCATIONS)
def test_convert_tool_refuses_a_payload_pickle_in_one_line(tmp_path, marker, location, capsys):
    path = _payload_at(location, tmp_path, marker)
    assert _tool('convert_checkpoint').main([str(path), str(tmp_path / 'o.safetensors'), '--model', MODEL]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1 and '--trust-checkpoint' in err


def test_trust_is_per_file_never_per_folder(tmp_path, marker):
    path = _write_payload(tmp_path / 'mine' / 'epoch_3.pth', marker)
    with pytest.raises(IsADirectoryError):
        ckpt.trust_checkpoint(path.parent)
    pytest.importorskip('mmengine')
    from backbonezoo.mm import runtime

    with pytest.raises(IsADirectoryError):
        runtime.trust_checkpoint_dir(path.parent)
    sibling = _write_payload(path.parent / 'epoch_4.pth', marker)
    ckpt.trust_checkpoint(path)
    assert ckpt.is_trusted_checkpoint(path) and not ckpt.is_trusted_checkpoint(sibling)
    with pytest.raises(UnsafeCheckpointError):
        ckpt.load_state_dict_file(sibling)
    ckpt.load_state_dict_file(path)  # the trusted file is unpickled fully: its payload runs (that is what trust means)
    assert marker.exists()
    marker.unlink()


def test_run_checkpoint_rule_is_exact(tmp_path):
    pytest.importorskip('mmengine')
    from backbonezoo.mm.runtime import is_run_checkpoint

    work = tmp_path / 'work'
    (work / 'sub').mkdir(parents=True)
    for name in ('iter_4.pth', 'epoch_2.pth', 'best_acc_epoch_2.pth', 'evil.pth', 'sub/iter_4.pth'):
        torch.save({'w': torch.ones(1)}, work / name)
    outside = tmp_path / 'iter_9.pth'
    torch.save({'w': torch.ones(1)}, outside)
    (work / 'iter_9.pth').symlink_to(outside)

    def listed(name):
        (work / 'last_checkpoint').write_text(str(work / name))
        return is_run_checkpoint(work, work / name)

    assert listed('iter_4.pth') and listed('epoch_2.pth') and listed('best_acc_epoch_2.pth')
    assert not listed('evil.pth'), 'only Runner checkpoint names'
    assert not listed('sub/iter_4.pth'), 'only files directly in the work dir'
    assert not listed('iter_9.pth'), 'a link to a file elsewhere is that file'
    (work / 'last_checkpoint').write_text(str(work / 'iter_4.pth'))
    assert not is_run_checkpoint(work, work / 'epoch_2.pth'), 'only the file last_checkpoint lists'
    (work / 'last_checkpoint').unlink()
    assert not is_run_checkpoint(work, work / 'iter_4.pth')


# ---- fault 1: Runner routes (tools/train.py, tools/test.py) --------------------------------------------------------
@pytest.fixture(scope='module')
def demo_data(tmp_path_factory) -> Path:
    pytest.importorskip('mmengine')
    return _tool('make_demo_data').make_demo_data(tmp_path_factory.mktemp('demo') / 'data')


@pytest.fixture
def cls_config(demo_data, tmp_path, monkeypatch) -> Path:
    """The demo classification config, iteration-based and small: a checkpoint every iteration, no validation
    (tools/test.py uses its test loop)."""
    monkeypatch.setenv('BACKBONEZOO_DEMO_DATA', str(demo_data))
    config = tmp_path / 'cls_safety.py'
    config.write_text(
        f"""_base_ = ['{DEMO / 'efficientvit_m0_cls_demo.py'}']
train_dataloader = dict(batch_size=8)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=100)]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=1000)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1, save_best=None, max_keep_ckpts=-1))
log_processor = dict(by_epoch=False)
val_dataloader, val_cfg, val_evaluator = None, None, None
"""
    )
    return config


def _train(config: Path, work_dir: Path, *extra: str):
    return _tool('train').main([str(config), '--work-dir', str(work_dir), *extra])


RUNNER_ROUTES = ['train_load_from', 'train_resume_file', 'train_resume_auto', 'test_checkpoint']


@pytest.mark.mm
@pytest.mark.parametrize('location', ['outside', 'work_dir_nested'])
@pytest.mark.parametrize('route', RUNNER_ROUTES)
def test_payload_pickle_never_runs_through_train_and_test_tools(cls_config, tmp_path, marker, route, location):
    path = _payload_at(location, tmp_path, marker)
    work_dir = tmp_path / 'work'
    with pytest.raises(UnsafeCheckpointError, match='--trust-checkpoint'):
        if route == 'train_load_from':
            _train(cls_config, work_dir, '--cfg-options', f'load_from={path}')
        elif route == 'train_resume_file':
            _train(cls_config, work_dir, '--resume', str(path))
        elif route == 'train_resume_auto':
            (work_dir / 'last_checkpoint').write_text(str(path))
            _train(cls_config, work_dir, '--resume')
        else:
            _tool('test').main([str(cls_config), str(path), '--work-dir', str(work_dir)])


@pytest.mark.mm
def test_runs_own_checkpoints_resume_and_others_need_trust_checkpoint(cls_config, tmp_path, monkeypatch):
    work_dir = tmp_path / 'work'
    _train(cls_config, work_dir)
    assert (work_dir / 'iter_2.pth').is_file()
    monkeypatch.setattr(ckpt, '_trusted_files', set())  # a new process: only the last_checkpoint rule trusts
    runner = _train(cls_config, work_dir, '--resume', '--cfg-options', 'train_cfg.max_iters=3')
    assert runner.iter == 3

    elsewhere = tmp_path / 'copied' / 'iter_3.pth'
    elsewhere.parent.mkdir()
    shutil.copy(work_dir / 'iter_3.pth', elsewhere)
    monkeypatch.setattr(ckpt, '_trusted_files', set())
    options = ['--cfg-options', 'train_cfg.max_iters=4']
    with pytest.raises(UnsafeCheckpointError, match='--trust-checkpoint'):
        _train(cls_config, tmp_path / 'new', '--resume', str(elsewhere), *options)
    runner = _train(
        cls_config, tmp_path / 'new', '--resume', str(elsewhere), '--trust-checkpoint', str(elsewhere), *options
    )
    assert runner.iter == 4


# ---- fault 3: strict loading with the converter in front ------------------------------------------------------------
def _classifier():
    pytest.importorskip('mmengine')
    from backbonezoo.mm import ZooClassifier

    torch.manual_seed(1)
    return ZooClassifier(MODEL, num_classes=6, model_kwargs=dict(img_size=64))


def test_classifier_load_is_strict_with_the_converter_in_front(tmp_path, m0_state_dict):
    from backbonezoo.mm.runtime import fit_state_dict

    model = _classifier()
    expected = {f'model.{k}': v for k, v in m0_state_dict.items()}
    # timm's layout, an mmengine nest of ours, and the safetensors tools/convert_checkpoint.py writes all fit
    layouts = {
        'timm': m0_state_dict,
        'runner': {'meta': {}, 'state_dict': expected},
        'timm_train': {'state_dict': m0_state_dict, 'epoch': 3},
    }
    for name, checkpoint in layouts.items():
        fitted = fit_state_dict(model, checkpoint)
        assert fitted.keys() == expected.keys(), name
        assert all(torch.equal(fitted[k], v) for k, v in expected.items()), name
    src, dst = tmp_path / 'm0.pth', tmp_path / 'm0.safetensors'
    torch.save({'model': m0_state_dict}, src)
    assert _tool('convert_checkpoint').main([str(src), str(dst), '--model', MODEL, '--num-classes', '6',
                                            '--model-kwargs', 'img_size=64']) == 0  # fmt: skip
    fitted = fit_state_dict(model, ckpt.load_state_dict_file(dst))
    assert all(torch.equal(fitted[k], v) for k, v in expected.items())

    other = timm.create_model('shvit_s1', num_classes=6).state_dict()
    with pytest.raises(CheckpointMismatchError, match='missing keys') as info:
        fit_state_dict(model, other)
    assert 'load_partial' in str(info.value)
    no_head = {k: v for k, v in m0_state_dict.items() if not k.startswith('head.')}
    with pytest.raises(CheckpointMismatchError, match='model.head.linear.weight'):
        fit_state_dict(model, no_head)
    partial = fit_state_dict(model, no_head, partial=True)
    assert partial.keys() == {f'model.{k}' for k in no_head}
    with pytest.raises(CheckpointMismatchError, match='no key fits'):
        fit_state_dict(model, {'foo.weight': torch.ones(3)}, partial=True)


@pytest.mark.mm
def test_dense_load_from_is_strict_backbone_only_needs_partial(m0_state_dict):
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from backbonezoo.mm.runtime import fit_state_dict

    cfg = Config.fromfile(str(DEMO / 'efficientvit_m0_retinanet_demo.py'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MODELS.build(cfg.model)
    own = detector.state_dict()
    assert fit_state_dict(detector, {'state_dict': own, 'meta': {}}).keys() == own.keys()

    backbone = detector.backbone
    full = timm.create_model(backbone.model_name, **backbone._create_kwargs).state_dict()
    backbone_only = {k: v for k, v in full.items() if not k.startswith('head.')}
    with pytest.raises(CheckpointMismatchError, match='bbox_head') as info:
        fit_state_dict(detector, backbone_only)
    assert 'init_cfg' in str(info.value)
    partial = fit_state_dict(detector, backbone_only, partial=True)
    assert partial and all(k.startswith('backbone.') for k in partial)
    for key, value in partial.items():
        assert torch.equal(value, backbone_only[key[len('backbone.model.') :]])

    # a full detector checkpoint whose backbone is in timm's layout: converted, then strict
    timm_layout = {k: v for k, v in own.items() if not k.startswith('backbone.')}
    timm_layout.update({f'backbone.{k}': v for k, v in backbone_only.items()})
    assert fit_state_dict(detector, timm_layout).keys() == own.keys()
    one_short = dict(own)
    dropped = next(k for k in own if k.startswith('neck.'))
    del one_short[dropped]
    with pytest.raises(CheckpointMismatchError, match=dropped.replace('.', r'\.')):
        fit_state_dict(detector, one_short)


@pytest.mark.mm
def test_test_tool_refuses_a_checkpoint_that_does_not_fit(cls_config, tmp_path, m0_state_dict):
    out = tmp_path / 'metrics.json'
    other = tmp_path / 'shvit.pth'
    torch.save({'model': timm.create_model('shvit_s1', num_classes=6).state_dict()}, other)
    with pytest.raises(CheckpointMismatchError, match='missing keys'):
        _tool('test').main([str(cls_config), str(other), '--work-dir', str(tmp_path / 't'), '--out', str(out)])
    assert not out.exists(), 'no metrics for random weights'
    with pytest.raises(CheckpointMismatchError):
        _train(cls_config, tmp_path / 'ft', '--cfg-options', f'load_from={other}')

    # timm's layout and the same weights in our Runner layout evaluate identically
    timm_file, runner_file = tmp_path / 'timm.pth', tmp_path / 'runner.pth'
    torch.save(m0_state_dict, timm_file)
    torch.save({'meta': {}, 'state_dict': {f'model.{k}': v for k, v in m0_state_dict.items()}}, runner_file)
    test = _tool('test').main
    first = test([str(cls_config), str(timm_file), '--work-dir', str(tmp_path / 't1')])
    second = test([str(cls_config), str(runner_file), '--work-dir', str(tmp_path / 't2')])
    assert first == second


# ---- fault 7: named errors, sniffing, offline hub -----------------------------------------------------------------
def _unreadable(kind: str, path: Path) -> Path:
    if kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'text':
        path.write_text('not a checkpoint\n')
    elif kind == 'truncated':
        torch.save({'w': torch.ones(1000)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # named .safetensors, holds a torch.save file
        torch.save({'w': torch.ones(2)}, path)
    return path


@pytest.mark.parametrize('kind', ['empty', 'text', 'truncated', 'torch_named_safetensors'])
def test_unreadable_files_give_a_named_error_and_one_line_from_the_tool(tmp_path, kind, capsys):
    name = 'x.safetensors' if kind == 'torch_named_safetensors' else 'x.pth'
    path = _unreadable(kind, tmp_path / name)
    with pytest.raises(CheckpointReadError, match=str(path)):
        ckpt.load_state_dict_file(path)
    code = _tool('convert_checkpoint').main([str(path), str(tmp_path / 'out.safetensors'), '--model', MODEL])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('error: ') and err.count('\n') == 1 and 'Traceback' not in err


def test_safetensors_are_recognised_by_content(tmp_path, m0_state_dict):
    path = tmp_path / 'weights.pth'  # safetensors under a .pth name
    save_file({k: v.contiguous() for k, v in m0_state_dict.items()}, str(path))
    assert ckpt.is_safetensors_file(path)
    loaded = ckpt.load_state_dict_file(path)
    assert loaded.keys() == m0_state_dict.keys()
    converted = backbonezoo.convert_checkpoint(path, MODEL, model=timm.create_model(MODEL, num_classes=6, img_size=64))
    assert all(torch.equal(converted[k], v) for k, v in m0_state_dict.items())
    torch.save(m0_state_dict, tmp_path / 'plain.pth')
    assert not ckpt.is_safetensors_file(tmp_path / 'plain.pth')


@pytest.mark.mm
def test_resume_of_weights_only_file_is_a_named_error(cls_config, tmp_path, m0_state_dict):
    from backbonezoo.mm.runtime import WeightsOnlyCheckpointError

    weights = tmp_path / 'weights.pth'
    torch.save({'state_dict': {f'model.{k}': v for k, v in m0_state_dict.items()}}, weights)
    with pytest.raises(WeightsOnlyCheckpointError, match='load_from'):
        _train(cls_config, tmp_path / 'work', '--resume', str(weights))


@pytest.mark.parametrize('model_name', [MODEL, 'shvit_s1', 'halonet26t'])  # every timm-owned family with weights
def test_pretrained_without_reachable_weights_fails_at_once(model_name, monkeypatch, tmp_path):
    """No real network: HF_HUB_OFFLINE with an empty cache, then a machine whose connections all fail.

    The names are timm's, and backbonezoo leaves timm's create path as it is (issue 22): the fast, named check is
    ``backbonezoo.checkpoint.ensure_pretrained_available``; timm's own route fails too, with its own error.
    """
    import socket

    import huggingface_hub.constants

    def no_network(*args, **kwargs):
        raise OSError('no network in this test')

    monkeypatch.setattr(socket, 'create_connection', no_network)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path / 'hf'))
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ckpt.PretrainedUnavailableError, match='HF_HUB_OFFLINE') as info:
        ckpt.ensure_pretrained_available(model_name)
    assert 'convert_checkpoint' in str(info.value)
    with pytest.raises(Exception):  # noqa: B017  (timm's own error type, whichever huggingface_hub raises)
        timm.create_model(model_name, pretrained=True)

    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.delenv('HF_HUB_OFFLINE')
    for proxy in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(proxy, raising=False)
    with pytest.raises(ckpt.PretrainedUnavailableError, match='cannot be reached'):
        ckpt.ensure_pretrained_available(model_name)
