"""benchmarks/gpu_check.py in its CPU mode: every section is reported, parity passes, what is skipped says why.

No figure is asserted: the check is there to be read on a GPU.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import personalized

import reference

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
#: One float32-only optimizer and one with a bf16 recording; sections that take seconds here.
RUN = ["--device", "cpu", "--optimizers", "FCompass,REMASTER", "--rounds", "1", "--threads", "1"]
RUN += ["--sections", "parity,syncs,memory,bnb,prodigy,speed"]


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("benchmark_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def report(check, tmp_path_factory):
    """One CPU run: what it printed and the JSON it wrote."""
    path = tmp_path_factory.mktemp("gpu_check") / "figures.json"
    threads = torch.get_num_threads()
    out = io.StringIO()
    try:
        returned = check.run(check.parse_args([*RUN, "--json", str(path)]), out)
    finally:
        torch.set_num_threads(threads)
    figures = json.loads(path.read_text())
    assert figures["sections"].keys() == returned["sections"].keys()
    return out.getvalue(), figures


def test_every_section_is_in_the_json_in_order(check, report) -> None:
    _, figures = report
    assert list(figures["sections"]) == list(check.SECTIONS)
    assert set(check.SECTIONS) == {"parity", "syncs", "memory", "bnb", "prodigy", "speed", "compile", "plain"}
    assert figures["settings"]["device"] == "cpu" and figures["settings"]["small"] is True
    for section in figures["sections"].values():
        assert section["status"] in ("ran", "skipped")
        assert (section["reason"] is None) == (section["status"] == "ran")


def test_skipped_sections_carry_a_reason(report) -> None:
    printed, figures = report
    sections = figures["sections"]
    assert sections["compile"]["reason"] == "not in --sections"
    assert sections["plain"]["reason"] == "not in --sections"
    assert sections["bnb"]["reason"] == "AdamW8bitKahan is not in --optimizers"
    assert sections["prodigy"]["reason"] == "Prodigy is not in --optimizers"
    assert "== compile: skipped (not in --sections)" in printed


def test_parity_passes_on_the_cpu_on_every_path(report) -> None:
    parity = report[1]["sections"]["parity"]
    assert parity["passed"] is True
    expected = {name for name in reference.faithful() if name.split("__")[0] in ("FCompass", "REMASTER")}
    assert {row["case"] for row in parity["rows"]} == expected
    float32 = [row for row in parity["rows"] if row["unit"] == "abs"]
    assert {row["path"] for row in float32} == {"default", "foreach, 3 copies", "foreach=False"}
    assert len(float32) == 3 * len(expected & set(reference.faithful("float32")))
    bf16 = [row for row in parity["rows"] if row["unit"] != "abs"]
    assert [row["case"] for row in bf16] == ["REMASTER__bf16_default"]
    assert all(row["passed"] and row["error"] == row["cpu_error"] <= row["limit"] for row in parity["rows"])


def test_syncs_memory_and_speed_report_each_optimizer(report) -> None:
    sections = report[1]["sections"]
    syncs = sections["syncs"]["rows"]
    assert {(row["optimizer"], row["dtype"], row["foreach"]) for row in syncs} == {
        (name, dtype, foreach)
        for name in ("FCompass", "REMASTER")
        for dtype in ("float32", "bfloat16")
        for foreach in (True, False)
    }
    assert all(row["host_reads"] == 0 and row["cuda_syncs"] is None and row["passed"] for row in syncs)
    memory = {row["optimizer"]: row for row in sections["memory"]["rows"]}
    assert set(memory) == {"torch AdamW(fused)", "FCompass", "REMASTER"}
    assert all(memory["FCompass"][key] > 0 for key in ("plain", "release", "bf16_state", "release, bf16_state"))
    speed_rows = sections["speed"]["rows"]
    assert {(row["optimizer"], row["set"]) for row in speed_rows} == {
        (name, set_name) for name in ("FCompass", "REMASTER") for set_name in ("lora", "large", "sdxl")
    }
    assert all(row["ratio"] > 0 and row["target"] is None for row in speed_rows)  # targets are for GPUs


def test_parity_fails_when_the_update_changes(check, monkeypatch) -> None:
    class Doubled(personalized.FCompass):
        def __init__(self, params, lr: float = 1e-3, **kwargs) -> None:
            super().__init__(params, lr=2 * lr, **kwargs)

    monkeypatch.setattr(personalized, "get_optimizer", lambda name: Doubled)
    ctx = check.Context(torch.device("cpu"), [("FCompass", Doubled)], {"FCompass"}, True, 1, 1, check.Budget(60))
    section = check.Section("parity")
    check.run_parity(ctx, section)
    assert section.passed is False
    assert section.rows and all(row["passed"] is None and row["error"] is None for row in section.rows)
    assert all(row["cpu_error"] > row["limit"] for row in section.rows)
    assert {row["note"] for row in section.rows} == {"not reproduced on the CPU either: a fixed defect"}


def test_a_spent_budget_skips_everything_with_the_reason(check, tmp_path) -> None:
    path = tmp_path / "figures.json"
    check.run(check.parse_args([*RUN, "--budget", "0", "--json", str(path)]), io.StringIO())
    sections = json.loads(path.read_text())["sections"]
    chosen = {"parity", "syncs", "memory", "bnb", "prodigy", "speed"}
    assert {name for name, s in sections.items() if s["reason"] == "time budget of 0 s spent (--budget)"} == chosen


def test_a_failing_section_is_reported_and_the_others_run(check, monkeypatch, tmp_path) -> None:
    def broken(ctx, section) -> None:
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setitem(check.RUNNERS, "parity", broken)
    path = tmp_path / "figures.json"
    check.run(check.parse_args([*RUN[:-1], "parity,syncs", "--json", str(path)]), io.StringIO())
    sections = json.loads(path.read_text())["sections"]
    assert sections["parity"]["status"] == "failed"
    assert sections["parity"]["reason"] == "RuntimeError: no kernel image is available for execution on the device"
    assert sections["syncs"]["status"] == "ran"


def test_missing_bitsandbytes_is_skipped_with_a_note(check, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes raises ImportError
    ctx = check.Context(torch.device("cpu"), [], {"AdamW8bitKahan"}, True, 1, 1, check.Budget(60))
    section = check.Section("bnb")
    check.run_bnb(ctx, section)
    assert section.status == "skipped"
    assert section.reason.startswith("bitsandbytes is not installed here")
    assert section.reason.endswith("see --vendor")


def test_sdxl_lora_set_is_a_rank_16_unet_lora(check) -> None:
    shapes = check.sdxl_lora_shapes()
    assert len(shapes) == 2 * (70 * 10 + 11 * 2)  # 70 transformer blocks of 10 Linears, 11 proj_in/out pairs
    assert sum(a * b for a, b in shapes) == 42_557_440
    assert all(16 in shape for shape in shapes)
    assert max(max(shape) for shape in shapes) == 8 * 1280  # the GEGLU projection
    assert sum(a * b for a, b in check.sdxl_lora_shapes(small=True)) < 100_000


def test_wheels_in_the_vendor_folder_become_importable(check, tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "vendored_example-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("vendored_example/__init__.py", "VALUE = 7\n")
    unpacked = check.vendor_path(tmp_path)
    assert (unpacked / "vendored_example" / "__init__.py").read_text() == "VALUE = 7\n"
    (unpacked / "vendored_example" / "__init__.py").write_text("VALUE = 8\n")
    assert check.vendor_path(tmp_path) == unpacked  # unpacked once
    assert (unpacked / "vendored_example" / "__init__.py").read_text() == "VALUE = 8\n"
    assert check.vendor_path(tmp_path / "missing") is None


@pytest.mark.parametrize("bad", [["--sections", "parity,speeed"], ["--device", "tpu"], ["--budget", "-1"]])
def test_bad_command_lines_exit_with_usage(check, bad: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as error:
        check.parse_args(bad)
    assert error.value.code == 2
    assert bad[0] in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(check, capsys) -> None:
    with pytest.raises(SystemExit):
        check.parse_args(["--device", "cuda"])
    assert "sees no CUDA device" in capsys.readouterr().err
