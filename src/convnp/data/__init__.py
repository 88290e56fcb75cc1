"""Datasets, file readers, minibatches and augmentation.

- ``load(name, data_dir=None, download=True)``: ``"digits"``, ``"mnist"``,
  ``"fashion-mnist"``, ``"cifar10"`` as float32 NCHW images in [0, 1] and
  int64 labels (``DATASETS`` describes each one).
- ``image_folder(path, ...)``: your own PNG/JPEG/BMP images, one sub-folder per
  class; ``read_image`` reads one image file the same way.
- ``read_idx`` / ``write_idx``: the IDX format of MNIST and Fashion-MNIST.
- ``load_npz``: the ``mndata.npz`` layout of the tutorials.
- ``BatchIterator`` / ``iterate_minibatches``: seeded, shuffled minibatches;
  ``stratified_split``: a held-out share of each class.
- ``random_shift``, ``random_crop``, ``random_flip``, ``random_erase``, ``shift``, ``Augment``:
  vectorised augmentation of NCHW batches.
"""

from convnp.checks import InputWarning
from convnp.data.augment import Augment, random_crop, random_erase, random_flip, random_shift, shift
from convnp.data.batching import BatchIterator, iterate_minibatches, stratified_split
from convnp.data.datasets import DATASETS, DatasetInfo, load
from convnp.data.download import cache_root
from convnp.data.errors import ChecksumError, DatasetNotFoundError, DownloadError
from convnp.data.idx import read_idx, write_idx
from convnp.data.image_files import IMAGE_EXTENSIONS, ImageFileError, read_image
from convnp.data.image_folder import ImageFolderData, image_folder
from convnp.data.npz import load_npz

__all__ = [
    "load",
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ChecksumError",
    "DownloadError",
    "cache_root",
    "read_idx",
    "write_idx",
    "load_npz",
    "image_folder",
    "ImageFolderData",
    "read_image",
    "ImageFileError",
    "IMAGE_EXTENSIONS",
    "InputWarning",
    "BatchIterator",
    "iterate_minibatches",
    "stratified_split",
    "Augment",
    "random_shift",
    "random_crop",
    "random_flip",
    "random_erase",
    "shift",
]
