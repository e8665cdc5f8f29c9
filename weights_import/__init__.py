"""Readers for external weight files: Keras 1/2/3 HDF5 (VGG16, VGG19), AlexNet HDF5, rawcnn checkpoints.

    from weights_import import import_weights, save_imported
    net, report = import_weights(path, "vgg16")          # format read from the file's structure
    save_imported("vgg16.h5", net, report)

All layout conversion (HWIO -> OIHW, Theano kernel flips, (H, W, C) -> (C, H, W) fc rows, split
groups, LRN conventions, channel order) happens in this package and nowhere else. See
docs/weights-formats.md for the file families.
"""
from .detect import FORMATS
from .errors import WeightsImportError
from .importer import import_to_checkpoint, import_weights, save_imported

__all__ = ["import_weights", "import_to_checkpoint", "save_imported", "FORMATS", "WeightsImportError"]
