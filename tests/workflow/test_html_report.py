"""`snakemake --report report.html` on the tiny run: one self-contained file with the report's
figures and tables, and the heatmap really renders in a headless browser (Debian's chromium)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smk_helpers import copy_workdir, run_snakemake

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (as root)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get cannot be run here: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True,
                          env=env, timeout=900)
    if proc.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True,
                              env=env, timeout=900)
    assert proc.returncode == 0, f"apt-get install -y chromium failed:\n{proc.stderr[-3000:]}"
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but no `chromium` on PATH"
    return found


def screenshot(browser: str, page: Path, png: Path, tmp: Path, size=(1000, 800)) -> np.ndarray:
    profile = tmp / f"profile-{png.stem}"
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
           f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def html_report(request, tmp_path_factory) -> tuple[Path, Path]:
    # $CLOAKBENCH_TINY_RUN: a finished working directory of the tiny config to reuse (debugging)
    src = os.environ.get("CLOAKBENCH_TINY_RUN")
    src = Path(src) if src else request.getfixturevalue("tiny_run")
    work = copy_workdir(src, tmp_path_factory.mktemp("report") / "work")
    out = work / "report.html"
    run_snakemake(work, "--report", str(out), timeout=600)
    return work, out


def test_every_table_section_becomes_one_html_file(tmp_path):
    from cloakbench.report.render import write_html_tables

    md = "\n".join([
        "# cloakbench report", "", "intro", "",
        "## Timeline: which extractors each cloak knew", "", "| cloak | a |", "|---|---|", "| pgd | x |", "",
        "## Protection", "", "### knn1", "", "| cloak | sface |", "|---|---|", "| pgd | **0.9** |", "",
        "![protection heatmap](figures/protection_heatmap.png)", "",
        "## The adaptive trainer", "", "no table here", "", "### Robust training", "",
        "| model | epochs |", "|---|---|", "| r | 2 |", "",
        "## Dataset: how recognisable its identities are", "", "| extractor | acc |", "|---|---|", "| sface | 1 |"])
    written = write_html_tables(md, tmp_path / "tables")
    assert [p.name for p in written] == [
        "protection__01-timeline-which-extractors-each-cloak-knew.html", "protection__02-knn1.html",
        "adaptive__03-robust-training.html", "dataset__04-dataset-how-recognisable-its-identities-are.html"]
    page = written[1].read_text()
    assert "<table>" in page and "<strong>0.9</strong>" in page and "<h3>knn1</h3>" in page
    assert "protection_heatmap" not in page  # figures are report items of their own


# how Snakemake 9 embeds a PNG: data:image/png;charset=utf8;filename=<name>;base64,<data>
PNG_URI = re.compile(r"data:image/png;(?:[^,;\"']+;)*base64,([A-Za-z0-9+/=]+)")


def embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m.group(1)) for m in PNG_URI.finditer(text)]


@pytest.mark.slow
def test_report_is_one_self_contained_file_with_every_part(html_report):
    work, out = html_report
    text = out.read_text()
    # every table of report.md is a report item of its own, in the report's categories
    tables = sorted(p.name for p in (work / "results" / "report" / "tables").glob("*.html"))
    assert any(n.startswith("protection__") for n in tables), tables
    assert any("cloak-budgets" in n for n in tables) and any("transfer" in n for n in tables), tables
    assert any(n.startswith("adaptive__") for n in tables) and any(n.startswith("dataset__") for n in tables)
    for name in tables:
        assert name in text, f"{name} is not in the HTML report"
    for figure in ("protection_heatmap.png", "examples.png", "detection_roc.png", "combinations.png",
                   "contact_sheet.png"):
        assert figure in text, f"{figure} is not in the HTML report"
    for cat in ("protection", "cloaks", "adaptive", "dataset"):
        assert f'"{cat}"' in text or f"'{cat}'" in text or cat in text
    assert "Protection rate (1 - accuracy" in text  # a caption
    # self-contained: the figures are embedded, nothing is loaded from a results/ path
    heatmap_bytes = (work / "results" / "figures" / "protection_heatmap.png").read_bytes()
    assert heatmap_bytes in embedded_pngs(text), "the heatmap PNG is not embedded byte for byte"
    assert not re.search(r"""(src|href)=["'](results/|file:)""", text)
    assert (work / "results" / "report.md").is_file()


@pytest.mark.slow
def test_heatmap_renders_in_a_headless_browser(html_report, tmp_path):
    work, out = html_report
    browser = chromium()
    text = out.read_text()
    heatmap = (work / "results" / "figures" / "protection_heatmap.png").read_bytes()
    uri = next(m.group(0) for m in PNG_URI.finditer(text) if base64.b64decode(m.group(1)) == heatmap)
    # a page holding only the heatmap image exactly as embedded in the report, and a blank page
    page = tmp_path / "heatmap.html"
    page.write_text(f'<html><body style="margin:0;background:#fff"><img id="h" src="{uri}"></body></html>')
    blank = tmp_path / "blank.html"
    blank.write_text('<html><body style="margin:0;background:#fff"></body></html>')
    shot = screenshot(browser, page, tmp_path / "heatmap.png", tmp_path)
    empty = screenshot(browser, blank, tmp_path / "blank.png", tmp_path)
    assert (empty >= 250).all(), "the blank page is not blank"
    ref = np.asarray(Image.open(io.BytesIO(heatmap)).convert("RGB")).astype(int)
    h, w = min(ref.shape[0], shot.shape[0]), min(ref.shape[1], shot.shape[1])
    region = shot[:h, :w]
    changed = np.abs(region - empty[:h, :w]).sum(2) > 30
    assert changed.mean() > 0.05, "the heatmap did not render (screenshot as blank as a blank page)"
    # the heatmap's own colours (its cells, not the white margin or black text) appear where it is drawn
    sat = ref.max(2) - ref.min(2)
    colours = ref[sat > 60]
    assert len(colours) > 500, "the heatmap has no coloured cells"
    # the image is drawn at 1:1 at the top left: its pixels match the screenshot's
    diff = np.abs(region - ref[:h, :w]).mean()
    assert diff < 8, f"the rendered heatmap differs from the PNG (mean |diff| {diff:.1f})"
    shot_sat = region.max(2) - region.min(2)
    assert (shot_sat > 60).sum() > 0.8 * (sat[:h, :w] > 60).sum()


@pytest.mark.slow
def test_report_page_renders_in_a_headless_browser(html_report, tmp_path):
    """The report itself (Snakemake's single-page app) draws something, not a blank page."""
    _, out = html_report
    browser = chromium()
    shot = screenshot(browser, out, tmp_path / "report.png", tmp_path, size=(1200, 900))
    non_white = (shot < 240).any(2)
    assert non_white.mean() > 0.02, "the HTML report rendered as a blank page"
