"""Freed CPU temporaries stay in the process (glibc) once an optimizer is built on CPU parameters: fewer page
faults, and an opt-out."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

#: A fresh process: the setting is process-wide and applied once.
FAULTS = """
import json, resource, sys, torch
import personalized
from personalized import cpu_memory

def churn():
    # what an eager update does: a dozen 4 MiB temporaries, then all freed
    temporaries = [torch.ones(1 << 20) for _ in range(12)]
    del temporaries

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        churn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if sys.argv[1] == "construct":  # no step: the setting belongs to the construction
    personalized.FCompass([torch.nn.Parameter(torch.zeros(16, 16))])
churn()
print(json.dumps({"applied": cpu_memory._applied, "faults": faults()}))
"""


def run(mode: str, **env: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout)


def test_an_optimizer_built_on_cpu_parameters_keeps_freed_memory_and_saves_page_faults() -> None:
    kept = run("construct")
    returned = run("import only")
    assert kept["applied"] is True
    assert returned["applied"] is None  # importing alone changes nothing
    # 5 rounds of 48 MiB: up to 60,000 faults of 4 KiB when freed memory goes back (none when kept)
    assert returned["faults"] > 5_000
    assert kept["faults"] < returned["faults"] / 10


def test_the_environment_turns_it_off() -> None:
    result = run("construct", PERSONALIZED_KEEP_FREED_MEMORY="0")
    assert result["applied"] is False
    assert result["faults"] > 5_000
