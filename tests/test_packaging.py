"""The package works installed, from a bare copy of plugin/personalized, and as a command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import personalized

PLUGIN = Path(personalized.__file__).parent


def test_bare_copy_imports_with_only_torch(tmp_path: Path) -> None:
    shutil.copytree(PLUGIN, tmp_path / "personalized", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys\n"
        "import personalized\n"
        "assert personalized.__file__.startswith(sys.argv[1]), personalized.__file__\n"
        "optional = {'yaml', 'bitsandbytes', 'prodigyopt', 'safetensors'} & set(sys.modules)\n"
        "assert not optional, optional\n"
        "print(len(personalized.available()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(personalized.available()))


def test_list_command_prints_every_optimizer() -> None:
    result = subprocess.run([sys.executable, "-m", "personalized", "list"], capture_output=True, text=True, check=True)
    for name in personalized.available():
        assert any(line.startswith(name + " ") for line in result.stdout.splitlines())


def test_bad_command_exits_2_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "personalized", "lsit"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("personalized")]
    assert len(ours) == 1 and ours[0].startswith("personalized: error: argument command: invalid choice: 'lsit'")


def test_console_script_is_installed() -> None:
    script = shutil.which("personalized", path=str(Path(sys.executable).parent))
    assert script is not None
    assert subprocess.run([script, "list"], capture_output=True, check=False).returncode == 0
