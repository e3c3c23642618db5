"""Without the workstation extra (torch and matplotlib made unimportable in a fresh
interpreter) every workstation command names the extra and exits 2, without a traceback;
`export` of a file that is no checkpoint says so (exit 5)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.core.errors import ModelError, UsageError
from tests.conftest import REPO

WITHOUT_WORKSTATION = (
    "import sys\n"
    "for name in ('torch', 'matplotlib'):\n"
    "    sys.modules[name] = None  # import raises ModuleNotFoundError, as when not installed\n"
    "from edge.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _emoedge_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_WORKSTATION, *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["distill", "--epochs", "1"],
        ["evaluate", "edge/models/default/onnx-int8"],
        ["export", "distill/checkpoints/student.pt"],
        ["bench", "edge/models/default", "--threads", "1", "--out", "never-written"],
    ],
    ids=lambda a: a[0],
)
def test_a_missing_extra_is_named_with_exit_2(args: list[str]) -> None:
    result = _emoedge_without_torch(*args)
    assert result.returncode == UsageError.exit_code, result.stderr
    assert "needs the 'workstation' extra" in result.stderr
    assert "pip install 'emoedge[workstation]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (REPO / "never-written").exists()


def test_export_of_a_non_checkpoint_says_so(tmp_path) -> None:
    result = _emoedge_without_torch("export", str(REPO / "README.md"), "--out", str(tmp_path))
    assert result.returncode == ModelError.exit_code
    assert "is not a PyTorch checkpoint" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr
