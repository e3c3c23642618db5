"""The release artifacts: the wheel built from this checkout carries the default models, the
sample, the assets, schemas, template and unit, and the version written once in
edge/__init__.py. (`make dist` also installs it into a clean venv and runs `emoedge demo`.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge import __version__
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (path,) = out.glob("emoedge-*.whl")
    return path


def test_the_wheel_carries_models_assets_and_one_version(wheel: Path) -> None:
    assert wheel.name == f"emoedge-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = [p.relative_to(REPO).as_posix() for p in (REPO / "edge").rglob("*")
               if p.is_file() and p.parts[len(REPO.parts) + 1] in
               ("models", "assets", "schemas", "templates", "systemd")]  # fmt: skip
    assert bundled and not sorted(set(bundled) - names)
    metadata = zipfile.ZipFile(wheel).read(f"emoedge-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata
    assert "Provides-Extra: edge" in metadata and "Provides-Extra: workstation" in metadata
