"""Time-series data: TFDS builders over bundled UCR/UEA sets and the user's files, grain input.

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
