"""The HF export's own validation leaves no file behind (no cache-*.arrow in the folder or the manifest)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from filter_factory import stored_image, synth_row, write_synthesized

from corpus.stages import filter as filter_stage
from corpus.store import StageDir


@pytest.mark.parametrize("hf_images", ["embed", "path"])
def test_hf_export_validates_without_leaving_cache_files(run_dir, recipe, tmp_path, hf_images):
    img = stored_image(run_dir, 1)
    rows = [synth_row(0), synth_row(1, source="unsafebench", modality="image", prompt=None, images=[img],
                                    request_label="unharmful")]
    write_synthesized(run_dir, [rows])
    filter_stage.run(recipe, run_dir)
    rec = tmp_path / "r.yaml"
    rec.write_text(yaml.safe_dump({"name": "hf-clean", "export": {"formats": ["hf"], "hf_images": hf_images}}))
    proc = subprocess.run([sys.executable, "-m", "corpus.cli", "export", str(rec), "--out", str(run_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = StageDir(run_dir, "export").manifest()
    assert m["validated"] and m["exports"]["hf"]["rows"] == 2
    hf = run_dir / "export" / "hf"
    on_disk = sorted(p.relative_to(run_dir / "export").as_posix() for p in hf.rglob("*") if p.is_file())
    assert on_disk and not [p for p in on_disk if "cache-" in p]
    assert sorted(f["path"] for f in m["files"] if f["path"].startswith("hf/")) == on_disk
    assert not (run_dir / "export" / "_check_cache").exists()
