"""Data: TFDS builders over bundled real sets and the user's files, grain input.

This package's top level is the time-series data; each other modality has its module, with the
same shape (builders, ``load_split``-style loaders, a ``train_iterator`` built on
``pipeline.batch_iterator``): ``speech`` (and ``tts``), ``eeg``, ``graphs`` (batching, message
passing) with ``graph_files`` and ``graph_pipeline``.

    train = vqlearn.data.load_split(config.data, "train", pad_multiple=4)   # SeriesSet
    it = vqlearn.data.train_iterator(config.data, global_batch_size=64, seed=0, pad_multiple=4)
    batch = next(it)   # {'series': (64, W, C), 'mask': (64, W), 'label': (64,)}

Datasets are prepared once into array_record files under ``config.data.dir`` (else
``$VQLEARN_DATA_DIR``, else ~/.cache/vqlearn/tfds) and read back with TFDS data sources; no
TensorFlow is needed. See ``storage`` for the layout, ``files`` for the accepted file formats
and ``pipeline`` for the determinism contract of the iterator.
"""

from vqlearn.data.pipeline import (DataOptions, check_config, load_split, train_iterator,
                                   training_examples)
from vqlearn.data.preprocess import SeriesSet, windows
from vqlearn.data.storage import resolve_data_dir
from vqlearn.data.ucr import BUNDLED

__all__ = ["BUNDLED", "DataOptions", "SeriesSet", "check_config", "load_split",
           "resolve_data_dir", "train_iterator", "training_examples", "windows"]
