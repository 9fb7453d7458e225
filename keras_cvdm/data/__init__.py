"""Data: synthetic phantoms, simulated QPI and SR datasets, file-based datasets, normalisation.

- `phantoms`: seeded synthetic target maps.
- `augment`: the random flip/rotation shared by every dataset.
- `base`: seed and epoch bookkeeping of every dataset; `simulated`: the simulated-data
  base (`SimulatedDataset`, `PhantomSource`).
- `qpi_data`, `sr_data`: the two tasks' simulators, training datasets and test sets.
- `folders`: image folders as simulation targets; `paired`: stored `(x, y)` pairs.
- `normalization`: model-space scaling of inputs and targets; `tf_data`: `tf.data`.
"""

from keras_cvdm.data.augment import augment
from keras_cvdm.data.folders import FolderSource, from_image_folder
from keras_cvdm.data.normalization import (
    QPINormalization,
    SRNormalization,
    normalization_from_dict,
    stack_pair,
)
from keras_cvdm.data.paired import PairedDataset, paired_dataset
from keras_cvdm.data.phantoms import (
    PHANTOMS,
    QPI_DEFAULT_MIX,
    SR_DEFAULT_MIX,
    cells,
    filaments,
    gaussian_blur,
    gaussian_random_field,
    normalize_mix,
    puncta,
    random_phantom,
    rings,
    shapes,
    strokes,
    textures,
)
from keras_cvdm.data.qpi_data import (
    QPI_TEST_SEED,
    QPIDataset,
    qpi_dataset,
    qpi_test_set,
    simulate_qpi_pair,
)
from keras_cvdm.data.simulated import PhantomSource, SimulatedDataset
from keras_cvdm.data.sr_data import SR_TEST_SEED, SRDataset, sr_dataset, sr_test_set
from keras_cvdm.data.tf_data import to_tf_dataset

__all__ = [
    "PHANTOMS",
    "QPI_DEFAULT_MIX",
    "QPI_TEST_SEED",
    "SR_DEFAULT_MIX",
    "SR_TEST_SEED",
    "FolderSource",
    "PairedDataset",
    "PhantomSource",
    "QPIDataset",
    "QPINormalization",
    "SRDataset",
    "SRNormalization",
    "SimulatedDataset",
    "augment",
    "cells",
    "filaments",
    "from_image_folder",
    "gaussian_blur",
    "gaussian_random_field",
    "normalization_from_dict",
    "normalize_mix",
    "paired_dataset",
    "puncta",
    "qpi_dataset",
    "qpi_test_set",
    "random_phantom",
    "rings",
    "shapes",
    "simulate_qpi_pair",
    "sr_dataset",
    "sr_test_set",
    "stack_pair",
    "strokes",
    "textures",
    "to_tf_dataset",
]
