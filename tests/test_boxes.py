"""rawcnn.data.boxes: lesion boxes from Pascal VOC, COCO and CSV files, and drawn in a prepared set's pixels.

Hand-written files and hand-computed masks; the last test checks the coordinate mapping against the
prepared set's own lesion masks (the boxes of the synthetic generator's masks must cover them).
"""
import json
import time

import numpy as np
import pytest

from rawcnn.data import default_settings, load_dataset, prepare, synthesize
from rawcnn.data.boxes import boxes_to_masks, match_names, read_boxes
from rawcnn.data.decode import load_mask
from rawcnn.files.validate import InputError

VOC = """<annotation><folder>x</folder><filename>CHNCXR_0001_1.png</filename>
<size><width>512</width><height>512</height></size>
<object><name>tb</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50</xmax><ymax>80</ymax></bndbox></object>
<object><name>tb</name><bndbox><xmin>100.5</xmin><ymin>0</ymin><xmax>101.5</xmax><ymax>3</ymax></bndbox></object>
</annotation>"""


def test_voc_file_and_folder(tmp_path):
    (tmp_path / "a.xml").write_text(VOC)
    assert read_boxes(tmp_path / "a.xml") == {"CHNCXR_0001_1.png": [(10, 20, 40, 60), (100.5, 0, 1, 3)]}
    (tmp_path / "b.xml").write_text("<annotation><filename>n2.png</filename></annotation>")  # no lesion
    (tmp_path / "notes.txt").write_text("ignored")
    assert read_boxes(tmp_path) == {"CHNCXR_0001_1.png": [(10, 20, 40, 60), (100.5, 0, 1, 3)], "n2.png": []}


@pytest.mark.parametrize("text, match", [
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     "<annotation><filename>&lol2;</filename></annotation>", "document type or entities"),
    ("<annotation><filename>a.png</filename><object><bndbox><xmin>1</xmin></bndbox></object></annotation>",
     "needs xmin, ymin, xmax and ymax"),
    ("<annotation><filename>a.png</filename><object><bndbox><xmin>5</xmin><ymin>1</ymin><xmax>5</xmax>"
     "<ymax>3</ymax></bndbox></object></annotation>", "has no area"),
    ("<annotation><filename>a.png</filename><object><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>5</xmax>"
     "<ymax>3</ymax></bndbox></object></annotation>", "not finite"),
    ("<annotation><object/></annotation>", "no <filename>"),
    ("<annotation><filename>a.png</filename>", "not well-formed"),
])
def test_voc_refusals_name_the_file(tmp_path, text, match):
    f = tmp_path / "bad.xml"
    f.write_text(text)
    t = time.perf_counter()
    with pytest.raises(InputError, match=match) as e:
        read_boxes(f)
    assert str(f) in str(e.value) and time.perf_counter() - t < 5


def test_coco_names_without_folders_and_every_listed_image(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "extra/da+db/train/n11.png"}, {"id": 8, "file_name": "tb/tb1.png"}],
            "annotations": [{"image_id": 8, "bbox": [1, 2, 3, 4]}, {"image_id": 8, "bbox": [5, 6, 7, 8.5]}],
            "categories": []}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    assert read_boxes(tmp_path / "a.json") == {"n11.png": [], "tb1.png": [(1, 2, 3, 4), (5, 6, 7, 8.5)]}


@pytest.mark.parametrize("coco, match", [
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "bbox": [0, 0, 1, 1]}]},
     "names no image"),
    ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "bbox": [0, 0, 1]}]},
     r"\[x, y, w, h\]"),
    ({"images": [{"id": 1}], "annotations": []}, "'file_name'"),
    ({"images": {}, "annotations": []}, "lists 'images' and 'annotations'"),
    ([1, 2], "expected a JSON object"),
])
def test_coco_refusals(tmp_path, coco, match):
    (tmp_path / "a.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match=match):
        read_boxes(tmp_path / "a.json")


def test_coco_non_finite_box_is_refused(tmp_path):
    (tmp_path / "a.json").write_text('{"images": [{"id": 1, "file_name": "a.png"}], '
                                     '"annotations": [{"image_id": 1, "bbox": [0, 0, Infinity, 1]}]}')
    with pytest.raises(InputError, match="not finite"):
        read_boxes(tmp_path / "a.json")


def test_csv_columns_in_any_order(tmp_path):
    (tmp_path / "b.csv").write_text("h,w,y,x,file,note\n4,3,2,1,dir/a.png,x\n\n1,1,0,0,a.png,y\n2,2,2,2,b.png,z\n")
    assert read_boxes(tmp_path / "b.csv") == {"a.png": [(1, 2, 3, 4), (0, 0, 1, 1)], "b.png": [(2, 2, 2, 2)]}


@pytest.mark.parametrize("text, match", [("file,x,y,w\na.png,1,2,3\n", r"missing \['h'\]"),
                                         ("file,x,y,w,h\na.png,1,2,0,4\n", "line 2: the box .* has no area"),
                                         ("file,x,y,w,h\na.png,1,2\n", "line 2 has 3 fields"),
                                         ("file,x,y,w,h\na.png,one,2,3,4\n", "four numbers")])
def test_csv_refusals(tmp_path, text, match):
    (tmp_path / "b.csv").write_text(text)
    with pytest.raises(InputError, match=match):
        read_boxes(tmp_path / "b.csv")


def test_unknown_format_and_empty_folder(tmp_path):
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(InputError, match=r"\.xml .*\.json .*\.csv"):
        read_boxes(tmp_path / "b.txt")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="no .xml file"):
        read_boxes(tmp_path / "d")


def test_names_match_without_folders_or_extension():
    boxes = {"a.png": [(0, 0, 1, 1)], "c": [(1, 1, 1, 1)]}
    assert match_names(boxes, ["sub/a.png", "b.png", "a", "class1/c.png"]) == {
        0: [(0, 0, 1, 1)], 2: [(0, 0, 1, 1)], 3: [(1, 1, 1, 1)]}


def test_boxes_land_where_the_crop_and_resize_put_them():
    # crop rows 10..30, columns 20..60 (20 x 40 source pixels) resized to 8 x 8: 0.4 rows, 0.2 columns per pixel
    roi = np.array([[10, 30, 20, 60], [10, 30, 20, 60], [0, 8, 0, 8]])
    boxes = {"a.png": [(30, 15, 10, 5)],           # rows 15..20 -> 2..4, columns 30..40 -> 2..4
             "b.png": [(100, 100, 5, 5)],          # outside the crop: no mark
             "c.png": []}                          # annotated, no lesion
    masks, has, _ = boxes_to_masks(boxes, ["a.png", "b.png", "c.png", "d.png"], np.vstack([roi, roi[:1]]), 8)
    want = np.zeros((8, 8), np.uint8)
    want[2:4, 2:4] = 1
    assert np.array_equal(masks[0], want)
    assert masks[1].sum() == 0 and masks[2].sum() == 0 and masks[3].sum() == 0
    assert has.tolist() == [True, True, True, False]
    # a box straddling the crop's edge is clipped to it; a partly covered stored pixel counts
    m, _, _ = boxes_to_masks({"a.png": [(15, 9, 7.5, 2)]}, ["a.png"], roi[:1], 8)
    want = np.zeros((8, 8), np.uint8)
    want[0:1, 0:1] = 1  # rows 10..11 -> 0..0.4, columns 20..22.5 -> 0..0.5
    assert np.array_equal(m[0], want)


def test_boxes_of_the_source_lesion_masks_cover_the_prepared_lesion_masks(tmp_path):
    recs = synthesize(tmp_path / "src", 6, size=128, seed=3, abnormal_fraction=1.0, progress=False)
    boxes = {}
    for r in recs:
        if r.lesion_mask is None:
            continue
        shape = (128, 128)
        m = load_mask([r.lesion_mask], shape)
        ys, xs = np.nonzero(m)
        boxes[r.path.name] = [(xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())]
    assert len(boxes) == 6
    s = default_settings(32)
    s.update(roi_crop=True, base_size=64)
    prepare(tmp_path / "src", tmp_path / "set.h5", s, seed=0, progress=False)
    d = load_dataset(tmp_path / "set.h5")
    masks, has, _ = boxes_to_masks(boxes, list(d.names), d.roi_boxes, d.images.shape[-1])
    assert has.all()
    lesion = d.lesion_masks.astype(bool)
    assert lesion.any(axis=(1, 2)).sum() >= 4
    # every prepared lesion pixel lies inside its box's mask, and each side of the box lies within 2 stored
    # pixels of the lesion's own extent (floor / ceil at the box, the resize's rounding at the mask)
    assert not (lesion & ~masks.astype(bool)).any()
    for i in np.flatnonzero(lesion.any(axis=(1, 2))):
        ly, lx = np.nonzero(lesion[i])
        by, bx = np.nonzero(masks[i])
        assert abs(by.min() - ly.min()) <= 2 and abs(by.max() - ly.max()) <= 2, (i, by.min(), ly.min())
        assert abs(bx.min() - lx.min()) <= 2 and abs(bx.max() - lx.max()) <= 2, (i, bx.min(), lx.min())


def test_boxes_declared_in_another_image_size_are_scaled_to_the_source_image(tmp_path):
    # TBX11K's case: VOC boxes drawn on the 2000 x 1000 original, the image given is its 512 x 256 copy
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>tb1</filename><size><width>2000</width><height>1000</height></size>"
        "<object><bndbox><xmin>400</xmin><ymin>200</ymin><xmax>800</xmax><ymax>600</ymax></bndbox></object>"
        "</annotation>")
    b = read_boxes(tmp_path / "a.xml")
    assert b == {"tb1": [(400, 200, 400, 400)]} and b.frames == {"tb1": (2000.0, 1000.0)}
    roi = np.array([[0, 256, 0, 512]])                       # no crop; stored at 64 x 64
    masks, has, rescaled = boxes_to_masks(b, ["tb/tb1.png"], roi, 64, source_shapes=np.array([[256, 512]]))
    # x 400..800 of 2000 -> 102.4..204.8 of 512 -> columns 12.8..25.6 of 64 -> 12..26
    # y 200..600 of 1000 -> 51.2..153.6 of 256 -> rows 12.8..38.4 of 64 -> 12..39
    want = np.zeros((64, 64), np.uint8)
    want[12:39, 12:26] = 1
    assert np.array_equal(masks[0], want) and has.tolist() == [True] and rescaled.tolist() == [True]
    # the same file and image without source_shapes: the boxes are taken as given (old behaviour)
    same, _, r = boxes_to_masks(b, ["tb1.png"], roi, 64)
    assert not r.any() and same[0].sum() < want.sum()
    # a frame equal to the image's changes nothing and is not counted as rescaled
    _, _, r = boxes_to_masks(b, ["tb1.png"], np.array([[0, 1000, 0, 2000]]), 64, np.array([[1000, 2000]]))
    assert not r.any()


def test_coco_frames_zero_sizes_and_a_frame_conflict(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                       {"id": 2, "file_name": "b.png", "width": 0, "height": 0}],
            "annotations": [{"image_id": 1, "bbox": [10, 10, 20, 20]}, {"image_id": 2, "bbox": [1, 1, 2, 2]}]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    assert read_boxes(tmp_path / "a.json").frames == {"a.png": (100.0, 50.0)}   # 0 x 0 declares nothing
    coco["images"][0]["width"] = "wide"
    (tmp_path / "a.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match=r"images\[0\]: the image size .* is not two numbers"):
        read_boxes(tmp_path / "a.json")
    d = tmp_path / "voc"
    d.mkdir()
    for k, w in enumerate((512, 2048)):
        (d / f"{k}.xml").write_text(f"<annotation><filename>x.png</filename><size><width>{w}</width><height>{w}"
                                    f"</height></size></annotation>")
    with pytest.raises(InputError, match="x.png are given in two image sizes"):
        read_boxes(d)
