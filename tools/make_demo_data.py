#!/usr/bin/env python
"""Generate the small, deterministic demo data sets used by the tests and ``make demo``.

Three layouts under OUT_DIR, all drawn from the same synthetic world of coloured shapes on noisy textures:

- ``imagenet/``: ImageNet-folder classification, ``{train,val}/<wnid>/*.JPEG`` (6 classes x 40 train / 10 val),
  the same val images flat in ``val_flat/`` with ``meta/val.txt`` (``file class_index``), ``meta/classes.txt``
  (wnids) and ``meta/class_names.txt``.
- ``coco/``: COCO-format detection and instance segmentation, ``{train,val}/*.jpg`` and
  ``annotations/instances_{train,val}.json`` (boxes, polygon masks, 3 categories).
- ``ade/``: ADE20K-style semantic segmentation, ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` label maps: 0 = "other" (ignored with ``reduce_zero_label``),
  1..4 = background texture, circle, square, triangle.

The same seed gives byte-identical files (fixed PIL encoder settings). Takes about a second.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['make_demo_data', 'CLASS_NAMES', 'CLASS_WNIDS', 'COCO_CATEGORIES', 'ADE_CLASSES']

CLASS_NAMES = ('circle', 'square', 'triangle', 'cross', 'ring', 'stripes')
# Synthetic WordNet-style ids: the layout is ImageNet's, the ids are not real synsets.
CLASS_WNIDS = tuple(f'n9000000{i}' for i in range(len(CLASS_NAMES)))
COCO_CATEGORIES = ('circle', 'square', 'triangle')
ADE_CLASSES = ('background', 'circle', 'square', 'triangle')

IMAGENET_SPLITS = {'train': 40, 'val': 10}
COCO_SPLITS = {'train': 24, 'val': 8}
ADE_SPLITS = {'training': 24, 'validation': 8}
JPEG_QUALITY = 92


def _texture(rng: np.random.RandomState, height: int, width: int) -> Image.Image:
    """A noisy two-colour gradient: enough clutter that the shapes are not trivially separable by colour."""
    base = rng.randint(0, 256, size=(2, 3)).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    if rng.rand() < 0.5:
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None] * np.ones((1, width, 1), np.float32)
    img = base[0] * (1 - ramp) + base[1] * ramp
    img = img + rng.normal(0.0, 18.0, size=(height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _colour(rng: np.random.RandomState) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.randint(0, 256, size=3))


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    """Outline of a filled shape as a polygon (circles with 24 vertices)."""
    if kind == 'circle':
        n, phase = 24, 0.0
    elif kind == 'square':
        n, phase = 4, angle + math.pi / 4
    elif kind == 'triangle':
        n, phase = 3, angle - math.pi / 2
    else:
        raise ValueError(f'kind={kind!r}: expected circle, square or triangle')
    return [
        (cx + radius * math.cos(phase + 2 * math.pi * k / n), cy + radius * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _draw_class_image(rng: np.random.RandomState, label: int) -> Image.Image:
    size = int(rng.randint(64, 97))
    img = _texture(rng, size, size)
    draw = ImageDraw.Draw(img)
    kind = CLASS_NAMES[label]
    radius = size * rng.uniform(0.22, 0.36)
    cx, cy = (rng.uniform(radius + 2, size - radius - 2) for _ in range(2))
    colour, angle = _colour(rng), rng.uniform(0, math.pi / 2)
    if kind in COCO_CATEGORIES:
        draw.polygon(_polygon(kind, cx, cy, radius, angle), fill=colour)
    elif kind == 'cross':
        arm = radius * 0.35
        draw.rectangle([cx - radius, cy - arm, cx + radius, cy + arm], fill=colour)
        draw.rectangle([cx - arm, cy - radius, cx + arm, cy + radius], fill=colour)
    elif kind == 'ring':
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=colour, width=max(3, size // 14))
    else:  # stripes: parallel bars across the image
        period = int(rng.randint(8, 14))
        for offset in range(-size, 2 * size, period):
            draw.line([(offset, 0), (offset + size * math.tan(angle - math.pi / 4), size)], fill=colour, width=3)
    return img


def _save_jpeg(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format='JPEG', quality=JPEG_QUALITY, subsampling=0, optimize=False)


def _make_imagenet(root: Path, rng: np.random.RandomState) -> None:
    meta = root / 'meta'
    meta.mkdir(parents=True, exist_ok=True)
    (meta / 'classes.txt').write_text(''.join(f'{w}\n' for w in CLASS_WNIDS))
    (meta / 'class_names.txt').write_text(''.join(f'{w} {n}\n' for w, n in zip(CLASS_WNIDS, CLASS_NAMES)))
    flat_lines = []
    for split, per_class in IMAGENET_SPLITS.items():
        for index in range(per_class):
            for label, wnid in enumerate(CLASS_WNIDS):
                img = _draw_class_image(rng, label)
                name = f'{wnid}_{split}_{index:04d}.JPEG'
                _save_jpeg(img, root / split / wnid / name)
                if split == 'val':
                    flat_name = f'DEMO_val_{len(flat_lines) + 1:08d}.JPEG'
                    _save_jpeg(img, root / 'val_flat' / flat_name)
                    flat_lines.append(f'{flat_name} {label}\n')
    (meta / 'val.txt').write_text(''.join(flat_lines))


def _scene(
    rng: np.random.RandomState, height: int, width: int, max_objects: int
) -> tuple[Image.Image, np.ndarray, list]:
    """An image with a few non-overlapping shapes, its label map (ADE ids) and per-object polygons."""
    img = _texture(rng, height, width)
    draw = ImageDraw.Draw(img)
    label_map = Image.new('L', (width, height), 1)
    label_draw = ImageDraw.Draw(label_map)
    objects, placed = [], []
    for _ in range(int(rng.randint(1, max_objects + 1))):
        for _attempt in range(20):
            radius = rng.uniform(12, min(height, width) * 0.28)
            cx, cy = rng.uniform(radius + 1, width - radius - 1), rng.uniform(radius + 1, height - radius - 1)
            if all(math.hypot(cx - px, cy - py) > radius + pr + 2 for px, py, pr in placed):
                break
        else:
            continue
        category = int(rng.randint(len(COCO_CATEGORIES)))
        poly = _polygon(COCO_CATEGORIES[category], cx, cy, radius, rng.uniform(0, math.pi / 2))
        draw.polygon(poly, fill=_colour(rng))
        label_draw.polygon(poly, fill=category + 2)
        placed.append((cx, cy, radius))
        objects.append((category, poly))
    labels = np.array(label_map)
    labels[:2, :] = labels[-2:, :] = labels[:, :2] = labels[:, -2:] = 0  # an "other" frame, as ADE's unlabelled pixels
    return img, labels, objects


def _polygon_area(poly: list[tuple[float, float]]) -> float:
    xs, ys = np.array([p[0] for p in poly]), np.array([p[1] for p in poly])
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def _make_coco(root: Path, rng: np.random.RandomState) -> None:
    categories = [{'id': i + 1, 'name': name, 'supercategory': 'shape'} for i, name in enumerate(COCO_CATEGORIES)]
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    for split, count in COCO_SPLITS.items():
        images, annotations = [], []
        for index in range(count):
            height, width = int(rng.choice([96, 128, 160])), int(rng.choice([128, 160, 192]))
            img, _, objects = _scene(rng, height, width, max_objects=3)
            file_name = f'{split}_{index:05d}.jpg'
            _save_jpeg(img, root / split / file_name)
            image_id = index + 1
            images.append({'id': image_id, 'file_name': file_name, 'height': height, 'width': width})
            for category, poly in objects:
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
                box = [
                    round(x0, 2),
                    round(y0, 2),
                    round(min(width, max(xs)) - x0, 2),
                    round(min(height, max(ys)) - y0, 2),
                ]
                annotations.append(
                    {
                        'id': len(annotations) + 1,
                        'image_id': image_id,
                        'category_id': category + 1,
                        'bbox': box,
                        'area': round(_polygon_area(poly), 2),
                        'segmentation': [[round(c, 2) for point in poly for c in point]],
                        'iscrowd': 0,
                    }
                )
        dataset = {'images': images, 'annotations': annotations, 'categories': categories}
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(dataset))


def _make_ade(root: Path, rng: np.random.RandomState) -> None:
    for split, count in ADE_SPLITS.items():
        for index in range(count):
            img, labels, _ = _scene(rng, 128, 160, max_objects=4)
            stem = f'ADE_demo_{split}_{index:05d}'
            _save_jpeg(img, root / 'images' / split / f'{stem}.jpg')
            ann = root / 'annotations' / split / f'{stem}.png'
            ann.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels).save(ann, format='PNG', optimize=False)


def make_demo_data(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the three demo data sets under ``out_dir`` (created if needed) and return it as a Path.

    Each layout draws from its own seeded generator, so the files depend only on ``seed``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _make_imagenet(out / 'imagenet', np.random.RandomState(seed))
    _make_coco(out / 'coco', np.random.RandomState(seed + 1))
    _make_ade(out / 'ade', np.random.RandomState(seed + 2))
    (out / 'README.txt').write_text(
        f'backbonezoo demo data (seed {seed}), written by tools/make_demo_data.py: imagenet/, coco/, ade/.\n'
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir', help='folder to write imagenet/, coco/ and ade/ into')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same bytes)')
    args = parser.parse_args(argv)
    out = make_demo_data(args.out_dir, seed=args.seed)
    print(f'demo data written to {out.resolve()}')


if __name__ == '__main__':
    main()
