"""The RVC integration against RVC's real contract.

RVC's training script is reproduced by tests/rvc_standin/train.py (the calls
it makes around its optimizers, see its docstring). The stand-in runs in a
scratch virtual environment whose site-packages holds the ``personalized-rvc.pth``
that ``install()`` writes, so the hook is loaded by the interpreter's own
start-up ``.pth`` processing, in the main process and in the spawned worker
alike. Two runs (a spawned worker, and an in-process run resuming an AdamW
checkpoint) start together once per module; the other tests are in-process or
plain interpreters without torch.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import site
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from personalized_hooks import rvc as hook

import personalized
from personalized import guarding
from personalized.cli import main
from personalized.integrations import pth, rvc

STANDIN = Path(__file__).parent / "rvc_standin"
#: torch's own AdamW (the pytest process never has the hook active).
TORCH_ADAMW = torch.optim.AdamW
GAMMA = 0.999875
#: The train section of RVC's configs/v2/48k.json, as far as the stand-in reads it.
RVC_TRAIN = {"seed": 1234, "learning_rate": 1e-4, "betas": [0.8, 0.99], "eps": 1e-9, "lr_decay": GAMMA}


def load_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rvc_standin_models", STANDIN / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


models = load_models()


def clean_environ(**extra: str) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PERSONALIZED_RVC_")}
    return {**environ, **extra}


# -- the scratch environment and the stand-in runs ----------------------------------------------


@pytest.fixture(scope="module")
def rvc_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A scratch venv that reaches this environment's packages, with personalized-rvc.pth written by install()."""
    root = tmp_path_factory.mktemp("rvc-venv")
    venv.create(root, with_pip=False, symlinks=os.name != "nt")
    python = str(root / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    bridge = f"import site; list(map(site.addsitedir, {site.getsitepackages()!r}))\n"
    Path(purelib, "00-test-bridge.pth").write_text(bridge, encoding="utf-8")
    lines = rvc.install(None, python)
    assert lines[0] == f"wrote {Path(purelib) / 'personalized-rvc.pth'}"
    return python


def rvc_folder(root: Path, layout: str, experiment: str, config: dict[str, Any]) -> Path:
    """An RVC-like folder: the stand-in script at ``layout`` and logs/<experiment>/config.json."""
    script = root / layout
    script.parent.mkdir(parents=True)
    for name in ("train.py", "models.py"):
        shutil.copy(STANDIN / name, script.parent / name)
    logs = root / "logs" / experiment
    logs.mkdir(parents=True)
    (logs / "config.json").write_text(json.dumps(config, indent=4), encoding="utf8")
    return logs


def adamw_checkpoint(net: torch.nn.Module, learning_rate: float, iteration: int) -> dict[str, Any]:
    """What RVC's save_checkpoint stores after training ``net`` with its AdamW, one scheduler step done."""
    optimizer = TORCH_ADAMW(net.parameters(), learning_rate, betas=RVC_TRAIN["betas"], eps=RVC_TRAIN["eps"])
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA, last_epoch=-1)
    net(torch.randn(4, 8)).square().mean().backward()
    optimizer.step()
    scheduler.step()
    return {
        "model": net.state_dict(),
        "iteration": iteration,
        "optimizer": optimizer.state_dict(),
        "learning_rate": learning_rate,
    }


def write_adamw_checkpoints(logs: Path, learning_rate: float, iteration: int) -> None:
    for prefix, net in zip("GD", models.make_nets()):
        torch.save(adamw_checkpoint(net, learning_rate, iteration), logs / f"{prefix}_{iteration}.pth")


@dataclass
class Run:
    """A finished stand-in training run; :meth:`report` reads what one of its processes wrote."""

    logs: Path
    returncode: int
    stderr: str

    def report(self, process: str) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        return json.loads((self.logs / f"report-{process}.json").read_text(encoding="utf8"))


@pytest.fixture(scope="module")
def runs(rvc_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Both stand-in runs, started together.

    * ``spawn``: current layout, one spawned worker; config.json names the
      preset rvc/FCompass with optimizer_args, the environment names another
      optimizer (config.json must win).
    * ``resume``: older layout, trains in the main process; the environment
      names the bare optimizer FCompass, config.json names none; the
      experiment holds AdamW checkpoints at epoch 2 (RVC's resume path).
    * ``guard``: current layout, one spawned worker; RVC's own AdamW at lr 1e6
      (NaN from the second epoch), no optimizer chosen, the environment sets
      the NaN guard to ``stop``.
    """
    spawn_root = tmp_path_factory.mktemp("rvc-spawn")
    spawn_config = {
        "train": {**RVC_TRAIN, "optimizer": "rvc/FCompass", "optimizer_args": {"weight_decay": 0.05}},
        "standin": {"spawn": True},
    }
    spawn_logs = rvc_folder(spawn_root, "train/train.py", "voice", spawn_config)
    resume_root = tmp_path_factory.mktemp("rvc-resume")
    resume_config = {"train": {**RVC_TRAIN, "learning_rate": 2e-4}, "standin": {"spawn": False}}
    resume_logs = rvc_folder(resume_root, "infer/modules/train/train.py", "voice", resume_config)
    write_adamw_checkpoints(resume_logs, 2e-4, iteration=2)
    guard_root = tmp_path_factory.mktemp("rvc-guard")
    guard_config = {"train": {**RVC_TRAIN, "learning_rate": 1e6}, "standin": {"spawn": True}}
    guard_logs = rvc_folder(guard_root, "train/train.py", "voice", guard_config)

    environ = {
        "spawn": clean_environ(PERSONALIZED_RVC_OPTIMIZER="FishMonger"),
        "resume": clean_environ(
            PERSONALIZED_RVC_OPTIMIZER="personalized.FCompass", PERSONALIZED_RVC_OPTIMIZER_ARGS='{"weight_decay": 0.01}'
        ),
        "guard": clean_environ(PERSONALIZED_RVC_NAN_GUARD="stop"),
    }
    processes = {
        "spawn": start(rvc_python, spawn_root, "train/train.py", environ["spawn"]),
        "resume": start(rvc_python, resume_root, "infer/modules/train/train.py", environ["resume"]),
        "guard": start(rvc_python, guard_root, "train/train.py", environ["guard"]),
    }
    logs = {"spawn": spawn_logs, "resume": resume_logs, "guard": guard_logs}
    return {name: finish(logs[name], process) for name, process in processes.items()}


def start(python: str, root: Path, script: str, environ: dict[str, str]) -> subprocess.Popen[str]:
    """``<python> <script> -e voice ...`` from RVC's folder, as the web UI launches it."""
    command = [python, script, "-e", "voice", "-sr", "48k", "-f0", "1", "-bs", "4", "-te", "2", "-se", "1"]
    return subprocess.Popen(command, cwd=root, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(logs: Path, process: subprocess.Popen[str]) -> Run:
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return Run(logs, process.returncode, stderr)


# -- spawn: main-process detection, export to the worker, config.json, preset ------------------


def test_main_process_exports_the_config_choice_to_its_spawned_worker(runs: dict[str, Run]) -> None:
    parent, worker = runs["spawn"].report("main"), runs["spawn"].report("spawned")
    assert parent["adamw_patched"] and parent["exitcode"] == 0
    exported = json.loads(parent["choice_env"])
    assert exported["optimizer"] == "rvc/FCompass"
    assert exported["source"].startswith("train.optimizer in logs")
    assert worker["choice_env"] == parent["choice_env"]


def test_spawned_worker_builds_the_preset_for_g_and_d(runs: dict[str, Run]) -> None:
    built = runs["spawn"].report("spawned")["built"]
    for net in ("g", "d"):
        assert built[net]["class"] == "FCompass" and not built[net]["torch_adamw"]
        group = built[net]["group"]
        # the preset's lr and betas (not RVC's 0.8, 0.99), FCompass's own eps, optimizer_args on top
        assert group["lr"] == 1e-4 and group["betas"] == [0.9, 0.99] and group["eps"] == 1e-8
        assert group["weight_decay"] == 0.05 and group["clip"] == 1.0


def test_other_adamw_callers_get_torchs_adamw(runs: dict[str, Run]) -> None:
    other = runs["spawn"].report("spawned")["built"]["other"]
    assert other["class"] == "AdamW" and other["torch_adamw"]
    assert other["group"]["betas"] == [0.8, 0.99] and other["group"]["eps"] == 1e-9


def test_spawned_worker_trains_and_saves_our_state(runs: dict[str, Run]) -> None:
    worker = runs["spawn"].report("spawned")
    assert worker["resume_error"].startswith("IndexError")  # a new experiment: nothing to resume
    trained = worker["trained"]["g"]
    assert trained["state_keys"] == ["fim", "max_ema_squared", "momentum", "step"] and trained["steps"] == [4]
    saved = torch.load(runs["spawn"].logs / "G_2.pth", map_location="cpu")
    assert {"momentum", "fim"} <= set(saved["optimizer"]["state"][0])


# -- resume: environment choice, bare optimizer name, older layout, AdamW checkpoint -------------


def test_environment_choice_with_a_bare_name_takes_rvcs_values(runs: dict[str, Run]) -> None:
    run = runs["resume"].report("main")
    assert json.loads(run["choice_env"])["source"] == "PERSONALIZED_RVC_OPTIMIZER"
    for net in ("g", "d"):
        group = run["built"][net]["group"]
        assert run["built"][net]["class"] == "FCompass"
        assert group["lr"] == 2e-4 and group["betas"] == [0.8, 0.99] and group["eps"] == 1e-9
        assert group["weight_decay"] == 0.01 and group["amp_fac"] == 2.0
    assert run["built"]["other"]["torch_adamw"]


def test_resume_from_adamw_keeps_the_epoch_and_starts_our_state_fresh(runs: dict[str, Run]) -> None:
    run = runs["resume"].report("main")
    assert run["resume_error"] is None, "RVC fell back to the pretrained weights at epoch 1"
    assert run["epoch_str"] == 2
    assert len([text for text in run["warnings"] if "FCompass" in text]) == 2  # one for D, one for G
    for net in ("g", "d"):
        trained = run["trained"][net]
        assert "exp_avg" not in trained["state_keys"] and trained["steps"] == [2]
        assert trained["group"]["betas"] == [0.8, 0.99] and trained["group"]["weight_decay"] == 0.01
        assert trained["group"]["initial_lr"] == 2e-4
        assert trained["group"]["lr"] == pytest.approx(lr_after_adamw_resume())


def lr_after_adamw_resume() -> float:
    """The lr torch's AdamW reaches on the same resume: RVC's scheduler from epoch 2, one epoch."""
    net_g = models.make_nets()[0]
    saved = adamw_checkpoint(models.make_nets()[0], 2e-4, iteration=2)
    optimizer = TORCH_ADAMW(net_g.parameters(), 2e-4, betas=[0.8, 0.99], eps=1e-9)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA, last_epoch=saved["iteration"] - 2)
    optimizer.step()  # no gradients: nothing changes, but the scheduler wants a step first
    scheduler.step()
    return optimizer.param_groups[0]["lr"]


def test_switching_back_with_adamw_loads_our_checkpoint_without_crashing(runs: dict[str, Run]) -> None:
    runs["resume"].report("main")
    saved = torch.load(runs["resume"].logs / "G_2.pth", map_location="cpu")
    net_g = models.make_nets()[0]
    choice = {"optimizer": "AdamW", "source": "test"}
    optimizer = rvc.build(choice, TORCH_ADAMW, net_g.parameters(), 2e-4, betas=[0.8, 0.99], eps=1e-9)
    assert isinstance(optimizer, TORCH_ADAMW)
    with pytest.warns(UserWarning, match="another optimizer's state"):
        optimizer.load_state_dict(saved["optimizer"])
    torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA, last_epoch=saved["iteration"] - 2)
    net_g(torch.randn(4, 8)).square().mean().backward()
    optimizer.step()
    assert {"exp_avg", "exp_avg_sq"} <= set(optimizer.state[net_g[0].weight])
    assert tuple(optimizer.param_groups[0]["betas"]) == (0.8, 0.99)


# -- the NaN guard --------------------------------------------------------------------------------


def test_nan_guard_stops_rvcs_adamw_before_it_saves_nan_weights(runs: dict[str, Run]) -> None:
    run = runs["guard"]
    assert run.returncode != 0
    built = "personalized: RVC's AdamW -> AdamW("
    assert run.stderr.count(built) == 2, run.stderr  # G and D, in the spawned worker
    assert "with the NaN guard (no fallbacks, then stops training) (PERSONALIZED_RVC_NAN_GUARD)" in run.stderr
    assert "NonFiniteTraining: AdamW: non-finite values 3 times and there is no fallback to try" in run.stderr
    saved = sorted(run.logs.glob("[GD]_*.pth"))
    assert saved, "the first epoch is finite and saved"
    for path in saved:
        weights = torch.load(path, map_location="cpu")["model"].values()
        assert all(torch.isfinite(w).all() for w in weights), path


def guarded_g(choice: dict[str, Any]) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """RVC's generator optimizer as the patched train.py builds it for ``choice``."""
    net_g = models.make_nets()[0]
    optimizer = rvc.build(choice, TORCH_ADAMW, net_g.parameters(), 1e-4, betas=[0.8, 0.99], eps=1e-9)
    return net_g, optimizer


def nan_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One RVC step (zero_grad, backward, step) whose gradients are NaN."""
    optimizer.zero_grad()
    (net(torch.randn(4, 8)).square().mean() * float("nan")).backward()
    optimizer.step()


def test_nan_guard_applies_the_chosen_presets_fallbacks_then_stops(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarding, "_printed", set())  # each line is printed once per process
    source = "train.nan_guard in logs/voice/config.json"
    choice = {
        "optimizer": "rvc/FCompass",
        "optimizer_args": {"nan_guard_patience": 1},
        "source": "train.optimizer in logs/voice/config.json",
        "nan_guard": {"nan_guard": "stop"},
        "nan_guard_source": source,
    }
    net_g, optimizer = guarded_g(choice)
    assert type(optimizer) is not personalized.FCompass and type(optimizer).__name__ == "FCompass"
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA, last_epoch=-1)
    before = [p.detach().clone() for p in net_g.parameters()]
    for _ in range(2):
        nan_step(net_g, optimizer)
        scheduler.step()
    lines = [line for line in capsys.readouterr().err.splitlines() if "applying fallback" in line]
    assert lines == [
        "personalized: non-finite values 1 time; applying fallback 1 of 2 from preset rvc/FCompass: centralization=0.0",
        "personalized: non-finite values 1 time; applying fallback 2 of 2 from preset rvc/FCompass: clip=0.0",
    ]
    # RVC's checkpoint: the guard's counters and the fallbacks resume with it
    saved = {"model": net_g.state_dict(), "iteration": 1, "optimizer": optimizer.state_dict(), "learning_rate": 1e-4}
    net_g, resumed = guarded_g(choice)
    net_g.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optimizer"])
    assert resumed.nan_guard.fallbacks_applied == 2 and resumed.param_groups[0]["clip"] == 0.0
    with pytest.raises(
        personalized.nan_guard.NonFiniteTraining, match="after all 2 fallbacks from preset rvc/FCompass"
    ):
        nan_step(net_g, resumed)
    assert all(torch.equal(a, b) for a, b in zip(before, net_g.parameters()))


def test_nan_guard_in_optimizer_args_and_bad_values_name_where_they_were_written() -> None:
    choice = {"optimizer": "FishMonger", "optimizer_args": {"nan_guard": True}, "source": "PERSONALIZED_RVC_OPTIMIZER"}
    optimizer = guarded_g(choice)[1]
    assert optimizer.nan_guard.preset_name == "default/FishMonger" and not optimizer.nan_guard.stop
    with pytest.raises(ValueError, match=r"^PERSONALIZED_RVC_NAN_GUARD: FCompass: nan_guard='yes' is not allowed"):
        guarded_g({"optimizer": "FCompass", "nan_guard": {"nan_guard": "yes"}})
    with pytest.raises(ValueError, match="nan_guard_preset='rvc/FishMonger' is a preset for FishMonger, not FCompass"):
        guarded_g({"optimizer": "FCompass", "nan_guard": {"nan_guard": "stop", "nan_guard_preset": "rvc/FishMonger"}})


def test_guard_settings_come_from_config_json_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs" / "voice"
    logs.mkdir(parents=True)
    argv = ["train/train.py", "-e", "voice"]
    (logs / "config.json").write_text(json.dumps({"train": RVC_TRAIN}), encoding="utf8")
    assert hook.find_choice(argv, {hook.NAN_GUARD_VAR: "stop"}) == {
        "optimizer": "AdamW",
        "source": "PERSONALIZED_RVC_NAN_GUARD",
        "nan_guard": {"nan_guard": "stop"},
        "nan_guard_source": "PERSONALIZED_RVC_NAN_GUARD",
    }
    train = {**RVC_TRAIN, "optimizer": "rvc/FCompass", "nan_guard": "fallbacks", "nan_guard_patience": 5}
    (logs / "config.json").write_text(json.dumps({"train": train}), encoding="utf8")
    choice = hook.find_choice(argv, {hook.NAN_GUARD_VAR: "stop"})
    assert choice["optimizer"] == "rvc/FCompass"
    assert choice["nan_guard"] == {"nan_guard": "fallbacks", "nan_guard_patience": 5}
    assert choice["nan_guard_source"] == f"train.nan_guard in {os.path.join('logs', 'voice', 'config.json')}"


# -- start-up without torch ----------------------------------------------------------------------

PROBE = (
    "import json, os, sys\n"
    "print(json.dumps({'hook': 'personalized_hooks.rvc' in sys.modules,"
    " 'heavy': sorted({'torch', 'personalized'} & set(sys.modules)),"
    " 'waiting': 'torch.optim' in sys.modules['personalized_hooks']._pending,"
    " 'exported': os.environ.get('PERSONALIZED_RVC_CHOICE')}))\n"
)


def probe(python: str, args: list[str], cwd: Path, **environ: str) -> dict[str, Any]:
    result = subprocess.run(
        [python, *args], cwd=cwd, env=clean_environ(**environ), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plain_interpreter_loads_the_hook_under_isolated_mode_and_nothing_heavy(
    rvc_python: str, tmp_path: Path
) -> None:
    found = probe(rvc_python, ["-I", "-c", PROBE], tmp_path, PERSONALIZED_RVC_OPTIMIZER="FCompass")
    assert found == {"hook": True, "heavy": [], "waiting": False, "exported": None}


def test_spawn_child_with_the_exported_choice_waits_for_torch_optim(rvc_python: str, tmp_path: Path) -> None:
    choice = json.dumps({"optimizer": "FCompass", "source": "test"})
    found = probe(rvc_python, ["-c", PROBE, "--multiprocessing-fork"], tmp_path, PERSONALIZED_RVC_CHOICE=choice)
    assert found["waiting"] and found["heavy"] == []
    found = probe(rvc_python, ["-c", PROBE, "--multiprocessing-fork"], tmp_path)
    assert not found["waiting"]


def test_train_script_without_a_choice_stays_inactive_and_drops_a_stale_export(rvc_python: str, tmp_path: Path) -> None:
    script = tmp_path / "train" / "train.py"
    script.parent.mkdir()
    script.write_text(PROBE, encoding="utf8")
    (tmp_path / "logs" / "voice").mkdir(parents=True)
    (tmp_path / "logs" / "voice" / "config.json").write_text(json.dumps({"train": RVC_TRAIN}), encoding="utf8")
    found = probe(rvc_python, ["train/train.py", "-e", "voice"], tmp_path, PERSONALIZED_RVC_CHOICE='{"x": 1}')
    assert found == {"hook": True, "heavy": [], "waiting": False, "exported": None}


# -- the hook's decisions, in-process ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("train/train.py", True),
        ("/home/me/RVC/infer/modules/train/train.py", True),
        ("C:\\RVC\\train\\train.py", True),
        ("/home/me/RVC/mytrain/train.py", False),
        ("train.py", False),
        ("/home/me/RVC/train/utils.py", False),
    ],
)
def test_train_script_paths(path: str, expected: bool) -> None:
    assert hook.is_train_script(path) is expected


@pytest.mark.parametrize(
    "args",
    [
        ["-e", "voice", "-sr", "48k"],
        ["-sr", "48k", "-evoice"],
        ["-e=voice"],
        ["--experiment_dir", "voice"],
        ["--experiment_dir=voice"],
        ["--exp", "voice"],
    ],
)
def test_experiment_name_as_argparse_reads_it(args: list[str]) -> None:
    assert hook.experiment_name(args) == "voice"


def test_config_choice_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs" / "voice"
    logs.mkdir(parents=True)
    argv = ["train/train.py", "-e", "voice"]
    environ = {hook.OPTIMIZER_VAR: "FishMonger", hook.ARGS_VAR: '{"diff_amp": 0}'}
    (logs / "config.json").write_text(json.dumps({"train": RVC_TRAIN}), encoding="utf8")
    assert hook.find_choice(argv, environ) == {
        "optimizer": "FishMonger",
        "optimizer_args": '{"diff_amp": 0}',
        "source": "PERSONALIZED_RVC_OPTIMIZER",
    }
    train = {**RVC_TRAIN, "optimizer": "rvc/FCompass"}
    (logs / "config.json").write_text(json.dumps({"train": train}), encoding="utf-8-sig")
    choice = hook.find_choice(argv, environ)
    assert choice["optimizer"] == "rvc/FCompass" and choice["optimizer_args"] is None
    assert hook.find_choice(argv, {}) == choice
    assert hook.find_choice(["train/train.py", "-e", "missing"], {}) is None


@pytest.fixture
def patched_adamw() -> type:
    return hook.rvc_adamw(TORCH_ADAMW, {"optimizer": "FCompass", "source": "test"})


def call_from(filename: str, adamw: type, params: Any) -> Any:
    """``adamw(params, 1e-4, betas=[0.8, 0.99], eps=1e-9)`` in code whose file name is ``filename``."""
    code = compile("optimizer = AdamW(params, 1e-4, betas=[0.8, 0.99], eps=1e-9)", filename, "exec")
    namespace = {"AdamW": adamw, "params": params}
    exec(code, namespace)
    return namespace["optimizer"]


def test_the_patched_adamw_swaps_only_for_the_train_script(patched_adamw: type) -> None:
    net = torch.nn.Linear(3, 2)
    ours = call_from(os.path.join("RVC", "train", "train.py"), patched_adamw, net.parameters())
    assert type(ours) is personalized.FCompass and ours.defaults["betas"] == (0.8, 0.99)
    theirs = call_from(os.path.join("RVC", "train", "utils.py"), patched_adamw, net.parameters())
    assert type(theirs) is patched_adamw and isinstance(theirs, TORCH_ADAMW)
    assert theirs.defaults["eps"] == 1e-9

    class Subclass(patched_adamw):
        pass

    assert type(call_from("train/train.py", Subclass, net.parameters())) is Subclass
    assert inspect.signature(patched_adamw) == inspect.signature(TORCH_ADAMW)


def test_patch_is_applied_once() -> None:
    module = ModuleType("fake_optim")
    module.AdamW = TORCH_ADAMW
    hook.patch_adamw(module, {"optimizer": "FCompass"})
    first = module.AdamW
    hook.patch_adamw(module, {"optimizer": "FCompass"})
    assert module.AdamW is first and first.personalized_rvc_original is TORCH_ADAMW


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("FishMonger", {"lr": 1e-4, "betas": (0.8, 0.99, 0.999), "eps": 1e-9}),  # keeps its own third beta
        ("SCORN", {"lr": 1e-4, "betas": (0.8, 0.99)}),  # no eps
        ("EnhancedAdafactor", {}),  # relative step (lr None) and an (eps1, eps2) pair
        ("Prodigy", {"betas": (0.8, 0.99), "eps": 1e-9}),  # lr 1.0 is a multiplier of its own estimate
    ],
)
def test_rvc_values_go_where_they_mean_the_same(name: str, expected: dict[str, Any]) -> None:
    rvc_call = {"lr": 1e-4, "betas": [0.8, 0.99], "eps": 1e-9}
    cls = personalized.get_optimizer(name)
    assert rvc.rvc_values_for(cls, rvc_call) == expected


def test_bad_choices_name_where_they_were_written() -> None:
    params = torch.nn.Linear(2, 2).parameters()
    with pytest.raises(ValueError, match="PERSONALIZED_RVC_OPTIMIZER_ARGS is not valid JSON"):
        rvc.build({"optimizer": "FCompass", "optimizer_args": "{weight_decay: 1}"}, TORCH_ADAMW, params, 1e-4)
    with pytest.raises(ValueError, match=r"train.optimizer in logs.*Unknown optimizer 'FCompas'"):
        rvc.build({"optimizer": "FCompas", "source": "train.optimizer in logs/v/config.json"}, TORCH_ADAMW, params)
    with pytest.raises(TypeError, match="weight_decya"):
        rvc.build({"optimizer": "FCompass", "optimizer_args": {"weight_decya": 0.1}}, TORCH_ADAMW, params, 1e-4)


# -- personalized install rvc / uninstall rvc ---------------------------------------------------


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    target = tmp_path / "site-packages"
    target.mkdir()
    monkeypatch.setattr(pth, "site_packages", lambda python=None: target)
    yield target


def test_install_writes_the_pth_and_explains_the_choice(site_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "rvc"]) == 0
    out = capsys.readouterr().out
    assert (site_dir / "personalized-rvc.pth").read_text(encoding="utf-8") == pth.pth_line("personalized_hooks.rvc")
    for text in ("train.optimizer", "train.optimizer_args", "PERSONALIZED_RVC_OPTIMIZER=rvc/FCompass"):
        assert text in out
    assert "PERSONALIZED_RVC_OPTIMIZER_ARGS=" in out and "personalized presets show rvc/FCompass" in out
    assert main(["uninstall", "rvc"]) == 0
    assert not (site_dir / "personalized-rvc.pth").exists()
    assert "removed" in capsys.readouterr().out
    assert main(["uninstall", "rvc"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_install_checks_the_rvc_folder(site_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "rvc", str(tmp_path)]) == 2
    assert "does not look like RVC" in capsys.readouterr().err
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.py").touch()
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "python.exe").touch()
    assert main(["install", "rvc", str(tmp_path)]) == 2
    assert "--python" in capsys.readouterr().err
    assert main(["install", "rvc", str(tmp_path), "--python", sys.executable]) == 0
    assert (site_dir / "personalized-rvc.pth").exists()


@pytest.mark.parametrize(
    ("found", "message"),
    [
        ({"hook": False, "site": True}, "pip install"),
        (
            {"hook": True, "site": False, "pth_files": ["runtime/python310._pth"]},
            "'import site' to runtime/python310._pth",
        ),
    ],
)
def test_install_refuses_an_environment_that_would_ignore_the_pth(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], found: dict, message: str
) -> None:
    monkeypatch.setattr(rvc, "probe", lambda python: {"yaml": True, "on_path": True, "pth_files": [], **found})
    assert main(["install", "rvc"]) == 2
    assert message in capsys.readouterr().err
    assert not (site_dir / "personalized-rvc.pth").exists()
