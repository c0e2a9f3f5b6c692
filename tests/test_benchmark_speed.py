"""Smoke tests of benchmarks/speed.py: its functions run at tiny sizes and report the documented fields.

No timing is asserted; the benchmark's figures are for people to read.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest
import torch

import personalized

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
TINY_SHAPES = [(4, 8), (8, 4)]
TINY_MODEL = dict(width=16, depth=3, batch=2)
SPEED_FIELDS = {
    "optimizer",
    "ms_per_step",
    "adamw_ms_per_step",
    "ratio",
    "ratio_low",
    "ratio_high",
    "state_bytes_per_element",
    "adamw_state_bytes_per_element",
    "first_step_ms",
    "calls_per_step",
    "adamw_calls_per_step",
    "tiny_ratio",
    "options",
    "load_average",
    "round_ms",
    "adamw_round_ms",
}


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("benchmark_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy machine two threads wait for each other (and run() sets the count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_lora_set_is_the_one_the_issue_describes(speed) -> None:
    shapes = speed.lora_shapes()
    assert len(shapes) == 800
    assert speed.shape_elements(shapes) == 13_721_600
    assert {max(s) for s in shapes} == {320, 640, 1280, 2048}
    assert all(min(s) == 16 for s in shapes)
    assert speed.shape_elements(speed.lora_shapes(quick=True)) < 200_000


def test_state_bytes_counts_every_state_tensor_once(speed) -> None:
    params = speed.make_parameters(TINY_SHAPES)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    optimizer.step()
    elements = speed.element_count(params)
    steps = sum(state["step"].nbytes for state in optimizer.state.values())
    assert speed.state_bytes(optimizer) == 8 * elements + steps
    shared = torch.zeros(10)
    optimizer.state[params[0]]["view"] = shared[:5]
    optimizer.state[params[1]]["other_view"] = shared[5:]
    assert speed.state_bytes(optimizer) == 8 * elements + steps + shared.nbytes


def test_benchmark_optimizer_reports_every_field(speed) -> None:
    result = speed.benchmark_optimizer(
        "FCompass", speed.preset_factory("FCompass"), TINY_SHAPES, steps=1, rounds=3, warmup=0
    )
    assert set(vars(result)) == SPEED_FIELDS
    assert len(result.round_ms) == len(result.adamw_round_ms) == 3
    assert result.ratio == pytest.approx(result.ms_per_step / result.adamw_ms_per_step)
    assert result.ratio_low <= result.ratio_high
    assert result.state_bytes_per_element > 0
    assert result.adamw_state_bytes_per_element >= 8
    assert result.options == {}


def test_rounds_alternate_and_time_the_given_step_counts(speed) -> None:
    calls: list[str] = []

    class Counting(torch.optim.Optimizer):
        def __init__(self, label: str) -> None:
            super().__init__([torch.zeros(1, requires_grad=True)], {})
            self.label = label

        def step(self, closure=None) -> None:
            calls.append(self.label)

    base, cand = speed.interleaved_rounds(Counting("a"), Counting("b"), steps=1, rounds=2, base_steps=3)
    assert len(base) == len(cand) == 2
    assert calls == ["a", "a", "a", "b", "b", "a", "a", "a"]


def test_set_options_go_only_where_accepted(speed) -> None:
    args = speed.parse_args(["--set", "foreach=False", "--set", "bf16_state=True", "--optimizers", "FCompass"])
    assert args.options == {"foreach": False, "bf16_state": True}
    assert speed.accepted(personalized.FCompass, args.options) == args.options
    assert speed.accepted(personalized.get_optimizer("Prodigy"), args.options) == {}
    assert speed.accepted(torch.optim.AdamW, args.options) == {}
    optimizer = speed.preset_factory("FCompass", args.options)(speed.make_parameters(TINY_SHAPES))
    assert optimizer.defaults["foreach"] is False and optimizer.defaults["bf16_state"] is True
    result = speed.benchmark_optimizer(
        "FCompass", speed.preset_factory("FCompass", args.options), TINY_SHAPES, 1, 1, 0, args.options
    )
    assert result.state_bytes_per_element == pytest.approx(6.0, rel=0.01)  # three bf16 moments
    table = speed.speed_table([result])
    assert table.splitlines()[0].split("|")[-2].strip() == "options"
    assert "foreach=False, bf16_state=True" in table
    assert "options" not in speed.speed_table([speed.benchmark_optimizer("SGD", speed.fused_adamw, TINY_SHAPES, 1, 1)])


@pytest.mark.parametrize("text", ["foreach", "=1", "foreach=nope("])
def test_bad_set_options_exit_with_usage(speed, text: str) -> None:
    with pytest.raises(SystemExit) as error:
        speed.parse_args(["--set", text])
    assert error.value.code == 2


def test_memory_with_and_without_gradient_release(speed) -> None:
    plain, released = speed.memory_pair("FCompass", speed.preset_factory("FCompass"), **TINY_MODEL)
    assert (plain.release, released.release) == (False, True)
    model = speed.make_mlp(TINY_MODEL["width"], TINY_MODEL["depth"])
    all_grads = sum(p.nbytes for p in model.parameters())
    largest_grad = max(p.nbytes for p in model.parameters())
    assert plain.grad_high_water_bytes == all_grads
    assert released.grad_high_water_bytes == largest_grad
    for result in (plain, released):
        assert result.parameter_bytes == all_grads
        assert result.state_bytes > 0
        assert result.step_peak_bytes > 0
        assert result.peak_bytes == result.parameter_bytes + result.state_bytes + result.step_peak_bytes
        assert result.cuda_peak_bytes is None or result.cuda_peak_bytes > 0
    assert plain.step_peak_bytes > released.step_peak_bytes


def test_allocator_peak_sees_a_temporary(speed) -> None:
    size = 1 << 20
    peak = speed.allocator_peak_bytes(lambda: torch.ones(size // 4).sum(), warmup=0)
    assert size <= peak < 2 * size


def test_optimizers_without_release_get_one_memory_row(speed) -> None:
    results = speed.memory_pair("torch AdamW(fused)", speed.fused_adamw, **TINY_MODEL)
    assert [r.release for r in results] == [False]
    assert "| n/a " in speed.memory_table(results)


def test_missing_optional_package_is_skipped_with_a_note(speed, monkeypatch) -> None:
    real = personalized.get_optimizer

    def get_optimizer(name: str) -> type:
        if name == "Prodigy":
            raise ImportError("Prodigy needs the optional package 'prodigyopt'")
        return real(name)

    monkeypatch.setattr(personalized, "get_optimizer", get_optimizer)
    found, notes = speed.resolve_optimizers(["fcompass", "Prodigy"])
    assert found == [("FCompass", personalized.FCompass)]
    assert notes == ["skipped Prodigy: Prodigy needs the optional package 'prodigyopt'"]


def test_command_line_prints_tables_and_writes_json(speed, tmp_path) -> None:
    path = tmp_path / "figures.json"
    args = speed.parse_args(
        ["--quick", "--optimizers", "FCompass", "--steps", "1", "--rounds", "1", "--threads", "1", "--json", str(path)]
    )
    args.warmup = 0
    out = io.StringIO()
    speed.run(args, out)
    printed = out.getvalue()
    assert (
        "| optimizer | ms/step | AdamW ms/step | ratio | ratio range | tiny ratio | calls/step | state B/elem | load |"
        in printed
    )
    assert "| FCompass " in printed
    assert "fused AdamW: state 8." in printed
    assert "peak, release" in printed
    figures = json.loads(path.read_text())
    assert printed.startswith(f"{figures['machine']['date']}  torch {torch.__version__}")
    assert set(figures) == {"machine", "settings", "parameter_set", "notes", "speed", "memory"}
    assert figures["machine"]["threads"] == 1
    assert figures["parameter_set"]["tensors"] == len(speed.lora_shapes(quick=True))
    assert [set(row) for row in figures["speed"]] == [SPEED_FIELDS]
    assert [(row["optimizer"], row["release"]) for row in figures["memory"]] == [
        ("torch AdamW(fused)", False),
        ("FCompass", False),
        ("FCompass", True),
    ]


def test_command_line_rejects_unknown_names_and_bad_counts(speed, capsys) -> None:
    with pytest.raises(SystemExit):
        speed.parse_args(["--optimizers", "FCompas"])
    assert "Did you mean FCompass" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        speed.parse_args(["--rounds", "0"])
    assert speed.parse_args([]).optimizers == personalized.available()


def test_contention_warning_only_when_threads_would_spin_on_a_busy_machine(speed) -> None:
    busy = {"load_average": [3.0, 3.0, 3.0], "cpu_count": 2, "threads": 2, "omp_wait_policy": None}
    assert "OMP_WAIT_POLICY=PASSIVE" in speed.contention_warning(busy)
    assert speed.contention_warning({**busy, "load_average": [0.2, 0.2, 0.2]}) is None
    assert speed.contention_warning({**busy, "threads": 1}) is None
    assert speed.contention_warning({**busy, "omp_wait_policy": "passive"}) is None
    assert speed.contention_warning({**busy, "load_average": None}) is None
    assert "OMP_WAIT_POLICY=PASSIVE" in speed.machine_line({**speed.describe_machine(2), "omp_wait_policy": "PASSIVE"})


def test_calls_are_counted_per_step(speed) -> None:
    def steady(optimizer: torch.optim.Optimizer) -> int:
        optimizer.step()  # the first step also creates the state
        return speed.calls_per_step(optimizer)

    params = speed.make_parameters(speed.tiny_lora_shapes(quick=True))
    assert len(params) == 8 and max(p.numel() for p in params) == 2 * 32
    assert steady(speed.fused_adamw(params)) <= 4  # one fused kernel for all tensors
    # 100 tensors of two shapes: far fewer calls together than one by one.
    many = speed.tiny_lora_shapes()[:2] * 50
    together = steady(personalized.FCompass(speed.make_parameters(many)))
    alone = steady(personalized.FCompass(speed.make_parameters(many), foreach=False))
    assert together * 10 < alone


def test_first_step_time_is_shown_for_compiled_runs(speed) -> None:
    result = speed.benchmark_optimizer("SGD", speed.fused_adamw, TINY_SHAPES, 1, 1)
    assert "1st step s" not in speed.speed_table([result])
    result.options = {"compile": True}
    table = speed.speed_table([result])
    assert table.splitlines()[0].split("|")[-2].strip() == "1st step s"
    assert table.splitlines()[-1].split("|")[-2].strip() == f"{result.first_step_ms / 1000:.1f}"
