"""Image files a colour (ImageNet-style) checkpoint reads get the grey path's guards: a FIFO is
refused before anything opens it, and a header declaring 65535 x 65535 pixels is refused from the
header, with one line naming the file (before, the colour path opened the FIFO to look for a
DICOM marker, blocking forever, and handed the huge header to OpenCV)."""
import os
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import save_checkpoint
from rawcnn.engine.models import build


@pytest.fixture(scope="module")
def colour_ck(tmp_path_factory, tiny_conv_spec):
    d = tmp_path_factory.mktemp("colour")
    pre = Preprocessing(channel_order="BGR", mean=(103.9, 116.8, 123.7), input_size=(32, 32), resize="direct",
                        name="test-colour", decode="color")
    save_checkpoint(d / "colour.h5", build(tiny_conv_spec, seed=0, weight_std="he"), preprocessing=pre.to_dict(),
                    meta={"class_names": ["a", "b"]})
    return d / "colour.h5"


def _predict(ck, image, timeout=30):
    out = {}

    def run():
        out["r"] = CliRunner().invoke(main, ["predict", "--checkpoint", str(ck), str(image)])
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"predict on {image} did not return within {timeout} s"
    return out["r"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_unopened_by_a_colour_checkpoint(colour_ck, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    r = _predict(colour_ck, fifo, timeout=20)
    assert r.exit_code == 1 and "internal error" not in r.output
    assert f"{fifo}: not a regular file (a FIFO)" in r.output, r.output


def test_a_huge_png_header_is_refused_from_the_header_by_a_colour_checkpoint(colour_ck, tmp_path):
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = struct.pack(">II", 65535, 65535)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)  # its CRC, fixed
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    r = _predict(colour_ck, path)
    assert r.exit_code == 1 and "internal error" not in r.output, r.output
    assert f"{path}: the header declares 65535 x 65535 pixels" in r.output, r.output
    assert len([line for line in r.output.splitlines() if line.startswith("Error:")]) == 1
