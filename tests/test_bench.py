"""personalized bench: one protocol for every contender, NaNs counted, schema v2, partial results kept, clear errors."""

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
from personalized.bench.analysis import summarize_task, tolerance_decades, verdict
from personalized.bench.contenders import ADAMW, PEERS, Contender, adamw, from_preset, select, with_overrides
from personalized.bench.progress import ProgressBar
from personalized.bench.report import SCHEMA_VERSION, lr_key, rows, text_table, to_json
from personalized.bench.runner import run_one, run_suite, state_bytes
from personalized.bench.sweep import COARSE_GRID, FULL_GRID, Protocol, best_lr
from personalized.bench.tasks import TASKS, Problem, Task


@pytest.fixture
def bench_main(monkeypatch: pytest.MonkeyPatch) -> object:
    """``personalized.cli.main`` with the bench command registered (as cli.py does)."""
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


class Bowl(Problem):
    """A plain quadratic from 0.02: AdamW moves about lr per step, so in 6 steps 3e-3 is its best lr."""

    def __init__(self, seed: int) -> None:
        self.params = [torch.nn.Parameter(torch.full((3,), 0.02 + 0.001 * seed))]

    def train_loss(self, step: int) -> torch.Tensor:
        return (self.params[0] ** 2).sum()

    def eval_loss(self) -> float:
        return float((self.params[0].detach() ** 2).sum())


class InterruptAt(Bowl):
    """Ctrl-C while building the run of seed 1: the runs before it finished."""

    def __init__(self, seed: int) -> None:
        if seed == 1:
            raise KeyboardInterrupt
        super().__init__(seed)


class CrashAt(Bowl):
    """A crash outside any optimizer while building the run of seed 1."""

    def __init__(self, seed: int) -> None:
        if seed == 1:
            raise RuntimeError("disk full")
        super().__init__(seed)


NAN_TASK = Task("nan-at-3", "test", "NaN from step 3", "sum of squares", 10, NaNAt)
BOWL = Task("bowl", "test", "a quadratic bowl", "sum of squares", 10, Bowl)
INTERRUPTED = Task("interrupted", "test", "Ctrl-C at seed 1", "sum of squares", 10, InterruptAt)
CRASHING = Task("crashing", "test", "a crash at seed 1", "sum of squares", 10, CrashAt)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_a_few_steps_deterministically(name: str) -> None:
    task = TASKS[name]
    first = run_one(task, adamw(), 1e-3, seed=0, steps=4)
    again = run_one(task, adamw(), 1e-3, seed=0, steps=4)
    assert first.error is None and first.nan_step is None
    assert first.steps == [0, 1, 2, 3, 4]
    assert all(math.isfinite(value) for value in first.losses)
    assert first.final == first.losses[-1] and first.best == min(first.losses)
    assert first.losses == again.losses  # seeded: same weights, same batches
    assert first.state_bytes > 0 and first.wall_time_s > 0
    assert first.settings["lr"] == 1e-3 and first.lr == 1e-3
    other = run_one(task, adamw(), 1e-3, seed=1, steps=4)
    assert other.losses != first.losses


def test_classification_tasks_report_accuracy_and_lora_trains_only_the_adapters() -> None:
    run = run_one(TASKS["lora"], adamw(), 1e-3, seed=0, steps=2)
    assert 0.0 <= run.metrics["accuracy"] <= 1.0
    problem = TASKS["lora"].build(0)
    names = {name for name, p in problem.model.named_parameters() if p.requires_grad}
    assert names and all(name.rsplit(".", 1)[-1] in ("lora_A", "lora_B") for name in names)
    assert sum(p.numel() for p in problem.params) < sum(p.numel() for p in problem.model.parameters()) / 5
    assert all(not p.any() for name, p in problem.model.named_parameters() if name.endswith("lora_B"))


def test_the_lora_base_model_is_made_once_and_can_be_handed_over() -> None:
    from personalized.bench.tasks import lora

    shared = lora.share([0])
    assert lora.pretrained(0) is shared[0]
    replacement = {key: torch.zeros_like(value) for key, value in shared[0].items()}
    lora.adopt({7: replacement})
    assert lora.pretrained(7) is replacement
    problem = lora.DigitsLoRA(7)
    assert not problem.model[0].base.weight.any()


def test_flow_matching_target_is_noise_minus_x0() -> None:
    from personalized.bench.tasks.diffusion import flow_matching_loss

    x0, noise, t = torch.randn(5, 64), torch.randn(5, 64), torch.rand(5)

    class Oracle(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            return noise - x0 + 0 * x_t

    assert flow_matching_loss(Oracle(), x0, t, noise).item() == 0.0


# -- the protocol ---------------------------------------------------------------------------


def _plan(protocol: Protocol, adaptive: bool, loss: dict[float, float | None]) -> list[tuple[float | None, int]]:
    """Every run a contender gets under ``protocol`` when its loss at each lr (any seed) is ``loss[lr]``."""
    finals: dict[tuple[float | None, int], float | None] = {}
    batch = protocol.first_runs(adaptive)
    while batch:
        finals.update({(lr, seed): loss.get(lr, 1.0) if lr is not None else 1.0 for lr, seed in batch})
        batch = protocol.next_runs(finals)
    return list(finals)


def test_the_quick_sweep_tries_the_decades_then_the_best_ones_neighbours_then_every_seed() -> None:
    protocol = Protocol.quick([0, 1, 2])
    runs = _plan(protocol, False, {1e-3: 0.5, 3e-3: 0.4, 3e-4: 0.6})
    assert runs[: len(COARSE_GRID)] == [(lr, 0) for lr in COARSE_GRID]
    assert runs[len(COARSE_GRID) :] == [(3e-4, 0), (3e-3, 0), (3e-3, 1), (3e-3, 2)]
    assert len(runs) == protocol.most_runs(adaptive=False)
    assert _plan(protocol, True, {}) == [(None, 0), (None, 1), (None, 2)]
    assert (protocol.steps(400), Protocol.full([0]).steps(400), Protocol.fixed([1e-3], [0]).steps(400)) == (
        300,
        400,
        400,
    )


def test_the_full_and_fixed_sweeps_run_every_lr_with_every_seed() -> None:
    assert _plan(Protocol.full([0, 1]), False, {}) == [(lr, seed) for lr in FULL_GRID for seed in (0, 1)]
    assert _plan(Protocol.fixed([1e-2, 1e-3, 1e-2], [0]), False, {}) == [(1e-3, 0), (1e-2, 0)]


def test_an_lr_where_any_seed_went_nan_cannot_be_the_best() -> None:
    finals = {(1e-3, 0): 0.1, (1e-3, 1): None, (1e-2, 0): 0.5, (1e-2, 1): 0.6}
    assert best_lr(finals) == 1e-2
    assert best_lr({(1e-3, 0): None}) is None


def test_tolerance_is_the_span_of_lrs_within_ten_percent_of_the_best() -> None:
    losses = {1e-4: 2.0, 3e-4: 1.08, 1e-3: 1.0, 3e-3: 1.09, 1e-2: None, 3e-2: 1.0}
    assert tolerance_decades(losses, 1e-3) == pytest.approx(math.log10(3e-3 / 3e-4))
    assert tolerance_decades({1e-3: 1.0, 1e-2: 5.0}, 1e-3) == 0.0


def test_a_difference_counts_only_beyond_one_percent_and_two_standard_errors() -> None:
    def spread(mean: float, std: float = 0.0) -> dict[str, float]:
        return {"mean": mean, "std": std, "seeds": 3}

    adamw_loss = spread(1.0)
    assert [verdict(spread(v), adamw_loss) for v in (1.005, 0.9, 1.1)] == ["tie", "win", "loss"]
    assert verdict(spread(0.9, std=0.2), adamw_loss) == "tie"  # 2 standard errors: 0.23
    assert verdict(spread(0.7, std=0.2), adamw_loss) == "win"


def test_every_contender_gets_the_same_grid_seeds_and_steps() -> None:
    contenders = [adamw(), from_preset("default/FCompass"), from_preset("default/Prodigy")]
    suite = run_suite([BOWL], contenders, Protocol.quick([0, 1]), steps=6)
    by_label = {result.contender.label: result.runs for result in suite.tasks[0].results}
    swept = [by_label[ADAMW], by_label["default/FCompass"]]
    for runs in swept:
        assert {(run.lr, run.seed) for run in runs} >= {(lr, 0) for lr in COARSE_GRID}
        assert len(runs) == Protocol.quick([0, 1]).most_runs(adaptive=False)
        assert all(run.steps[-1] == 6 and run.settings["lr"] == run.lr for run in runs)
    assert {(run.lr, run.seed) for run in by_label["default/Prodigy"]} == {(None, 0), (None, 1)}
    assert by_label["default/Prodigy"][0].settings["lr"] == 1.0  # its preset's lr, not swept
    summaries = {s.label: s for s in summarize_task(suite.tasks[0], suite.protocol)}
    assert summaries[ADAMW].best_lr == 3e-3 and summaries[ADAMW].loss["seeds"] == 2
    fcompass = summaries["default/FCompass"]
    assert fcompass.lr_multiplier == pytest.approx(fcompass.best_lr / 3e-3)


def test_an_injected_nan_stops_the_run_and_is_counted_per_lr() -> None:
    suite = run_suite([NAN_TASK], [adamw()], Protocol.fixed([1e-3, 1e-2], [0, 1]), steps=10)
    for run in suite.tasks[0].results[0].runs:
        assert run.nan_step == 3 and run.final is None and run.error is None
        assert run.steps == [0, 1, 2] and run.best == min(run.losses)
    document = to_json(suite)
    entry = document["tasks"]["nan-at-3"]["contenders"][ADAMW]
    assert entry["nan_by_lr"] == {"0.001": 2, "0.01": 2} and entry["loss_by_lr"] == {"0.001": None, "0.01": None}
    assert entry["best_lr"] is None and entry["loss"] is None
    json.dumps(document, allow_nan=False)
    assert "NaN/error at every lr" in text_table(suite.tasks[0], suite.protocol)


def test_an_optimizer_that_raises_is_an_error_and_the_suite_goes_on() -> None:
    broken = Contender("broken", "AdamW", None, overrides={"betas": "not betas"})
    suite = run_suite([TASKS["quadratic"]], [broken, adamw()], Protocol.fixed([1e-3], [0]), steps=3)
    failed, fine = (entry.runs[0] for entry in suite.tasks[0].results)
    assert failed.error is not None and failed.final is None and failed.nan_step is None
    assert fine.final is not None
    assert rows(suite.tasks[0], suite.protocol)[-1][0] == "broken"  # no finished lr: last


def test_worker_processes_give_the_same_runs_as_one_process() -> None:
    contenders = [adamw(), from_preset("default/FCompass")]
    protocol = Protocol.fixed([1e-3, 1e-2], [0, 1])
    inline = run_suite([TASKS["quadratic"]], contenders, protocol, steps=5)
    pooled = run_suite([TASKS["quadratic"]], contenders, protocol, steps=5, workers=2)
    assert not pooled.partial and pooled.workers == 2

    def losses(suite: object) -> dict:
        return {(r.contender.label, run.lr, run.seed): run.losses for r in suite.tasks[0].results for run in r.runs}

    assert losses(pooled) == losses(inline) and len(losses(inline)) == 8


# -- results.json -----------------------------------------------------------------------------

#: results.json's keys, spelled out here so that renaming one fails this test.
TOP = {
    "schema",
    "schema_version",
    "created",
    "partial",
    "stopped",
    "environment",
    "protocol",
    "wall_time_s",
    "skipped",
    "tasks",
    "overall",
}
TASK = {"family", "description", "loss", "steps", "eval_every", "adamw_best_lr", "contenders"}
CONTENDER = {
    "optimizer",
    "preset",
    "baseline",
    "adaptive",
    "lr_grid",
    "best_lr",
    "best_at_edge",
    "loss",
    "loss_by_lr",
    "nan_by_lr",
    "errors_by_lr",
    "seeds_by_lr",
    "tolerance_decades",
    "lr_multiplier",
    "vs_adamw",
    "metrics",
    "wall_time_s",
    "state_bytes",
    "settings",
    "runs",
}
OVERALL = {"wins", "ties", "losses", "lr_multiplier_median", "lr_multiplier_min", "lr_multiplier_max", "lr_multipliers"}


def test_results_json_schema_v2_round_trips() -> None:
    contenders = [adamw(), from_preset("default/FCompass")]
    protocol = Protocol.fixed([1e-3, 1e-2], [0, 1])
    suite = run_suite([TASKS["quadratic"], TASKS["classifier"]], contenders, protocol, steps=3)
    document = json.loads(json.dumps(to_json(suite), allow_nan=False))
    assert set(document) == TOP and document["schema_version"] == SCHEMA_VERSION == 2
    assert document["protocol"]["lr_grid"] == [1e-3, 1e-2] and document["protocol"]["seeds"] == [0, 1]
    assert not document["partial"] and list(document["tasks"]) == ["quadratic", "classifier"]
    for task in document["tasks"].values():
        assert set(task) == TASK and list(task["contenders"]) == [ADAMW, "default/FCompass"]
        for entry in task["contenders"].values():
            assert set(entry) == CONTENDER
            assert entry["lr_grid"] == [1e-3, 1e-2]
            assert {float(key) for key in entry["loss_by_lr"]} == set(entry["lr_grid"])
            best = entry["loss_by_lr"][lr_key(entry["best_lr"])]
            assert best == pytest.approx(entry["loss"]["mean"]) and entry["loss"]["seeds"] == 2
            assert best == min(v for v in entry["loss_by_lr"].values() if v is not None)
            curves = [run for run in entry["runs"] if "losses" in run]
            assert {run["lr"] for run in curves} == {entry["best_lr"]} and len(curves) == 2
        fcompass = task["contenders"]["default/FCompass"]
        assert fcompass["lr_multiplier"] == pytest.approx(fcompass["best_lr"] / task["adamw_best_lr"])
        assert fcompass["settings"]["lr"] == fcompass["best_lr"] and fcompass["settings"]["betas"] == [0.99, 0.999]
    assert set(document["overall"]) == {"default/FCompass"} and set(document["overall"]["default/FCompass"]) == OVERALL
    wins = document["overall"]["default/FCompass"]
    assert wins["wins"] + wins["ties"] + wins["losses"] == 2


def test_interrupted_and_crashed_suites_keep_what_finished() -> None:
    protocol = Protocol.fixed([1e-3], [0, 1])
    for task, stopped in ((INTERRUPTED, "interrupted"), (CRASHING, "RuntimeError: disk full")):
        suite = run_suite([BOWL, task], [adamw()], protocol, steps=4)
        assert suite.partial and suite.stopped == stopped
        assert [t.task.name for t in suite.tasks] == ["bowl", task.name]
        assert [len(t.results[0].runs) for t in suite.tasks] == [2, 1]
        assert to_json(suite)["partial"] is True


def test_state_bytes_sums_every_state_tensor() -> None:
    params = [torch.nn.Parameter(torch.zeros(10, 3))]
    optimizer = torch.optim.AdamW(params)
    params[0].grad = torch.ones(10, 3)
    optimizer.step()
    expected = sum(v.nbytes for v in optimizer.state[params[0]].values() if isinstance(v, torch.Tensor))
    assert state_bytes(optimizer) == expected >= 2 * 30 * 4


# -- contenders -----------------------------------------------------------------------------------


def test_select_puts_the_baselines_first_and_skips_missing_optional_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    contenders, skipped = select(["fcompass", "adamw"], ["rvc/FCompass"])
    assert [c.label for c in contenders] == [ADAMW, "default/Prodigy", "default/FCompass", "rvc/FCompass"]
    assert skipped == [] and [c.adaptive for c in contenders] == [False, True, False, False]
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    monkeypatch.delitem(sys.modules, "personalized.optimizers.prodigy")
    contenders, skipped = select(["fcompass"])
    assert [c.label for c in contenders] == [ADAMW, "default/FCompass"]
    assert [s.name for s in skipped] == ["default/Prodigy"] and "[prodigy]" in skipped[0].reason


def test_every_optimizer_is_a_contender_by_default_and_adafactor_also_with_a_fixed_lr() -> None:
    contenders, skipped = select()
    labels = {c.label for c in contenders} | {s.name for s in skipped}
    assert labels == {ADAMW, "chroma/adafactor"} | {f"default/{name}" for name in personalized.available()}
    adaptive = {c.label for c in contenders if c.adaptive}
    assert adaptive == {"default/Prodigy", "default/Automagic", "default/EnhancedAdafactor"}


def test_peers_are_pytorch_optimizers_relatives_built_at_the_swept_lr() -> None:
    contenders, skipped = select(["FCompass"], with_peers=True)
    peers = [c for c in contenders if c.peer is not None]
    assert [c.label for c in peers] == [f"pytorch_optimizer.{peer.name}" for peer in PEERS] and skipped == []
    for contender in peers:
        optimizer = contender.build([torch.nn.Parameter(torch.ones(3, 3))], 3e-3)
        assert optimizer.param_groups[0]["lr"] == 3e-3
    mars = next(c for c in peers if c.optimizer == "MARS").build([torch.nn.Parameter(torch.ones(3))], 3e-3)
    assert mars.param_groups[0]["lr_1d"] == 3e-3


def test_set_overrides_every_contender_that_takes_the_keyword_but_adamw() -> None:
    contenders, _ = select(["FCompass", "EnhancedAdafactor"])
    changed, taken = with_overrides(contenders, {"betas": (0.9, 0.99)})
    assert taken == {"betas": ["default/Prodigy", "default/FCompass"]}
    assert next(c for c in changed if c.label == ADAMW).overrides == {}
    with pytest.raises(ValueError, match="--set nonsense: no chosen optimizer takes this keyword"):
        with_overrides(contenders, {"nonsense": 1})


# -- the command ----------------------------------------------------------------------------------


def test_bench_command_runs_and_writes_its_outputs(
    bench_main: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--task", "quadratic", "--optimizers", "FCompass", "--steps", "3", "--seeds", "2"]
    argv += ["--lr", "1e-3,1e-2", "--set", "betas=(0.9,0.99)", "--workers", "1", "--out", str(tmp_path)]
    assert bench_main(argv) == 0
    out, err = capsys.readouterr()
    for label in (ADAMW, "default/Prodigy", "default/FCompass"):
        assert label in out
    assert "best lr" in out and "lr x AdamW" in out and "tolerance" in out and f"wrote {tmp_path}" in out
    assert "[1/1] quadratic: " in err and "--set betas applies to default/Prodigy, default/FCompass" in err
    names = {path.name for path in tmp_path.iterdir()}
    assert names == {"results.json", "results.md", "quadratic.png", "quadratic-lr.png", "summary.png"}
    document = json.loads((tmp_path / "results.json").read_text())
    fcompass = document["tasks"]["quadratic"]["contenders"]["default/FCompass"]
    assert fcompass["lr_grid"] == [1e-3, 1e-2] and fcompass["settings"]["betas"] == [0.9, 0.99]
    assert document["tasks"]["quadratic"]["contenders"][ADAMW]["settings"]["betas"] == [0.9, 0.999]
    assert "Protocol: every contender, AdamW included" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "quadratic-lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_bench_writes_a_partial_report(
    bench_main: object, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TASKS, "interrupted", INTERRUPTED)
    argv = ["bench", "--task", "quadratic,interrupted", "--optimizers", "adamw", "--lr", "1e-3"]
    assert bench_main([*argv, "--seeds", "2", "--steps", "3", "--workers", "1", "--out", str(tmp_path)]) == 130
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["partial"] is True and document["stopped"] == "interrupted"
    assert set(document["tasks"]) == {"quadratic", "interrupted"}
    assert "Partial results" in (tmp_path / "results.md").read_text() and (tmp_path / "quadratic.png").exists()
    assert "partial results (interrupted)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--task", "imagenet"], "unknown task 'imagenet'"),
        (["--task", "lorra"], "Did you mean lora"),
        (["--optimizers", "FCompas"], "Did you mean FCompass"),
        (["--presets", "rvc/nothing"], "Unknown preset 'rvc/nothing'"),
        (["--presets", "FCompass"], "is not a preset name"),
        (["--set", "nonsense=1"], "no chosen optimizer takes this keyword"),
    ],
)
def test_bad_bench_input_is_exit_2_in_one_line(
    bench_main: object, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert bench_main(["bench", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("personalized: error:") and words in err


def test_an_unwritable_out_is_exit_2_before_any_training(
    bench_main: object, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert bench_main(["bench", "--task", "quadratic", "--out", str(blocker / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"--out {blocker / 'out'}: cannot write there" in err


@pytest.mark.parametrize(
    "argv",
    [["speed"], ["--seeds", "0"], ["--steps", "ten"], ["--lr", "fast"], ["--lr", "-1"], ["--full", "--lr", "1e-3"]],
)
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


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_task_otherwise() -> None:
    suite = run_suite([BOWL], [adamw()], Protocol.fixed([1e-3], [0]), steps=2)
    piped = io.StringIO()
    bar = ProgressBar(10, stream=piped, terminal=False)
    bar.advance(5, "bowl: AdamW, lr 0.001, seed 0")
    assert piped.getvalue() == ""
    bar.task_done(suite.tasks[0], 1, 2)
    assert piped.getvalue().startswith("[1/2] bowl: 1 runs finished, 0:00 elapsed (about ")
    assert piped.getvalue().endswith(" left)\n")
    terminal = io.StringIO()
    drawn = ProgressBar(10, stream=terminal, terminal=True)
    drawn.advance(5, "bowl: AdamW, lr 0.001, seed 0")
    assert "[############............]  50%" in terminal.getvalue() and "bowl: AdamW" in terminal.getvalue()
    drawn.close()
    assert terminal.getvalue().endswith("\r\033[K")


def test_the_quick_suite_sizes_stay_small() -> None:
    """The default suite must stay a few minutes on 2 cores: small models, a few hundred steps."""
    for task in TASKS.values():
        problem = task.build(0)
        assert task.steps <= 400
        assert sum(p.numel() for p in problem.params) <= 40_000
