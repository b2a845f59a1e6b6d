"""Images: lazily decoded image folders, Fashion-MNIST from IDX files, and a torchvision-free train/eval transform."""

from __future__ import annotations

import functools
import math
import os
import random
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, IterableDataset, Value, load_dataset
from datasets import Image as ImageFeature
from PIL import Image, ImageEnhance

from ._common import IMAGE_EXTENSIONS, open_binary, scan_folder


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def to_rgb(image: Image.Image) -> Image.Image:
    """
    3 channels of 8 bits. PIL's own `convert("RGB")` clips 16- and 32-bit greyscale (modes `I;16`, `I`) at 255, so
    a 16-bit PNG would come out almost white: those are rescaled from their bit depth to 8 bits first.
    """
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        depth = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) <= 65535 else 2.0**32 - 1
        image = Image.fromarray(np.round(values.clip(0, depth) * (255.0 / depth)).astype(np.uint8), mode="L")
    return image.convert("RGB")


def _open_image(path: str, image_size: int | None) -> Image.Image:
    try:
        with Image.open(path) as image:
            image = to_rgb(image)  # forces the full decode inside the try, and 3 channels for the models
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError... for damaged files
        raise ValueError(f"cannot read image file {path}: {err}") from None
    if image_size is not None:
        image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return image


def _decode_image_batch(batch: dict, image_size: int | None, transform: Callable | None) -> dict:
    # Module-level (bound with functools.partial) so the dataset pickles for spawn-based DataLoader workers.
    paths = [item["path"] for item in batch["image"]]
    images = [_open_image(p, image_size) for p in paths]
    out = {"image": images, "path": paths, "label": batch["label"]}
    if transform is not None:
        out["pixel_values"] = [transform(image) for image in images]
    return out


def _parent_labels(batch: dict, names: list[str]) -> dict:
    return {"label": [names.index(Path(item["path"]).parent.name) for item in batch["image"]]}


def _decode_idx_batch(batch: dict, width: int, height: int, transform: Callable | None) -> dict:
    images = [Image.frombytes("L", (width, height), raw) for raw in batch["image"]]
    out = {"image": images, "label": batch["label"]}
    if transform is not None:
        out["pixel_values"] = [transform(image) for image in images]
    return out


def _check_image_header(path: str) -> None:
    try:
        with Image.open(path):
            pass  # reads the header only; cheap enough to run over a whole folder
    except Exception as err:
        raise ValueError(f"cannot read image file {path}: {err}") from None


def load_image_folder(
    folder: str | os.PathLike,
    image_size: int | None = None,
    streaming: bool = False,
    transform: Callable[[Image.Image], torch.Tensor] | None = None,
) -> Dataset | IterableDataset:
    """Loads every image under `folder` with `datasets.load_dataset("imagefolder")`, decoded lazily with PIL.

    Column contract (each example): `image` (RGB `PIL.Image.Image`, resized to `image_size` x `image_size` when given),
    `path` (`str`), `label` (`int`, a `ClassLabel` over the class folder names as `imagefolder` infers them; with a
    single class folder or none, the parent folder's name), plus `pixel_values` (the `transform` output) when
    `transform` is given. Decoding runs on access (`with_transform`); the non-streaming loader checks every file header
    up front so damaged files fail early, by name. As `imagefolder` does, sub-folders named like splits (`train/`,
    `test/`) are read as splits: the `train` one is loaded.

    Args:
        folder (`str` or `os.PathLike`): the root folder; suffixes in `IMAGE_EXTENSIONS` are read.
        image_size (`int`, *optional*): resize every image to this square size (bicubic).
        streaming (`bool`, *optional*, defaults to `False`): return an `IterableDataset` decoding on the fly.
        transform (`Callable`, *optional*): e.g. [`image_transform`]; its output becomes `pixel_values`.

    Returns:
        `datasets.Dataset` (lazy transform) or `datasets.IterableDataset`.

    Raises:
        ValueError: the folder is missing or holds no images, or an image is unreadable (named).
    """
    files = scan_folder(folder, IMAGE_EXTENSIONS, "image")  # a missing or empty folder, named, before datasets
    dataset = load_dataset("imagefolder", data_dir=str(folder), split="train", streaming=streaming)
    # decoded by `_open_image` (RGB, resize, a damaged file named) rather than by the Image feature
    dataset = dataset.cast_column("image", ImageFeature(decode=False))
    if "label" not in dataset.column_names:
        # imagefolder infers no label from a single class folder (or a flat folder): the parent folder's name
        names = sorted({path.parent.name for path in files})
        dataset = dataset.map(functools.partial(_parent_labels, names=names), batched=True)
        dataset = dataset.cast_column("label", ClassLabel(names=names))
    decode = functools.partial(_decode_image_batch, image_size=image_size, transform=transform)
    if streaming:
        return dataset.map(decode, batched=True, batch_size=1)
    # [:] reads the whole column at once (datasets >= 4 returns a lazy Column, read row by row when iterated)
    paths = [item["path"] for item in dataset["image"][:]]
    for path in paths:
        _check_image_header(path)
    return dataset.add_column("path", paths).with_transform(decode)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), optionally gzip-compressed, into a numpy array.

    Args:
        path (`str` or `os.PathLike`): e.g. `train-images-idx3-ubyte.gz`.

    Returns:
        `np.ndarray` with the file's shape and native-endian dtype.

    Raises:
        ValueError: the file is missing, not IDX, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IDX file {path} does not exist")
    try:
        with open_binary(path) as handle:
            data = handle.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read IDX file {path}: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    ndim, dtype = data[3], np.dtype(_IDX_DTYPES[data[2]])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: IDX payload has {len(data) - header} bytes, shape {shape} needs {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(
    folder: str | os.PathLike, split: str = "train", transform: Callable[[Image.Image], torch.Tensor] | None = None
) -> Dataset:
    """Loads Fashion-MNIST from the four IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`).

    Column contract (each example): `image` (a 28x28 greyscale `PIL.Image.Image`, mode "L", built on access from
    the raw bytes stored in the dataset), `label` (`int` 0-9, a `ClassLabel` with names `FASHION_MNIST_CLASSES`),
    plus `pixel_values` (the `transform` output) when `transform` is given. The stored `image` column is the raw
    784 bytes; `ds.with_format(None)` shows them.

    Args:
        folder (`str` or `os.PathLike`): folder holding the IDX files (gzip or not).
        split (`str`, *optional*, defaults to `"train"`): `"train"` or `"test"` (the `t10k` files).
        transform (`Callable`, *optional*): e.g. [`image_transform`]; its output becomes `pixel_values`.

    Returns:
        `datasets.Dataset` with a lazy transform.

    Raises:
        ValueError: unknown split, missing or malformed files, mismatched counts or labels outside 0-9.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(FASHION_MNIST_FILES)}, got {split!r}")
    folder = Path(folder)
    found = []
    for stem in FASHION_MNIST_FILES[split]:
        candidates = [folder / f"{stem}.gz", folder / stem]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise ValueError(f"Fashion-MNIST {split} file {stem}[.gz] not found in {folder}")
        found.append(path)
    images, labels = read_idx(found[0]), read_idx(found[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{found[0]}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{found[1]}: {labels.shape} labels for {len(images)} images in {found[0]}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
        raise ValueError(f"{found[1]}: labels must be in 0-9, found {labels.min()}-{labels.max()}")
    height, width = images.shape[1:]
    features = Features({"image": Value("binary"), "label": ClassLabel(names=list(FASHION_MNIST_CLASSES))})
    # Raw bytes (784 per image) are 30x faster to build than PNG-encoded datasets.Image and as cheap to decode.
    dataset = Dataset.from_dict({"image": [img.tobytes() for img in images], "label": labels.tolist()}, features)

    return dataset.with_transform(
        functools.partial(_decode_idx_batch, width=width, height=height, transform=transform)
    )


class ImageTransform:
    """Turns one image into normalised `pixel_values` (a float32 `torch.Tensor` of shape (3, size, size)).

    Train: torchvision-style `RandomResizedCrop(size, scale, ratio=(3/4, 4/3))` (bicubic), a horizontal flip
    with probability 0.5 and, with `color_jitter` c > 0, torchvision's `ColorJitter(c, c, c)`: brightness, contrast
    and saturation each scaled by a factor from U[1 - c, 1 + c], in a random order. Eval: resize the shorter side to
    `size` (bicubic) and centre-crop. Then scale to [0, 1] and normalise per channel with `mean` / `std`. Greyscale
    (and RGBA, palette...) images become RGB.
    """

    def __init__(self, image_size, mean, std, train, crop_scale=(0.08, 1.0), seed=None, color_jitter=0.0):
        self.size = int(image_size)
        if self.size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        mean, std = np.broadcast_to(np.asarray(mean, np.float32), 3), np.broadcast_to(np.asarray(std, np.float32), 3)
        if np.any(std <= 0):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.train, self.crop_scale, self.color_jitter = train, crop_scale, float(color_jitter)
        self.rng = random.Random(seed)

    def _jitter(self, image: Image.Image) -> Image.Image:
        enhancers = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
        self.rng.shuffle(enhancers)
        for enhancer in enhancers:
            image = enhancer(image).enhance(self.rng.uniform(1 - self.color_jitter, 1 + self.color_jitter))
        return image

    def _crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(3 / 4), math.log(4 / 3))
        for _ in range(10):
            target = area * self.rng.uniform(*self.crop_scale)
            aspect = math.exp(self.rng.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                left, top = self.rng.randint(0, width - w), self.rng.randint(0, height - h)
                return left, top, left + w, top + h
        side = min(width, height)  # fallback as torchvision: the largest centred square
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side

    def __call__(self, image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        image = to_rgb(image)  # Hub images arrive here undecoded to 8 bits too
        width, height = image.size
        if self.train:
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=self._crop_box(width, height))
            if self.rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.color_jitter > 0:
                image = self._jitter(image)
        else:
            scale = self.size / min(width, height)
            new_w, new_h = max(self.size, round(width * scale)), max(self.size, round(height * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
            left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - self.mean) / self.std


def image_transform(
    image_size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    train: bool = False,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    seed: int | None = None,
) -> ImageTransform:
    """Builds the image -> `pixel_values` transform (no torchvision needed: PIL, numpy and torch only).

    Args:
        image_size (`int`): output height and width.
        mean (`Sequence[float]`, *optional*, defaults to `(0.5, 0.5, 0.5)`): per-channel mean (data2vec-vision's
            image processor uses 0.5; pass `(0.485, 0.456, 0.406)` for ImageNet statistics). One value broadcasts.
        std (`Sequence[float]`, *optional*, defaults to `(0.5, 0.5, 0.5)`): per-channel standard deviation.
        train (`bool`, *optional*, defaults to `False`): random resized crop + flip instead of resize + centre crop.
        crop_scale (`tuple[float, float]`, *optional*, defaults to `(0.08, 1.0)`): area range of the random crop.
        seed (`int`, *optional*): seed of the transform's own RNG, for reproducible augmentation.

    Returns:
        [`ImageTransform`]: a callable taking a PIL image or a uint8 array (H, W) / (H, W, C) and returning a
        float32 tensor (3, image_size, image_size).
    """
    return ImageTransform(image_size, mean, std, train, crop_scale=crop_scale, seed=seed)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The released pretraining augmentations. data2vec 1.0 (the BEiT repo's command: `--imagenet_default_mean_and_std`,
# `--color_jitter` 0.4, timm's RandomResizedCrop(0.08, 1) and flip) and data2vec 2.0 (fairseq's
# `mae_image_dataset.py`: RandomResizedCrop(0.2, 1), flip, ImageNet statistics, no colour jitter).
PRETRAINING_AUGMENTATIONS = {
    "data2vec": {"crop_scale": (0.08, 1.0), "color_jitter": 0.4},
    "data2vec2": {"crop_scale": (0.2, 1.0), "color_jitter": 0.0},
}


def pretraining_image_transform(mode: str, image_size: int, train: bool = True, seed: int | None = None):
    """The image pretraining transform of data2vec 1.0 (`mode="data2vec"`) or 2.0 (`"data2vec2"`), as released."""
    augmentation = PRETRAINING_AUGMENTATIONS[mode] if train else {}
    return ImageTransform(image_size, IMAGENET_MEAN, IMAGENET_STD, train, seed=seed, **augmentation)


__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRETRAINING_AUGMENTATIONS",
    "ImageTransform",
    "image_transform",
    "pretraining_image_transform",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
]
