"""`corpus report RUN` writes a self-contained page that a real browser (headless Chromium) renders
with every plot and no console error; `corpus run` ends by writing it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def render(page: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console messages) of a page rendered by headless Chromium."""
    res = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    return res.stdout, console


def test_console_check_catches_errors(tmp_path):
    """The console check is real: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    _, console = render(bad)
    assert any("boom" in line for line in console) and any("notDefined" in line for line in console)


def test_default_run_writes_report(default_run):
    page = default_run.out / "report" / "index.html"
    assert page.is_file()
    assert f"report: {page}" in default_run.stdout


def test_report_renders_with_plots_and_no_console_errors(default_run):
    page = default_run.out / "report" / "index.html"
    dom, console = render(page)
    assert console == []
    loaded = int(re.search(r'data-plots-loaded="(\d+)"', dom).group(1))
    total = int(re.search(r'data-plots-total="(\d+)"', dom).group(1))
    assert total >= 8 and loaded == total
    for section in ("composition", "funnel", "table6", "decontamination", "teacher", "sampling", "rl", "browser"):
        assert f'id="{section}"' in dom
    assert 'class="thumb"' in dom  # image thumbnails in the sample browser


def test_report_is_self_contained(default_run):
    text = (default_run.out / "report" / "index.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<link" not in text
    assert all(src.startswith("data:image/") for src in re.findall(r'<img[^>]* src="([^"]+)"', text))


def test_report_shows_example_rows_per_drop_reason(default_run):
    out = default_run.out
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    dropped = pl.read_parquet(out / "ingest" / "dropped" / "*.parquet")
    leak = dropped.filter(pl.col("drop_reason").str.starts_with("leak:"))
    assert leak.height
    for reason in leak["drop_reason"].unique().to_list():  # one block per benchmark leaked into
        rows = leak.filter(pl.col("drop_reason") == reason)
        block = text.split(f"<summary>{reason}: {rows.height} rows</summary>", 1)[1].split("</details>")[0]
        for row_id in rows["id"].to_list():
            assert row_id in block
    filt = pl.read_parquet(out / "filter" / "dropped" / "*.parquet")
    for reason in filt["drop_reason"].unique().to_list():
        assert f"<summary>{reason}: " in text
    # Table 6 beside the paper's figures
    assert "63799" in text and "353440" in text


def test_report_command_on_a_copy(default_run, tmp_path, run_cli):
    """`corpus report` on its own (re)writes the page; a missing run is a clear error."""
    res = run_cli("report", str(default_run.out), "--rows", "2", env=default_run.env)
    assert "index.html" in res.stdout
    bad = run_cli("report", str(tmp_path / "nope"), env=default_run.env, check=False)
    assert bad.returncode == 2 and "no run directory" in bad.stderr
