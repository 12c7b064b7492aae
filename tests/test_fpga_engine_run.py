"""``python -m fpga run`` on a board with a network engine (fpga/engine_run.py), on the
dry-run port: the golden engine (``models.engine_bus.EngineBusModel``) behind the
byte-level model of the UARTBone bridge. The classes are scored against
``models.export.infer_folded`` and, per sampled chip, against ``models.engine.EngineModel``
on the same chip registers.
"""

import numpy as np
import pytest

from fpga.engine_run import EMULATED, NOT_EMULATED, chip_registers, golden_classes
from models.engine import EngineParams, image_cycles
from models.macro import MacroModel
from models.params import MacroParams

from .test_fpga_host import model_port_run


@pytest.fixture
def files(tmp_path, rng):
    net, x, labels, argv = model_port_run(tmp_path, rng)
    return net, x, labels, argv + ["--engine"]


def test_engine_run_streams_the_images_and_counts_cycles(files, capsys):
    from fpga.__main__ import main
    net, x, labels, argv = files
    # 5 slots: batches of 5, 5 and 2 images through the buffer.
    assert main(argv + ["--no-calibrate", "--image-slots", "5", "--benchmark",
                        "--freq", "50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("accuracy 75.00% (9/12 images) on fake, engine 32x16 P=16 L=0 "
                             "(2 banks, 5 image slots)"), out
    per_image = image_cycles(MacroParams(32, 16), [(25, 16, 5), (16, 4, 1)])
    assert out[1].startswith(f"engine: {per_image} cycles per image (ENGINE_CYCLES over 12 "
                             f"images), {50e6 / per_image:,.0f} images/s at 50 MHz"), out
    assert out[2] == (f"benchmark: CLASSIFY of 2 images already in the buffer: "
                      f"{2 * per_image} cycles, {per_image} per image, "
                      f"{50e6 / per_image:,.0f} images/s at 50 MHz"), out


def test_engine_chip_monte_carlo_equals_the_golden_model(files, capsys):
    from fpga.__main__ import main
    net, x, labels, argv = files
    assert main(argv + ["--chips", "2:5", "--trim"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("chip Monte Carlo on fake, engine 32x16"), out
    rows = out[3:6]
    p = EngineParams.for_model(net, image_slots=256)
    for seed, row in zip(range(2, 5), rows):
        golden = golden_classes(p, net, x, registers=chip_registers(p.macro, seed), trim=True)
        acc = 100.0 * np.sum(golden == labels) / len(labels)
        assert row == f"| {seed} | {acc:.2f}% | 12/12 |", row
    assert out[6].startswith("chips 2..4: mean ") and \
        "identical to the golden model on every image of every chip" in out[6], out
    assert out[7] == f"emulated: {EMULATED}; not emulated: {NOT_EMULATED}"


def test_chip_registers_cover_every_built_register():
    p = MacroParams(8, 6, nonideal={"offset", "gain", "readout", "table", "stuck"})
    regs = chip_registers(p, 7)
    assert set(regs) == {"offset", "gain", "table", "stuck_mask", "stuck_value", "sat", "qshift"}
    fresh = MacroModel(p)
    assert np.any(regs["offset"] != fresh.offset)           # the chip has offsets
    assert set(chip_registers(MacroParams(8, 6, nonideal=()), 7)) == set()


@pytest.mark.parametrize("extra, message", [
    (["--engine"], "argument --engine: makes the dry-run model (--port model) an engine"),
    (["--image-slots", "4"], "argument --image-slots: sizes the dry-run engine"),
])
def test_engine_options_need_the_model_port(tmp_path, capsys, extra, message):
    from fpga.__main__ import main
    code = main(["run", "--port", str(tmp_path / "tty"), "--model", str(tmp_path / "net"),
                 "--images", str(tmp_path / "i.idx"), "--labels", str(tmp_path / "l.idx")] + extra)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("option", ["--chips", "--benchmark"])
def test_engine_modes_on_a_bare_macro_are_one_line(files, capsys, option):
    from fpga.__main__ import main
    *_, argv = files
    argv = [a for a in argv if a != "--engine"] + ([option, "0:2"] if option == "--chips"
                                                   else [option])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {option}: needs a board with a network engine" \
        in err, err
