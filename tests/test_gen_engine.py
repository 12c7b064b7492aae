"""``python -m gen`` building a network engine (docs/GEN.md "Network engine",
docs/ENGINE.md): sized for a model or by capacity options, its manifest against the
golden model's map, program and cycle formulas, the rebuild command, nothing written on
bad input (the one-line errors themselves are rows of tests/test_cli_bad_input.py).
"""

import hashlib
import json

import pytest

from gen import cli
from gen.engine_manifest import ENGINE_MANIFEST_FORMAT
from models.engine import EngineParams, build_program, image_cycle_terms, program_words
from models.export import save_folded
from models.params import MacroParams
from models.schema import check

from .random_nets import random_net
from .test_gen_cli import run_gen


@pytest.fixture
def model(tmp_path, rng):
    """A random 2-layer model for an 8x6 macro: 20-9-7 with 4-bit inputs (3 and 2 row
    tiles, 2 and 2 column tiles: 10 banks)."""
    net = random_net(rng, (20, 9, 7), 4, 8, 6)
    save_folded(net, tmp_path / "tiny")
    return tmp_path / "tiny", net


def _generate(argv, capsys, tmp_path):
    out = tmp_path / "out"
    status = cli.main([*argv, "-o", str(out)])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    return out, printed.out


def test_engine_sized_for_a_model(model, capsys, tmp_path):
    path, net = model
    out, printed = _generate(["--rows", "8", "--cols", "6", "--input-bits", "4", "--ideal",
                              "--model", str(path)], capsys, tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["cim_engine.json", "cim_engine.v"]
    text = (out / "cim_engine.v").read_text()
    assert "module cim_engine(" in text
    manifest = json.loads((out / "cim_engine.json").read_text())
    check(manifest, "engine-manifest", "cim_engine.json")
    assert manifest["format"] == ENGINE_MANIFEST_FORMAT
    macro = MacroParams(8, 6, input_bits=4, nonideal=frozenset())
    params = EngineParams(macro, image_slots=cli.DEFAULT_IMAGE_SLOTS, **EngineParams.needs(net))
    assert params.weight_banks == 10 and params.layers == 2 and params.max_width == 20
    assert {k: manifest["params"][k] for k in ("weight_banks", "layers", "image_slots",
                                               "max_width")} == \
        dict(weight_banks=10, layers=2, image_slots=cli.DEFAULT_IMAGE_SLOTS, max_width=20)
    # The map is the golden model's: every CSR's address and reset value, every region.
    regmap = manifest["register_map"]
    assert regmap["addr_bits"] == params.addr_bits
    assert regmap["region_shift"] == params.region_shift
    assert {c["name"]: (c["address"], c["reset"]) for c in regmap["csrs"]} == \
        {c["name"]: (c["offset"], c["reset"]) for c in params.csrs()}
    assert [r["name"] for r in regmap["regions"]] == \
        [r["name"] for r in sorted(params.regions(), key=lambda r: r["region"])]
    # The model's program and its cycles per image, from the golden model.
    program = build_program(net, macro)
    section = manifest["model"]
    assert section["program_words"] == program_words(program).tolist()
    assert section["cycles_per_image"] == program.image_cycles() == \
        manifest["cycles"]["model"]["cycles_per_image"]
    assert manifest["cycles"]["model"]["terms"] == image_cycle_terms(
        macro, [(l.inputs, l.outputs, l.planes) for l in program.layers])
    assert [f["file"] for f in section["files"]] == ["tiny.json", "tiny.npz"]
    assert section["files"][1]["sha256"] == hashlib.sha256(
        path.with_suffix(".npz").read_bytes()).hexdigest()
    assert manifest["verilog"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert "10 weight banks, 2 layers" in printed and \
        f"{program.image_cycles()} cycles per image" in printed


def test_capacity_options_enlarge_and_the_command_rebuilds(model, capsys, tmp_path):
    path, net = model
    out, _ = _generate(["--rows", "8", "--cols", "6", "--input-bits", "4", "--ideal",
                        "--model", str(path), "--weight-banks", "12", "--image-slots", "5",
                        "--name", "eng"], capsys, tmp_path)
    manifest = json.loads((out / "eng.json").read_text())
    assert manifest["params"]["weight_banks"] == 12 and manifest["params"]["image_slots"] == 5
    assert manifest["params"]["layers"] == 2
    # Without the model, the recorded command gives the same Verilog.
    argv = manifest["command"].split()[3:]
    again = tmp_path / "again"
    assert cli.main([*argv, "-o", str(again)]) == 0
    capsys.readouterr()
    assert (again / "eng.v").read_bytes() == (out / "eng.v").read_bytes()
    second = json.loads((again / "eng.json").read_text())
    assert second["model"] is None and "model" not in second["cycles"]
    assert second["verilog"] == manifest["verilog"]


def test_engine_without_a_model(capsys, tmp_path):
    out, printed = _generate(["--rows", "4", "--cols", "4", "--input-bits", "2", "--ideal",
                              "--weight-banks", "3", "--layers", "2", "--max-width", "9",
                              "--image-slots", "2"], capsys, tmp_path)
    manifest = json.loads((out / "cim_engine.json").read_text())
    check(manifest, "engine-manifest", "cim_engine.json")
    assert manifest["model"] is None
    words = {c["name"]: c["reset"] for c in manifest["register_map"]["csrs"]}
    assert (words["WEIGHT_BANKS"], words["LAYERS"], words["IMAGE_SLOTS"],
            words["MAX_WIDTH"]) == (3, 2, 2, 9)
    assert words["ID"] == 0x43694531
    assert "cycles per image" not in printed


def test_a_model_that_does_not_fit_writes_nothing(model, tmp_path):
    path, _ = model
    out = tmp_path / "out"
    result = run_gen(["--rows", "8", "--cols", "6", "--input-bits", "4", "--model", path,
                      "--max-width", "19", "-o", out])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--max-width" in result.stderr
    assert "layer 0 has 20 inputs" in result.stderr
    assert not out.exists()


def test_the_bare_macro_is_unchanged_by_the_engine_options(capsys, tmp_path):
    out, printed = _generate(["--rows", "4", "--cols", "4", "--ideal"], capsys, tmp_path)
    manifest = json.loads((out / "cim_macro.json").read_text())
    assert manifest["format"] == "cim-bnn-kit macro manifest"
    assert "engine" not in printed


@pytest.mark.parametrize("option", ["--weight-banks", "--layers", "--max-width"])
def test_each_capacity_is_required_without_a_model(option, capsys, tmp_path):
    argv = ["--rows", "4", "--cols", "4", "--weight-banks", "3", "--layers", "2",
            "--max-width", "9"]
    i = argv.index(option)
    del argv[i:i + 2]
    assert cli.main([*argv, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {option}:" in err
    assert not (tmp_path / "o").exists()


def test_an_unasked_accumulator_width_is_the_models(model, tmp_path):
    """A model whose sums need a wider accumulator than the default: without --acc-bits
    (and in fpga build, which has none) the engine takes the model's width; an --acc-bits
    below it is a one-line error naming the option."""
    import argparse

    path, net = model
    default = MacroParams(8, 6, input_bits=4).acc_bits
    net.layers[0].acc_max = 1 << (default + 1)
    assert net.min_acc_bits > default
    save_folded(net, path)
    fpga_build_like = argparse.Namespace(model=str(path))      # no acc_bits attribute
    build = cli.engine_from_args(fpga_build_like, MacroParams(8, 6, input_bits=4))
    assert build.params.macro.acc_bits == net.min_acc_bits
    unasked = argparse.Namespace(model=str(path), acc_bits=None)
    build = cli.engine_from_args(unasked, MacroParams(8, 6, input_bits=4))
    assert build.params.macro.acc_bits == net.min_acc_bits
    asked = argparse.Namespace(model=str(path), acc_bits=default)
    with pytest.raises(cli.UsageError) as err:
        cli.engine_from_args(asked, MacroParams(8, 6, input_bits=4, acc_bits=default))
    assert err.value.option == "--acc-bits"
    assert f"needs acc_bits >= {net.min_acc_bits}" in str(err.value)


@pytest.mark.parametrize("pipeline, latency", [(0, 1), (1, 3), (2, 3), (3, 3)])
def test_engine_manifest_gives_the_engine_ack_latency(pipeline, latency):
    """The engine's ack latency (an access acts a cycle late with a pipeline), not the
    macro's, and the rule's text with it."""
    from gen.engine_manifest import build_engine_manifest
    ep = EngineParams(MacroParams(8, 4, pipeline=pipeline), weight_banks=2, layers=2,
                      image_slots=1, max_width=8)
    regmap = build_engine_manifest(ep, "cim_engine", "module cim_engine(); endmodule\n",
                                   [])["register_map"]
    assert regmap["ack_latency"] == ep.bus_latency == latency
    assert f"{latency} for L = {'1..3' if pipeline else 0}" in regmap["ack_rule"]
