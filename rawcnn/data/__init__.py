"""The data side of rawcnn: synthetic radiographs, readers, preprocessing, data sets, augmentation.

    synth       synthesize(out_dir, n, ...)       synthetic radiographs in the Montgomery layout
    readers     read_montgomery / read_shenzhen / read_folder_per_class / read_any -> Records
    preprocess  preprocess_image(x, lung_mask, lesion_mask, settings), default_settings(...)
    dataset     prepare(src_root, out_path, ...) -> one HDF5 file; load_dataset(path)
    augment     Augmenter(max_translate, max_rotate_deg, rng)
"""
from rawcnn.data.augment import Augmenter
from rawcnn.data.dataset import PreparedData, PrepareSummary, SplitArrays, load_dataset, prepare
from rawcnn.data.preprocess import check_settings, default_settings, preprocess_image
from rawcnn.data.readers import DataError, Record, Records, detect_layout, load_image, load_mask, read_any, read_folder_per_class, read_montgomery, read_shenzhen
from rawcnn.data.synth import render_case, synthesize

__all__ = ["Augmenter", "PreparedData", "PrepareSummary", "SplitArrays", "load_dataset", "prepare",
           "check_settings", "default_settings", "preprocess_image", "DataError", "Record",
           "Records", "detect_layout", "load_image", "load_mask", "read_any",
           "read_folder_per_class", "read_montgomery", "read_shenzhen", "render_case", "synthesize"]
