"""viz/report.py: the page parses (html.parser), has every section, and every embedded image decodes.

The last test renders the page in headless Chromium and asks the browser whether every image
loaded; it is skipped where no Chromium is installed (Debian: apt package chromium or
chromium-headless-shell).
"""
import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from rawcnn.app.report import ReportOptions, write_report
from rawcnn.engine.checkpoint import TrainingState, save_checkpoint

HISTORY = [{"epoch": e, "train_loss": 0.7 / e, "train_acc": 0.5 + 0.1 * e, "val_loss": 0.8 / e,
            "val_acc": 0.5 + 0.08 * e, "lr": 1e-3 if e < 3 else 1e-4, "seconds": 1.0, "images_per_s": 10.0}
           for e in range(1, 5)]


class Page(HTMLParser):
    """Collects tags, img sources, headings and checks that every opened tag is closed."""

    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.headings, self.tags, self._heading = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("h1", "h2", "h3"):
            self._heading = ""

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()
        if tag in ("h1", "h2", "h3"):
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data


def parse(path):
    p = Page()
    with open(path, encoding="utf-8") as fh:
        p.feed(fh.read())
    p.close()
    assert p.stack == [], p.stack
    return p


def decode_all(page):
    out = []
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]      # self-contained: no links out
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        im = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        assert im is not None and im.size > 0, img.get("alt")
        out.append(im)
    return out


@pytest.fixture
def run(tmp_path, square_net, write_square_set):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_checkpoint(run_dir / "best.h5", square_net(), state=TrainingState(epoch=4, history=HISTORY))
    return run_dir, write_square_set(tmp_path / "set.h5")


def test_full_report_parses_and_every_image_decodes(run, to_input):
    run_dir, data = run
    path = write_report(run_dir, data, options=ReportOptions(split="test", dream_steps=3, dream_octaves=2,
                                                            per_class=2, top_k=2), to_input=to_input)
    assert path == str(run_dir / "report.html")
    page = parse(path)
    for h in ("Training curves", "Evaluation (test)", "Filters", "Top channels", "Heat maps", "normal",
              "abnormal", "Dream images", "Localisation"):
        assert h in page.headings, (h, page.headings)
    images = decode_all(page)
    # curves, ROC, filters, activation grid, best channel, 2 heat-map montages, dreams
    assert len(images) == 8
    assert page.tags.count("table") >= 4                 # metrics, confusion, ranking, localisation
    text = open(path, encoding="utf-8").read()
    assert "gradcam" in text and "pointing" in text and "<td>nan</td>" not in text


def test_report_without_data_uses_the_run_files(run, tmp_path):
    run_dir, _ = run
    (run_dir / "eval.json").write_text(json.dumps({"n": 4, "accuracy": 0.75, "auc": 0.8,
                                                   "confusion_matrix": [[2, 0], [1, 1]]}))
    out = write_report(run_dir, None, out=tmp_path / "r" / "page.html",
                       options=ReportOptions(dream_steps=2, dream_octaves=1))
    page = parse(out)
    assert "Top channels" not in page.headings and "Dream images" in page.headings
    assert len(decode_all(page)) == 3                    # curves, filters, dreams
    assert "0.75" in open(out, encoding="utf-8").read()


def test_report_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no best.h5 or last.h5"):
        write_report(tmp_path)


CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-headless-shell", "chromium-browser",
                                             "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt package chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path, to_input):
    run_dir, data = run
    page = open(write_report(run_dir, data, options=ReportOptions(dream_steps=2, dream_octaves=1), to_input=to_input),
                encoding="utf-8").read()
    # after the load event, the body records each image's decoded width (0 = broken)
    probe = ("<script>window.addEventListener('load', () => document.body.setAttribute('data-widths', "
             "Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0).join(',')));</script>")
    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--disable-background-networking", "--disable-component-update", "--no-first-run",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", check.as_uri()], capture_output=True, text=True, timeout=120).stdout
    widths = re.search(r'data-widths="([0-9,]*)"', dom)
    assert widths, dom[:500]
    assert [int(w) > 0 for w in widths.group(1).split(",")] == [True] * 8
