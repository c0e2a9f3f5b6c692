"""personalized bench: the tasks run, NaNs are counted, results.json keeps its schema, bad input is exit 2."""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import personalized
from personalized import cli
from personalized.bench import register
from personalized.bench.contenders import ADAMW, Contender, adamw, from_preset, select
from personalized.bench.progress import ProgressBar
from personalized.bench.report import rows, text_table, to_json
from personalized.bench.runner import run_one, run_suite, run_task, state_bytes
from personalized.bench.tasks import TASKS, Problem, Task


@pytest.fixture
def bench_main(monkeypatch: pytest.MonkeyPatch) -> object:
    """``personalized.cli.main`` with the bench command registered (as cli.py will do)."""
    original = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "bench" not in commands.choices:
            register(commands)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)
    return cli.main


class NaNAt(Problem):
    """A quadratic whose training loss turns NaN at a given step: a NaN injected on purpose."""

    def __init__(self, seed: int, at: int = 3) -> None:
        self.params = [torch.nn.Parameter(torch.ones(4))]
        self.at = at

    def train_loss(self, step: int) -> torch.Tensor:
        loss = (self.params[0] ** 2).sum()
        return loss * math.nan if step >= self.at else loss

    def eval_loss(self) -> float:
        return float((self.params[0].detach() ** 2).sum())


NAN_TASK = Task("nan-at-3", "test", "NaN from step 3", "sum of squares", 10, 1e-2, NaNAt)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_a_few_steps_deterministically(name: str) -> None:
    task = TASKS[name]
    first, settings = run_one(task, adamw(), seed=0, steps=4)
    again, _ = run_one(task, adamw(), seed=0, steps=4)
    assert first.error is None and first.nan_step is None
    assert first.steps == [0, 1, 2, 3, 4]
    assert all(math.isfinite(value) for value in first.losses)
    assert first.final == first.losses[-1] and first.best == min(first.losses)
    assert first.losses == again.losses  # seeded: same weights, same batches
    assert first.state_bytes > 0 and first.wall_time_s > 0
    assert settings["lr"] == task.adamw_lr
    other, _ = run_one(task, adamw(), seed=1, steps=4)
    assert other.losses != first.losses


def test_classification_tasks_report_accuracy_and_lora_trains_only_the_adapters() -> None:
    run, _ = run_one(TASKS["lora"], adamw(), seed=0, steps=2)
    assert 0.0 <= run.metrics["accuracy"] <= 1.0
    problem = TASKS["lora"].build(0)
    names = {name for name, p in problem.model.named_parameters() if p.requires_grad}
    assert names and all(name.rsplit(".", 1)[-1] in ("lora_A", "lora_B") for name in names)
    assert sum(p.numel() for p in problem.params) < sum(p.numel() for p in problem.model.parameters()) / 5
    assert all(not p.any() for name, p in problem.model.named_parameters() if name.endswith("lora_B"))


def test_flow_matching_target_is_noise_minus_x0() -> None:
    from personalized.bench.tasks.diffusion import flow_matching_loss

    x0, noise, t = torch.randn(5, 64), torch.randn(5, 64), torch.rand(5)

    class Oracle(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            return noise - x0 + 0 * x_t

    assert flow_matching_loss(Oracle(), x0, t, noise).item() == 0.0


def test_an_injected_nan_stops_the_run_and_is_reported_as_nan() -> None:
    result = run_task(NAN_TASK, [adamw()], seeds=[0, 1], steps=10)
    for run in result.results[0].runs:
        assert run.nan_step == 3 and run.final is None and run.error is None
        assert run.steps == [0, 1, 2] and run.best == min(run.losses)
    assert result.target is None
    document = to_json(run_suite([NAN_TASK], [adamw()], seeds=[0, 1], steps=10))
    entry = document["tasks"]["nan-at-3"]["optimizers"][ADAMW]
    assert entry["summary"]["nan_count"] == 2 and entry["summary"]["final"] is None
    assert [seed["nan_step"] for seed in entry["seeds"]] == [3, 3]
    json.dumps(document, allow_nan=False)
    assert "NaN@3" in text_table(result)


def test_an_optimizer_that_diverges_is_counted_as_nan() -> None:
    exploding = Contender("AdamW lr=inf", "AdamW", None, overrides={"lr": math.inf})
    result = run_task(TASKS["quadratic"], [adamw(), exploding], seeds=[0], steps=5)
    good, bad = (entry.runs[0] for entry in result.results)
    assert good.nan_step is None and good.final is not None
    assert bad.nan_step == 1 and bad.final is None  # the first update is inf: the evaluation after it is not finite
    assert result.target == good.final and bad.steps_to_target is None
    last = rows(result)[-1]  # runs that went NaN come last
    assert last[:2] == ("AdamW lr=inf", "NaN@1") and last[4] == "1"
    assert "NaN@1" in text_table(result)


def test_an_optimizer_that_raises_is_an_error_and_the_suite_goes_on() -> None:
    broken = Contender("broken", "AdamW", None, overrides={"betas": "not betas"})
    result = run_task(TASKS["quadratic"], [broken, adamw()], seeds=[0], steps=3)
    failed, fine = (entry.runs[0] for entry in result.results)
    assert failed.error is not None and failed.final is None and failed.nan_step is None
    assert fine.final is not None


def test_steps_to_target_is_the_first_step_reaching_adamw_final_loss_on_the_same_seed() -> None:
    fast = Contender("AdamW fast", "AdamW", None, overrides={"lr": 3e-2})
    result = run_task(TASKS["quadratic"], [adamw(), fast], seeds=[0, 1], steps=20)
    baselines, quick = (entry.runs for entry in result.results)
    assert result.target == pytest.approx((baselines[0].final + baselines[1].final) / 2)
    for baseline in baselines:
        reached = next(s for s, v in zip(baseline.steps, baseline.losses) if v <= baseline.final)
        assert baseline.steps_to_target == reached
    for run, baseline in zip(quick, baselines):
        assert run.seed == baseline.seed and run.steps_to_target is not None and run.steps_to_target < 20
        index = run.steps.index(run.steps_to_target)
        assert run.losses[index] <= baseline.final < min(run.losses[:index])


#: results.json's keys, spelled out here so that renaming one fails this test.
TOP = {"schema", "version", "created", "environment", "seeds", "wall_time_s", "skipped", "tasks"}
TASK = {"family", "description", "loss", "steps", "eval_every", "adamw_lr", "target", "optimizers"}
OPTIMIZER = {"optimizer", "preset", "baseline", "settings", "summary", "seeds"}
SUMMARY = {
    "final",
    "best",
    "steps_to_target",
    "reached",
    "nan_count",
    "error_count",
    "wall_time_s",
    "state_bytes",
    "metrics",
}
SEED = {
    "seed",
    "steps",
    "losses",
    "final",
    "best",
    "steps_to_target",
    "nan_step",
    "error",
    "wall_time_s",
    "state_bytes",
    "metrics",
}


def test_results_json_schema_is_stable() -> None:
    contenders = [adamw(), from_preset("default/FCompass")]
    suite = run_suite([TASKS["quadratic"], TASKS["classifier"]], contenders, seeds=[0, 1], steps=3)
    document = json.loads(json.dumps(to_json(suite), allow_nan=False))
    assert set(document) == TOP
    assert document["schema"] == "personalized-bench" and document["version"] == 1
    assert document["seeds"] == [0, 1] and list(document["tasks"]) == ["quadratic", "classifier"]
    assert set(document["environment"]) == {"personalized", "torch", "python", "platform", "threads"}
    for task in document["tasks"].values():
        assert set(task) == TASK
        assert list(task["optimizers"]) == [ADAMW, "default/FCompass"]
        for entry in task["optimizers"].values():
            assert set(entry) == OPTIMIZER and set(entry["summary"]) == SUMMARY
            assert [seed["seed"] for seed in entry["seeds"]] == [0, 1]
            assert all(set(seed) == SEED for seed in entry["seeds"])
    fcompass = document["tasks"]["classifier"]["optimizers"]["default/FCompass"]
    assert fcompass["settings"]["lr"] == 1e-3 and fcompass["settings"]["betas"] == [0.99, 0.999]
    assert fcompass["preset"] == "default/FCompass" and not fcompass["baseline"]
    assert set(fcompass["seeds"][0]["metrics"]) == {"accuracy"}


def test_state_bytes_sums_every_state_tensor() -> None:
    params = [torch.nn.Parameter(torch.zeros(10, 3))]
    optimizer = torch.optim.AdamW(params)
    params[0].grad = torch.ones(10, 3)
    optimizer.step()
    expected = sum(v.nbytes for v in optimizer.state[params[0]].values() if isinstance(v, torch.Tensor))
    assert state_bytes(optimizer) == expected >= 2 * 30 * 4


def test_select_puts_the_baselines_first_and_skips_missing_optional_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    contenders, skipped = select(["fcompass", "adamw"], ["rvc/FCompass"])
    assert [c.label for c in contenders] == [ADAMW, "default/Prodigy", "default/FCompass", "rvc/FCompass"]
    assert skipped == []
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    monkeypatch.delitem(sys.modules, "personalized.optimizers.prodigy")
    contenders, skipped = select(["fcompass"])
    assert [c.label for c in contenders] == [ADAMW, "default/FCompass"]
    assert [s.name for s in skipped] == ["default/Prodigy"] and "[prodigy]" in skipped[0].reason


def test_every_optimizer_is_a_contender_by_default() -> None:
    contenders, skipped = select()
    labels = {c.label for c in contenders} | {s.name for s in skipped}
    assert labels == {ADAMW} | {f"default/{name}" for name in personalized.available()}


def test_bench_command_runs_and_writes_its_outputs(
    bench_main: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--task", "quadratic", "--optimizers", "FCompass", "--steps", "3", "--out", str(tmp_path)]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    for label in (ADAMW, "default/Prodigy", "default/FCompass"):
        assert label in out
    assert "final loss" in out and "steps to AdamW" in out and f"wrote {tmp_path}" in out
    assert {path.name for path in tmp_path.iterdir()} == {"results.json", "results.md", "quadratic.png"}
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["tasks"]["quadratic"]["steps"] == 3
    assert (tmp_path / "quadratic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--task", "imagenet"], "unknown task 'imagenet'"),
        (["--task", "lorra"], "Did you mean lora"),
        (["--optimizers", "FCompas"], "Did you mean FCompass"),
        (["--presets", "rvc/nothing"], "Unknown preset 'rvc/nothing'"),
        (["--presets", "FCompass"], "is not a preset name"),
    ],
)
def test_bad_bench_input_is_exit_2_in_one_line(
    bench_main: object, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert bench_main(["bench", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("personalized: error:") and words in err


@pytest.mark.parametrize("argv", [["speed"], ["--seeds", "0"], ["--steps", "ten"]])
def test_bad_bench_arguments_exit_2_in_one_line(
    bench_main: object, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["bench", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "personalized bench: error:" in err


def test_a_missing_extra_is_named_in_one_line(
    bench_main: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert bench_main(["bench", "--task", "lora", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scikit-learn" in err and "personalized-optimizers[bench]" in err
    assert not (tmp_path / "out").exists()


def test_import_personalized_does_not_import_the_bench_extras() -> None:
    code = (
        "import sys, personalized, personalized.cli, personalized.bench; "
        "print(sorted(m for m in ('sklearn', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_progress_bar_draws_only_on_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10, stream=stream)
    bar(5, "quadratic: AdamW, seed 0")
    assert stream.getvalue() == ""
    forced = ProgressBar(10, stream=stream, force=True)
    forced(5, "quadratic: AdamW, seed 0")
    assert "[############............]  50%" in stream.getvalue() and "quadratic: AdamW" in stream.getvalue()
    forced.close()
    assert stream.getvalue().endswith("\r\033[K")


def test_the_quick_suite_sizes_stay_small() -> None:
    """The default suite must stay a few minutes on 2 cores: small models, a few hundred steps."""
    for task in TASKS.values():
        problem = task.build(0)
        assert task.steps <= 400
        assert sum(p.numel() for p in problem.params) <= 40_000
