"""The data side of rawcnn: synthetic radiographs, readers, preprocessing, data sets, augmentation.

    synth       synthesize(out_dir, n, ...)                synthetic radiographs in the Montgomery layout
    records     DataError, Record, Records                 what readers and decoders share (inside_root, file_problem)
    image_check check_declared_size, decode_guarded        an image header's declared size; OpenCV's decode guarded
    dicom       is_dicom, load_dicom                       DICOM to 8-bit grey, the file untrusted
    decode      load_image / load_image_color / load_mask  image files to arrays; header_problem
    label_files read_nih / read_label_csv -> Records       sets labelled by a CSV (NIH ChestX-ray14, labels.csv)
    readers     read_montgomery / read_shenzhen / read_folder_per_class / read_any -> Records
    preprocess  preprocess_image(x, lung_mask, lesion_mask, settings), default_settings(...)
    dataset     prepare(src_root, out_path, ..., labelling=Labelling(classes, finding)) -> one HDF5 file;
                load_dataset(path)
    augment     Augmenter(max_translate, max_rotate_deg, rng)
"""
from rawcnn.data.augment import Augmenter
from rawcnn.data.dataset import Labelling, PreparedData, PrepareSummary, SplitArrays, load_dataset, prepare
from rawcnn.data.decode import load_image, load_mask
from rawcnn.data.preprocess import check_settings, default_settings, preprocess_image
from rawcnn.data.readers import detect_layout, read_any, read_folder_per_class, read_montgomery, read_shenzhen
from rawcnn.data.records import DataError, Record, Records
from rawcnn.data.synth import render_case, synthesize

__all__ = ["Augmenter", "Labelling", "PreparedData", "PrepareSummary", "SplitArrays", "load_dataset", "prepare",
           "check_settings", "default_settings", "preprocess_image", "DataError", "Record",
           "Records", "detect_layout", "load_image", "load_mask", "read_any",
           "read_folder_per_class", "read_montgomery", "read_shenzhen", "render_case", "synthesize"]
