"""benchmarks/originals.py: its stand-ins of the originals compute what the originals computed, and it reports
every comparison (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest
import torch

import reference

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "originals.py"
SMOKE = ["--quick", "--steps", "1", "--rounds", "1", "--threads", "1", "--optimizers", "FCompass"]


@pytest.fixture(scope="module")
def originals():
    spec = importlib.util.spec_from_file_location("benchmark_originals", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


CLYBIUS = ["FCompass", "FishMonger", "FARMSCrop", "FARMSCropV2", "FMARSCrop", "FMARSCrop_ExMachina"]
RECORDED = [name for name in reference.cases(CLYBIUS, status="ok") if reference.load_meta(name)["dtype"] == "float32"]


@pytest.mark.parametrize("name", RECORDED)
def test_the_stand_ins_follow_the_originals_recordings(originals, name: str) -> None:
    """Teacher-forced, as tests/test_reference.py replays ours (FishMonger's clip=0 included: the
    original made it 1)."""
    case = reference.load(name)
    errors = reference.replay(case, originals.ORIGINALS[case.optimizer])
    assert max(errors) <= 1e-6, f"worst step {errors.index(max(errors))}: {max(errors):.3g}"


def test_every_clybius_optimizer_has_a_stand_in(originals) -> None:
    assert list(originals.ORIGINALS) == CLYBIUS
    assert len(RECORDED) == 20


def test_stand_ins_keep_the_originals_host_reads_and_grad_writes(originals) -> None:
    """Python max() on a tensor reads it on the host; FARMSCropV2 wrote into p.grad."""
    p = torch.nn.Parameter(torch.randn(8, 4))
    p.grad = torch.randn(8, 4)
    grad = p.grad.clone()
    optimizer = originals.OriginalFARMSCropV2([p])
    optimizer.step()
    assert not torch.equal(p.grad, grad)
    reads = []
    real = torch.Tensor.__bool__

    def counting(tensor: torch.Tensor) -> bool:
        reads.append(tensor)
        return real(tensor)

    torch.Tensor.__bool__ = counting
    try:
        optimizer.step()
    finally:
        torch.Tensor.__bool__ = real
    assert len(reads) >= 3  # the clips of the difference, the gradient and the natural gradient


def test_side_by_side_prints_both_tables_and_writes_json(originals, tmp_path) -> None:
    path = tmp_path / "figures.json"
    out = io.StringIO()
    originals.run(originals.parse_args([*SMOKE, "--relatives", "FAdam", "--json", str(path)]), out)
    printed = out.getvalue()
    header = [line for line in printed.splitlines() if line.startswith("| optimizer")]
    assert [cell.strip() for cell in header[0].split("|")[1:-1]] == [
        *("optimizer", "original / ours", "original / ours, foreach=False", "ours / fused AdamW"),
    ]
    assert [cell.strip() for cell in header[1].split("|")[1:-1]] == [
        *("optimizer", "nearest of ours", "theirs / ours", "theirs / fused AdamW", "their math"),
    ]
    assert "| pytorch_optimizer.FAdam | FCompass " in printed
    figures = json.loads(path.read_text())
    assert [row["optimizer"] for row in figures["originals"]] == ["FCompass"]
    row = figures["originals"][0]
    for key in ("original/ours", "original/ours foreach=False", "ours/fused AdamW"):
        assert row[key]["low"] <= row[key]["ratio"] <= row[key]["high"]
    assert [row["nearest"] for row in figures["relatives"]] == ["FCompass"]
    assert figures["notes"] == []


def test_missing_pytorch_optimizer_is_a_note(originals, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)
    out = io.StringIO()
    figures = originals.run(originals.parse_args([*SMOKE, "--relatives", "ADOPT"]), out)
    assert figures["relatives"] == []
    assert figures["notes"][0].startswith("pytorch_optimizer relatives skipped")
    assert figures["notes"][0] in out.getvalue()


@pytest.mark.parametrize("bad", [["--optimizers", "FCompas"], ["--relatives", "Lion"], ["--rounds", "0"]])
def test_bad_command_lines_exit_with_usage(originals, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as error:
        originals.parse_args(bad)
    assert error.value.code == 2
