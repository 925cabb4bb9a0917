"""Converted weights as Hugging Face Hub folders (backbonezoo.hub, tools/convert_checkpoint.py --hub-dir / --push).

The round trip runs offline: a stand-in official checkpoint is converted to a hub folder, the folder is placed in a
local Hugging Face cache, and ``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` loads it in a subprocess
with ``HF_HUB_OFFLINE=1`` (huggingface_hub reads its cache and offline settings when imported) and an unreachable
endpoint. One timm-owned family (EfficientViT-M) and one of ours (PATNet).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from helpers import REPO, assert_close_rel, load_parity
from safetensors import safe_open

import backbonezoo
from backbonezoo import benchmarking, hub

sys.path.insert(0, str(REPO / 'tools'))
import convert_checkpoint as tool  # noqa: E402

pytestmark = pytest.mark.xdist_group('hub')  # one worker builds the shared hub folders once

ORG = 'bzoo-test'
REVISION = '0123456789abcdef0123456789abcdef01234567'
NAMES = ('efficientvit_m0', 'patnet_t0')


def official_checkpoint(name: str) -> dict:
    """A stand-in for the authors' released file of ``name`` (their layout, their nesting)."""
    model = timm.create_model(name)
    if name.startswith('efficientvit'):
        import test_efficientvit as family_test
        from helpers import regen

        manifest, fixed = regen().manifest_of(family_test.official_layout(model))
        return {'model': regen().regen_state_dict(manifest, fixed, seed=1), 'epoch': 299}
    import test_patnet as family_test

    return family_test.official_state_dict(model, seed=1)  # the official trainer saves the bare state dict


def card_metadata(folder: Path) -> tuple[dict, str]:
    text = (folder / 'README.md').read_text(encoding='utf-8')
    assert text.startswith('---\n'), 'the card must open with YAML front matter'
    front, body = text[4:].split('\n---\n', 1)
    return yaml.safe_load(front), body


def place_in_hf_cache(folder: Path, cache: Path, repo_id: str) -> None:
    """The layout huggingface_hub downloads into: models--ORG--NAME/{refs/main, snapshots/<rev>/<files>}."""
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    snapshot = repo / 'snapshots' / REVISION
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        shutil.copy2(file, snapshot / file.name)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(REVISION)


@pytest.fixture(scope='module')
def exported(tmp_path_factory) -> dict:
    """Per model: the official stand-in file and the hub folder the tool wrote from it."""
    root = tmp_path_factory.mktemp('hub')
    out = {}
    for name in NAMES:
        src, folder = root / f'{name}_official.pth', root / name
        torch.save(official_checkpoint(name), src)
        assert tool.main([str(src), '--model', name, '--hub-dir', str(folder)]) == 0
        out[name] = {'src': src, 'dir': folder, 'repo_id': f'{ORG}/{name}.in1k'}
    return out


_LOAD_SCRIPT = r"""
import sys, torch, timm
sys.path.insert(0, sys.argv[1])
import backbonezoo  # registers the zoo architectures
torch.manual_seed(0)
x = torch.randn(2, 3, 224, 224)
out = {}
for repo_id, src in zip(sys.argv[3::2], sys.argv[4::2]):
    hub_model = timm.create_model(f'hf-hub:{repo_id}', pretrained=True).eval()
    arch = repo_id.split('/')[1].split('.')[0]
    direct = timm.create_model(arch, pretrained=True,
                               pretrained_cfg_overlay=dict(state_dict=backbonezoo.convert_checkpoint(src, arch))).eval()
    with torch.no_grad():
        out[repo_id] = dict(
            hub=hub_model(x), direct=direct(x), state_dict=hub_model.state_dict(),
            cfg={k: v for k, v in hub_model.pretrained_cfg.items() if k not in ('label_names', 'label_descriptions')},
            direct_cfg=dict(direct.pretrained_cfg), labels=len(hub_model.pretrained_cfg.get('label_names') or ()),
        )
torch.save(out, sys.argv[2])
"""


@pytest.fixture(scope='module')
def hub_loaded(exported, tmp_path_factory) -> dict:
    """Everything ``timm.create_model('hf-hub:...')`` gave in an offline subprocess, next to the direct route."""
    root = tmp_path_factory.mktemp('hf_home')
    cache = root / 'hub'
    args = []
    for item in exported.values():
        place_in_hf_cache(item['dir'], cache, item['repo_id'])
        args += [item['repo_id'], str(item['src'])]
    env = {k: v for k, v in os.environ.items() if not k.startswith(('HF_', 'HUGGING'))}
    env.update(
        HF_HOME=str(root),
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE='1',
        HF_ENDPOINT='http://127.0.0.1:9',  # nothing listens there: any network access fails
        HF_HUB_DISABLE_TELEMETRY='1',
        OMP_NUM_THREADS='1',
    )
    result_file = root / 'result.pt'
    proc = subprocess.run(
        [sys.executable, '-c', _LOAD_SCRIPT, str(REPO), str(result_file), *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(result_file, weights_only=False)


@pytest.mark.parametrize('name', NAMES)
def test_hf_hub_offline_load_equals_the_direct_route(name, exported, hub_loaded):
    item = exported[name]
    loaded = hub_loaded[item['repo_id']]
    assert torch.equal(loaded['hub'], loaded['direct']), 'hf-hub: outputs differ from the official file loaded directly'
    converted = backbonezoo.convert_checkpoint(str(item['src']), name)
    direct = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=converted))
    expected = direct.state_dict()
    assert loaded['state_dict'].keys() == expected.keys()
    assert all(torch.equal(loaded['state_dict'][k], v) for k, v in expected.items())
    cfg, direct_cfg = loaded['cfg'], loaded['direct_cfg']
    assert cfg['hf_hub_id'] == item['repo_id'] and cfg['architecture'] == name
    for key in ('input_size', 'interpolation', 'crop_pct', 'crop_mode', 'mean', 'std', 'num_classes', 'license'):
        ours, theirs = cfg[key], direct_cfg[key]
        assert (list(ours) == list(theirs)) if isinstance(theirs, (list, tuple)) else ours == theirs, key
    assert loaded['labels'] == 1000


@pytest.mark.parametrize('name', NAMES)
def test_folder_layout_and_config(name, exported):
    folder = exported[name]['dir']
    assert sorted(p.name for p in folder.iterdir()) == sorted(hub.HUB_FILES)
    config = json.loads((folder / 'config.json').read_text())
    model = timm.create_model(name)
    cfg = config['pretrained_cfg']
    assert config['architecture'] == name and config['num_classes'] == cfg['num_classes'] == 1000
    for key in ('interpolation', 'crop_pct', 'crop_mode', 'first_conv', 'classifier', 'license'):
        assert cfg[key] == model.pretrained_cfg[key], key
    for key in ('input_size', 'mean', 'std'):
        assert list(cfg[key]) == list(model.pretrained_cfg[key]), key
    assert cfg['paper_ids'] == f'arXiv:{backbonezoo.family_of(name).arxiv}'
    assert not {'url', 'file', 'hf_hub_id', 'source'} & cfg.keys(), 'source locations must not travel with the weights'
    assert cfg.get('tag') != 'untrained', 'converted weights are not untrained'
    assert config['label_names'][:2] == ['n01440764', 'n01443537'] and len(config['label_names']) == 1000
    assert config['label_descriptions']['n01440764'].startswith('tench')
    assert config['backbonezoo']['source'] == exported[name]['src'].name
    with safe_open(str(folder / 'model.safetensors'), 'pt') as handle:
        assert handle.metadata()['format'] == 'pt' and handle.metadata()['model'] == name


@pytest.mark.parametrize('name', NAMES)
def test_card_metadata_names_license_paper_and_measurements(name, exported):
    meta, body = card_metadata(exported[name]['dir'])
    family, variant = backbonezoo.family_of(name), backbonezoo.variant_info(name)
    model = timm.create_model(name)
    assert meta['license'] == model.pretrained_cfg['license'] == 'mit'
    assert meta['library_name'] == 'timm' and meta['pipeline_tag'] == 'image-classification'
    assert {'image-classification', 'timm', f'arxiv:{family.arxiv}'} <= set(meta['tags'])
    # transformers' TimmWrapper can only build timm's own architectures (ours need `import backbonezoo`).
    assert ('transformers' in meta['tags']) == family.timm_owned
    assert ('import backbonezoo' in body) != family.timm_owned
    assert meta['datasets'] == ['imagenet-1k']
    params = sum(p.numel() for p in model.parameters())
    assert f'Params (M): {params / 1e6:.2f}' in body.split('Reported by the authors')[0]
    measured = benchmarking.counts(benchmarking.read_rows(kind='count'))[name]
    assert f'GMACs: {measured["gmacs"]:.4g}' in body.split('Reported by the authors')[0]
    repo_id = hub.default_repo_id(model) or f'<org>/{name}'  # the tool was given no repository
    assert f"timm.create_model('hf-hub:{repo_id}', pretrained=True)" in body
    if variant.top1 is None:
        assert 'model-index' not in meta and 'top-1 (paper): not reported' in body
    else:
        (result,) = meta['model-index'][0]['results']
        (metric,) = result['metrics']
        assert metric['value'] == variant.top1 and 'paper' in metric['name'] and 'not measured' in metric['name']
        assert result['source']['url'] == f'https://arxiv.org/abs/{family.arxiv}'
        assert result['dataset']['type'] == 'imagenet-1k' and result['dataset']['split'] == 'validation'
        assert f'ImageNet-1k top-1 (paper): {variant.top1}' in body
    # the hub's own parser reads the same metadata
    from huggingface_hub import ModelCard

    card = ModelCard((exported[name]['dir'] / 'README.md').read_text(encoding='utf-8'))
    assert card.data.license == 'mit' and card.data.library_name == 'timm'


def test_backbone_export_and_license_override(tmp_path):
    """A headless (num_classes=0) backbone: no label names, feature-extraction pipeline, its own GMACs count."""
    torch.manual_seed(0)
    backbone = timm.create_model('efficientvit_m0', num_classes=0)
    state_dict = backbone.state_dict()
    src = tmp_path / 'backbone.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in state_dict.items()}}, src)
    folder = tmp_path / 'hub'
    argv = [str(src), '--model', 'efficientvit_m0', '--num-classes', '0', '--hub-dir', str(folder)]
    assert tool.main([*argv, '--license', 'Apache-2.0']) == 0
    config = json.loads((folder / 'config.json').read_text())
    assert config['num_classes'] == 0 and 'label_names' not in config
    assert config['pretrained_cfg']['license'] == 'apache-2.0'
    meta, body = card_metadata(folder)
    assert meta['license'] == 'apache-2.0' and meta['pipeline_tag'] == 'image-feature-extraction'
    assert 'datasets' not in meta and 'model-index' not in meta
    measured = benchmarking.counts(benchmarking.read_rows(kind='count'))['efficientvit_m0']
    params = sum(p.numel() for p in backbone.parameters())
    assert f'Params (M): {params / 1e6:.2f}' in body and params < measured['params']
    assert 'backbonezoo.flops.count_flops' in body, 'a different model than the measured one is counted afresh'
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert model.num_classes == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state_dict.items())
    assert tool.main([*argv]) == 1, 'an existing hub folder is not overwritten without --force'


def test_parity_fixture_through_a_hub_folder_reproduces_the_official_logits(tmp_path):
    """The official EfficientViT parity weights (a non-default architecture: model kwargs) -> hub folder -> timm."""
    fixture = load_parity('efficientvit')
    src = tmp_path / 'official.pth'
    torch.save({'model': fixture['state_dict']}, src)
    kw = fixture['kwargs']
    kwargs = dict(img_size=kw['img_size'], **{k: tuple(kw[k]) for k in ('embed_dim', 'key_dim', 'depth', 'num_heads')})
    kwargs.update(window_size=tuple(kw['window_size']), kernels=tuple(kw['kernels']))
    argv = [str(src), '--model', 'efficientvit_m0', '--num-classes', str(kw['num_classes']), '--hub-dir', str(tmp_path)]
    assert tool.main([*argv, '--model-kwargs', *(f'{k}={v!r}' for k, v in kwargs.items())]) == 0
    model = timm.create_model(f'local-dir:{tmp_path}', pretrained=True).eval()
    assert model.pretrained_cfg['input_size'] == (3, kw['img_size'], kw['img_size'])
    with torch.no_grad():
        assert_close_rel(model(fixture['input']), fixture['logits'], what='logits')


def test_save_for_hub_api_round_trips_a_changed_head(tmp_path):
    """The Python API on a model whose constructor arguments differ from the registered defaults."""
    torch.manual_seed(0)
    model = timm.create_model('patnet_t0', num_classes=10).eval()
    summary = hub.save_for_hub(model, tmp_path, repo_id='my-org/patnet_t0.demo', license='cc-by-nc-4.0', tag='demo')
    assert summary['license'] == 'cc-by-nc-4.0' and summary['params'] == sum(p.numel() for p in model.parameters())
    config = json.loads((tmp_path / 'config.json').read_text())
    assert config['model_args']['num_classes'] == 10 and config['pretrained_cfg']['tag'] == 'demo'
    assert 'label_names' not in config, 'ImageNet label names belong to 1000-class heads only'
    meta, body = card_metadata(tmp_path)
    assert meta['license'] == 'cc-by-nc-4.0' and "create_model('hf-hub:my-org/patnet_t0.demo'" in body
    reloaded = timm.create_model(f'local-dir:{tmp_path}', pretrained=True).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))
    with pytest.raises(hub.HubError, match='overwrite'):
        hub.save_for_hub(model, tmp_path)


class _FakeHub:
    """Records huggingface_hub.HfApi calls; checks the folder while it still exists (it may be temporary)."""

    def __init__(self):
        self.calls = []

    def install(self, monkeypatch):
        fake = self

        def create_repo(api, repo_id, **kwargs):
            fake.calls.append(('create_repo', repo_id, kwargs, api.token))
            return type('RepoUrl', (), {'repo_id': repo_id})()

        def upload_folder(api, **kwargs):
            folder = Path(kwargs['folder_path'])
            files = sorted(p.name for p in folder.iterdir())
            meta, body = card_metadata(folder)
            fake.calls.append(('upload_folder', kwargs, api.token, files, meta, body))
            return type('CommitInfo', (), {'commit_url': f'https://huggingface.co/{kwargs["repo_id"]}/commit/1'})()

        import huggingface_hub

        monkeypatch.setattr(huggingface_hub.HfApi, 'create_repo', create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, 'upload_folder', upload_folder)
        monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)


@pytest.fixture
def official_m0(tmp_path) -> Path:
    src = tmp_path / 'efficientvit_m0.pth'
    torch.save(official_checkpoint('efficientvit_m0'), src)
    return src


def test_push_uploads_the_hub_folder(official_m0, tmp_path, monkeypatch, capsys):
    fake = _FakeHub()
    fake.install(monkeypatch)
    monkeypatch.setenv('HF_TOKEN', 'hf_test_token')
    repo_id = 'my-org/efficientvit_m0.in1k'
    assert tool.main([str(official_m0), '--model', 'efficientvit_m0', '--push', repo_id, '--private']) == 0
    (create, upload) = fake.calls
    assert create[1] == repo_id and create[2]['exist_ok'] is True and create[2]['private'] is True
    assert create[3] == 'hf_test_token'
    _, kwargs, token, files, meta, body = upload
    assert kwargs['repo_id'] == repo_id and token == 'hf_test_token'
    assert files == sorted(hub.HUB_FILES) and set(kwargs['allow_patterns']) == set(hub.HUB_FILES)
    assert meta['license'] == 'mit' and f"create_model('hf-hub:{repo_id}', pretrained=True)" in body
    out = capsys.readouterr().out
    assert f'hf-hub:{repo_id}' in out and 'commit/1' in out
    # with --hub-dir the same folder is kept and uploaded
    folder = tmp_path / 'kept'
    assert tool.main([str(official_m0), '--model', 'efficientvit_m0', '--hub-dir', str(folder), '--push', repo_id]) == 0
    assert fake.calls[-1][1]['folder_path'] == str(folder) and (folder / 'model.safetensors').is_file()


def test_push_fails_early_with_what_is_needed(official_m0, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    fake = _FakeHub()
    fake.install(monkeypatch)
    monkeypatch.delenv('HF_TOKEN', raising=False)
    monkeypatch.delenv('HUGGING_FACE_HUB_TOKEN', raising=False)
    monkeypatch.setattr(huggingface_hub, 'get_token', lambda: None)
    base = [str(official_m0), '--model', 'efficientvit_m0']
    assert tool.main([*base, '--push', 'my-org/m0']) == 1
    assert 'hf auth login' in capsys.readouterr().err
    monkeypatch.setenv('HF_TOKEN', 'hf_test_token')
    assert tool.main([*base, '--push', 'not-a-repo-id']) == 1
    assert 'ORG/NAME' in capsys.readouterr().err
    # timm's own hf_hub_id (timm/efficientvit_m0.r224_in1k) is never a default upload target
    assert tool.main([*base, '--push']) == 1
    assert '--push needs ORG/NAME' in capsys.readouterr().err
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    assert tool.main([*base, '--push', 'my-org/m0']) == 1
    assert 'HF_HUB_OFFLINE' in capsys.readouterr().err
    assert tool.main([str(official_m0), '--model', 'efficientvit_m0']) == 1
    assert 'nothing to write' in capsys.readouterr().err
    assert fake.calls == [] and not list(tmp_path.glob('**/model.safetensors'))


def test_default_repo_id_is_the_models_own_hf_hub_id():
    model = timm.create_model('patnet_t0', pretrained_cfg_overlay=dict(hf_hub_id='some-org/patnet_t0.in1k'))
    assert hub.default_repo_id(model) == 'some-org/patnet_t0.in1k'
    assert hub.default_repo_id(timm.create_model('efficientvit_m0')) is None  # timm's repository, not ours


def _first_variants() -> list[str]:
    return [names[0] for family in backbonezoo.families() if (names := backbonezoo.list_models(family=family))]


@pytest.mark.slow
@pytest.mark.parametrize('name', _first_variants())
def test_every_family_exports_and_reloads(name, tmp_path):
    """Each family's first variant: the folder reloads through timm's local-dir route (save_for_hub verifies every
    tensor) and the card parses with a license."""
    torch.manual_seed(0)
    model = timm.create_model(name)
    summary = hub.save_for_hub(model, tmp_path)
    meta, _ = card_metadata(tmp_path)
    assert meta['license'] and meta['library_name'] == 'timm'
    assert summary['params'] == sum(p.numel() for p in model.parameters())
