"""--report: one self-contained HTML page; a real browser (headless Chromium) loads every figure."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from analysis_files import PNG, write_run
from PIL import Image

from mpihybrid.analysis.report import write_report
from mpihybrid.analysis.runs import load_runs
from mpihybrid.analysis.targets import Target

TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # the first two groups' colours in every figure
WINDOW = (1280, 3000)


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]


@pytest.fixture
def report(tmp_path):
    files = [
        write_run(tmp_path / f"d{s}.h5", config={"seed": s, "zo": {"perturbations": 5}}, rate=0.05 * s) for s in (1, 2)
    ]
    files.append(write_run(tmp_path / "fa.h5", algorithm="fedavg", config={"seed": 0}, bytes_per_step=9640))
    runs, _ = load_runs([str(f) for f in files])
    problems = ["bad.h5: no such file"]
    return write_report(runs, tmp_path / "report", Target("test_accuracy", ">=", 0.5), problems=problems)


def test_the_page_holds_tables_and_every_figure_and_needs_nothing_else(report):
    text = report.read_text()
    page = Page(text)
    figures = sorted(report.parent.glob("*.png"))
    images = page.all("img")
    assert len(figures) == 4 and len(images) == len(figures)  # comparison, train_loss, test_accuracy, uplink
    assert all(a["src"].startswith("data:image/png;base64,") and a["alt"] for a in images)
    embedded = {base64.b64decode(a["src"].split(",", 1)[1]) for a in images}
    assert embedded == {png.read_bytes() for png in figures} and all(data[:8] == PNG for data in embedded)
    assert not page.all("script") and not page.all("link") and "http://" not in text and "https://" not in text
    words = " ".join(page.text)
    for expected in ("decomfl seed=1", "decomfl seed=2", "fedavg", "decomfl (2 seeds)", "bad.h5: no such file"):
        assert expected in words
    assert "zo.perturbations" in words  # the full config of each run


def chromium() -> str:
    """The Chromium binary; installed with apt where missing if we can, else the test skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "headless Chromium is not installed and cannot be (needs root and apt-get): apt-get install chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"could not install Chromium ({' '.join(cmd)}): {done.stderr.strip()[-300:]}")
    return shutil.which("chromium") or pytest.skip("apt-get installed chromium but it is not on PATH")


def headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
        ]
        done = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


# Added to a copy of the page only: the report itself has no script.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((img) => img.complete && img.naturalWidth > 0);
  document.body.dataset.images = images.length + "/" + decoded.length;
});
</script></body>"""


def loaded_images(browser: str, page: Path) -> str:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE))
    dom = headless(browser, "--dump-dom", probe.as_uri()).stdout
    return Page(dom).all("body")[0].get("data-images", "no load event")


def test_a_browser_loads_every_figure_and_renders_the_page(report, tmp_path):
    browser = chromium()
    figures = len(list(report.parent.glob("*.png")))
    assert loaded_images(browser, report) == f"{figures}/{figures}"
    # the probe can fail: a page whose images do not decode is caught
    broken = report.with_name("broken.html")
    broken.write_text(report.read_text().replace("base64,iVBOR", "base64,AAAA"))
    assert loaded_images(browser, broken) == f"{figures}/0"
    shot = tmp_path / "screenshot.png"
    headless(
        browser, f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", f"--screenshot={shot}", report.as_uri()
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (WINDOW[1], WINDOW[0], 3)
    for colour in (TAB_BLUE, TAB_ORANGE):  # the figures' lines are on screen, not just the tables
        assert (np.abs(pixels - colour).sum(axis=2) < 30).sum() > 500, colour
