"""Every README's install route, followed offline in a fresh venv, and the install commands' manners.

The fresh venv has nothing installed. Through a ``.pth`` file it sees a folder of links to torch
and its dependencies (setuptools among them), pip, and what a trainer's environment already has
(PyYAML; pytorch-optimizer for diffusion-pipe), all taken from this environment: pip then
installs from a copy of the checkout with ``--no-index --no-build-isolation``, without a network.
bitsandbytes and prodigyopt stay out, as on a fresh machine.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import kohya_standin
import pytest
import torch

from personalized.cli import main

ROOT = Path(__file__).resolve().parent.parent
CLONE_PLACEHOLDER = "/path/to/personalized-optimizers"
OFFLINE = ["--no-index", "--no-build-isolation"]
#: Not part of a clone, or not needed to install one.
NOT_IN_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "bench-*", "tests"
)


def _offline_prerequisites() -> str | None:
    """Why the fresh-venv tests cannot run here, or None."""
    for name in ("torch", "pip", "setuptools", "pyyaml", "packaging"):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return f"needs {name} installed in this environment, to lend it to the fresh venv without a network"
    if sys.platform == "win32":
        return "the fresh venv is built with POSIX links and a bin/ folder"
    return None


MISSING = _offline_prerequisites()
needs_fresh_venv = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _distributions(names: list[str]) -> list[importlib.metadata.Distribution]:
    """``names`` and everything they require (without extras), as installed here."""
    from packaging.requirements import Requirement

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        key = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if key in found:
            continue
        found[key] = distribution = importlib.metadata.distribution(key)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def fresh_venv(folder: Path, lend: list[str]) -> Path:
    """A venv in ``folder`` seeing only torch, pip, ``lend`` and their requirements; its Python."""
    lent = folder / "lent"
    lent.mkdir(parents=True)
    for distribution in _distributions(["torch", "pip", *lend]):
        for top in {Path(str(file)).parts[0] for file in distribution.files or []}:
            source = Path(distribution.locate_file(top))
            if top not in ("..", "__pycache__") and source.exists() and not (lent / top).exists():
                (lent / top).symlink_to(source)
    venv.EnvBuilder(with_pip=False).create(folder / "venv")
    python = folder / "venv" / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "lent.pth").write_text(f"{lent}\n", encoding="utf-8")
    return python


def run(command: list[str | Path], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's files, as a fresh clone has them."""
    folder = tmp_path_factory.mktemp("clone") / "personalized-optimizers"
    shutil.copytree(ROOT, folder, ignore=NOT_IN_CLONE)
    return folder


def code_lines(readme: str) -> list[list[str]]:
    """The lines of each fenced code block (indented blocks in lists included)."""
    return [block.strip("\n").splitlines() for block in re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.S)]


def install_block(readme: str) -> tuple[str, str]:
    """The README's pip line that installs from a clone, and the command that comes after it."""
    for lines in code_lines(readme):
        commands = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        for index, line in enumerate(commands[:-1]):
            if "-m pip install" in line and CLONE_PLACEHOLDER in line:
                return line, commands[index + 1]
    raise AssertionError("no code block with a pip line installing from a clone, and a command after it")


def substituted(line: str, python: Path, places: dict[str, str | Path]) -> list[str]:
    """``line`` as words, with the interpreter, the ``personalized`` command and the placeholders replaced."""
    for placeholder in sorted(places, key=len, reverse=True):
        line = line.replace(placeholder, str(places[placeholder]))
    words = shlex.split(line, comments=True)
    if words[0].endswith(("python", "python.exe")):
        words[0] = str(python)
    elif words[0] == "personalized":
        words[0] = str(python.parent / "personalized")
    if words[1:3] == ["-m", "pip"] and words[3] in ("install", "wheel"):
        words[4:4] = OFFLINE
    return words


#: Each README whose install route the test follows, with what a trainer's environment already has.
ROUTES = {
    "README.md": [],
    "integrations/kohya/README.md": [],
    "integrations/onetrainer/README.md": [],
    "integrations/rvc/README.md": [],
    "integrations/diffusion_pipe/README.md": ["pytorch-optimizer"],
    "nodes/README.md": [],
}


@needs_fresh_venv
@pytest.mark.parametrize("readme", list(ROUTES))
def test_readme_install_route_works_offline_in_a_fresh_venv(readme: str, clone: Path, tmp_path: Path) -> None:
    text = (ROOT / readme).read_text(encoding="utf-8")
    code = "\n".join(line for lines in code_lines(text) for line in lines)
    assert not re.search(r"pip install [\"']?personalized-optimizers\b", code), "names a release that does not exist"
    python = fresh_venv(tmp_path, ["pyyaml", *ROUTES[readme]])
    (tmp_path / "sd-scripts").mkdir()
    (tmp_path / "sd-scripts" / "train_network.py").write_text("", encoding="utf-8")
    onetrainer = tmp_path / "OneTrainer"
    shutil.copytree(ROOT / "tests" / "onetrainer_standin", onetrainer)
    places: dict[str, str | Path] = {
        CLONE_PLACEHOLDER: clone,
        "/path/to/sd-scripts": tmp_path / "sd-scripts",
        "/path/to/OneTrainer/venv/bin/python": python,
        "/path/to/OneTrainer": onetrainer,
        "/path/to/RVC/.venv/bin/python": python,
        "ComfyUI/custom_nodes/personalized-optimizers": clone / "nodes",
    }
    pip_line, after = install_block(text)
    run(substituted(pip_line, python, places), cwd=tmp_path)
    result = run(substituted(after, python, places), cwd=tmp_path)
    assert "Traceback" not in result.stderr
    if after.startswith("personalized presets"):  # bitsandbytes and prodigyopt are not installed
        assert re.search(r"^default/AdamW8bitKahan +AdamW8bitKahan ", result.stdout, flags=re.M)
        assert re.search(r"^default/Prodigy +Prodigy ", result.stdout, flags=re.M)


@needs_fresh_venv
def test_readme_wheel_route_works_offline(clone: Path, tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    build = re.search(r"`(python -m pip wheel [^`]*)`", text).group(1)
    wheel_name = re.search(r"`dist/([^`]*\.whl)`", text).group(1)
    install = re.search(r"`(python -m pip install [^`]*\.whl\[presets\][^`]*)`", text).group(1)
    python = fresh_venv(tmp_path, ["pyyaml"])
    run(substituted(build, python, {}), cwd=clone)
    carried = tmp_path / wheel_name
    shutil.copy(clone / "dist" / wheel_name, carried)
    run(substituted(install, python, {}), cwd=tmp_path)
    result = run([python.parent / "personalized", "export", "default/Prodigy", "--to", "kohya-args"], cwd=tmp_path)
    assert "--optimizer_type personalized.Prodigy" in result.stdout


@needs_fresh_venv
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to stand in for the hosted repository")
def test_readme_git_route_works_offline(clone: Path, tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    line = re.search(r"`(python -m pip install \"personalized-optimizers\[presets\] @ git\+[^`]*)`", text).group(1)
    hosted = tmp_path / "hosted"
    shutil.copytree(clone, hosted, ignore=NOT_IN_CLONE)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-C", hosted]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        run([*git, *command], cwd=tmp_path)
    python = fresh_venv(tmp_path, ["pyyaml"])
    hosted_url = f"file://localhost{hosted}"  # pip refuses a name @ file:/// URL
    run(substituted(line, python, {"https://github.com/OWNER/personalized-optimizers": hosted_url}), cwd=tmp_path)
    assert run([python.parent / "personalized", "presets", "show", "rvc/FCompass"], cwd=tmp_path).stdout


@needs_fresh_venv
def test_install_commands_from_a_clone_work_or_say_how(clone: Path, tmp_path: Path) -> None:
    """``python -m personalized install ...`` in the clone's plugin folder, nothing installed."""
    python = fresh_venv(tmp_path, ["pyyaml"])
    trainer = tmp_path / "sd-scripts"
    trainer.mkdir()
    (trainer / "train_network.py").write_text("", encoding="utf-8")
    result = run([python, "-m", "personalized", "install", "kohya", trainer], cwd=clone / "plugin")
    assert f"copied the presets to {trainer / 'personalized' / '_presets'}" in result.stdout
    copied = "import personalized; print(personalized.__file__, personalized.presets.load('rvc/FCompass').optimizer)"
    used = run([python, "-c", copied], cwd=trainer).stdout.split()
    assert Path(used[0]).is_relative_to(trainer) and used[1] == "FCompass"

    refused = run([python, "-m", "personalized", "install", "onetrainer"], cwd=clone / "plugin", check=False)
    ours = [line for line in refused.stderr.splitlines() if line.startswith("personalized")]
    assert refused.returncode == 2 and len(ours) == 1 and "Traceback" not in refused.stderr
    command = re.search(r"run `([^`]*)` first", ours[0]).group(1)
    assert command == f"{python} -m pip install {clone}"
    run(substituted(command, python, {}), cwd=tmp_path)
    assert "wrote" in run([python, "-m", "personalized", "install", "onetrainer"], cwd=clone / "plugin").stdout


def test_kohya_usage_line_pastes_into_a_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "kohya"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "--optimizer_type" in line).strip()
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", "-c", f"accelerate launch train_network.py {line}"]).returncode == 0
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    optimizer, _ = kohya_standin.from_command_line(shlex.split(line), params)
    assert optimizer.defaults["betas"] == (0.9, 0.99) and optimizer.defaults["weight_decay"] == 0.1


def test_kohya_copy_carries_the_presets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train_network.py").write_text("", encoding="utf-8")
    assert main(["install", "kohya", str(tmp_path)]) == 0
    code = "import personalized; print(personalized.__file__); print(personalized.presets.load('rvc/FCompass').lr)"
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert Path(result.stdout.split()[0]).is_relative_to(tmp_path)
    assert float(result.stdout.split()[1]) > 0
