"""The README's dcmtk lines work as written (issue 14 defect 10)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from noctis_pacs.core.settings import load_settings
from tests.conftest import ROOT, RunningServer

README = (ROOT / "README.md").read_text()

#: Bundled files by folder, as the README's lines name them.
FOLDERS = {
    "~/jpegll": ["SC_rgb_jpeg_gdcm.dcm"],
    "~/j2k": ["MR_small_jp2klossless.dcm"],
    "~/rle": ["MR_small_RLE.dcm", "SC_rgb_rle.dcm"],
}


def _storescu_lines() -> list[str]:
    return [
        line.split("#")[0].strip()
        for line in README.splitlines()
        if line.startswith("storescu ") and any(folder in line for folder in FOLDERS)
    ]


@pytest.mark.dcmtk
@pytest.mark.parametrize("line", _storescu_lines())
def test_readme_storescu_line_stores_compressed_files(
    line: str, server: RunningServer, tmp_path: Path
) -> None:
    folder = next(name for name in FOLDERS if line.endswith(name))
    target = tmp_path / "in"
    target.mkdir()
    sops = []
    for name in FOLDERS[folder]:
        source = get_testdata_file(name, download=False)
        assert source is not None, name
        shutil.copy(source, target / name)
        sops.append(dcmread(source, stop_before_pixels=True).SOPInstanceUID)
    args = line.replace("localhost 4242", f"127.0.0.1 {server.dimse_port}")
    args = args.replace(folder, str(target))
    result = subprocess.run(args.split(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for sop in sops:
        found = httpx.get(
            f"{server.dicomweb_url}/instances", params={"SOPInstanceUID": sop}, timeout=30
        )
        assert found.status_code == 200 and found.json(), (line, sop)


def test_readme_remote_block_registers_a_move_destination(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(\[dimse\.remotes\.[^`]*)```", README)
    assert block is not None
    config = tmp_path / "noctis.toml"
    config.write_text(block.group(1))
    tomllib.loads(block.group(1))
    remote = load_settings(config, environ={}).dimse.remotes["WORKSTATION"]
    assert (remote.ae_title, remote.host, remote.port) == ("WS1", "10.0.0.20", 104)
    assert "-aem WS1" in README
