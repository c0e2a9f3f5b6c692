"""The personalized command line: list, show, presets, export; bad input is exit code 2 in one line."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import pytest
import tomllib

import personalized
from personalized import presets
from personalized.cli import main

from conftest import make_params


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_every_optimizer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert all(name in out for name in personalized.available())
    assert "[needs the bnb extra]" in out


def test_show_lists_hyperparameters_defaults_and_quirks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "fcompass")
    assert code == 0
    assert "betas" in out and "(0.99, 0.999)" in out and "each >= 0 and < 1" in out
    assert "Differences from the original / known quirks" in out and "31.6x" in out
    assert "rvc/FCompass" in out


def test_presets_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "rvc/FCompass" in out and "chroma/scorn" in out
    code, out, _ = run(capsys, "presets", "show", "rvc/FCompass")
    assert code == 0
    assert "if training goes NaN, try in order:" in out and "1. centralization=0.0" in out
    assert "Clybius README" in out


def test_export_kohya_args_parse_the_way_kohya_parses_them(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export", "rvc/FCompass", "--to", "kohya-args")
    assert code == 0
    words = shlex.split(out)
    assert words[:4] == ["--optimizer_type", "personalized.FCompass", "--learning_rate", "0.0001"]
    args = words[words.index("--optimizer_args") + 1 :]
    kwargs = {}
    for arg in args:  # kohya: key, value = arg.split("="); value = ast.literal_eval(value)
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    optimizer = getattr(personalized, words[1].split(".")[1])(make_params(), lr=float(words[3]), **kwargs)
    assert optimizer.defaults["betas"] == (0.9, 0.99)


def test_export_kohya_ss_json_survives_the_gui_quoting(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export", "chroma/scorn-full", "--to", "kohya_ss-json")
    data = json.loads(out)
    assert code == 0 and data["optimizer"] == "personalized.SCORN"
    assert '"' not in data["optimizer_args"]
    # The GUI splits on whitespace after stripping double quotes; every piece must be key=value.
    pieces = data["optimizer_args"].replace('"', "").split()
    kwargs = {key: ast.literal_eval(value) for key, value in (piece.split("=") for piece in pieces)}
    personalized.SCORN(make_params(), lr=data["learning_rate"], **kwargs)


def test_export_toml_builds_the_optimizer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export", "chroma/persona", "--to", "toml")
    table = tomllib.loads(out)["optimizer"]
    assert code == 0 and table["type"] == "PersonalizedPersonaOptimizer"
    assert isinstance(table["betas"], list)
    kwargs = {key: value for key, value in table.items() if key != "type"}
    assert personalized.PersonaOptimizer(make_params(), **kwargs).defaults["focus_boost"] == 0.05


def test_export_onetrainer_json_maps_betas_and_notes_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "rvc/FCompass", "--to", "onetrainer-json")
    data = json.loads(out)
    assert code == 0
    assert data["optimizer"]["optimizer"] == "PERSONALIZED_FCOMPASS"
    assert (data["optimizer"]["beta1"], data["optimizer"]["beta2"]) == (0.9, 0.99)
    assert data["optimizer_defaults"]["PERSONALIZED_FCOMPASS"] == data["optimizer"]
    assert "no field for clip, centralization" in err


def test_export_json_round_trips_to_create_optimizer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export", "default/FMARSCrop_ExMachina", "--to", "json")
    data = json.loads(out)
    optimizer = personalized.get_optimizer(data["optimizer"])(make_params(), **data["kwargs"])
    assert code == 0 and optimizer.defaults["lr"] == 1.5e-4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "FCompas"], "Unknown optimizer 'FCompas'. Did you mean FCompass?"),
        (["presets", "show", "rvc/nope"], "Unknown preset 'rvc/nope'."),
        (["export", "rvc/FCompass", "--to", "kohya"], "invalid choice: 'kohya'"),
        (["export", "nope", "--to", "toml"], "Unknown preset 'nope'."),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    _, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_no_command_shows_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and not out
    for command, meaning in (("list", "list every optimizer"), ("presets", "list the presets"), ("install", "enable")):
        assert re.search(rf"^ +{command} +{meaning}", err, flags=re.M)
    assert "the following arguments are required" not in err


def test_presets_without_a_presets_folder_say_where_to_put_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(presets, "SEARCH_PATH", (tmp_path / "nowhere",))
    monkeypatch.delenv("PERSONALIZED_PRESETS", raising=False)
    code, out, err = run(capsys, "presets")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert f"copy the repository's presets folder to {presets.PACKAGE / '_presets'}" in err
    code, _, err = run(capsys, "presets", "show", "rvc/FCompass")
    assert code == 2 and str(presets.PACKAGE / "_presets") in err
