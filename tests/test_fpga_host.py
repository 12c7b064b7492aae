"""The serial host path: SerialTransport framing and failure handling, then end to end in cocotb.

The first part drives :class:`host.serial_transport.SerialTransport` against
:class:`fpga.bridge_model.FakeBridgePort` (the bridge's byte-level model on a golden
macro, virtual time) and a real pyserial loopback; the second builds the board core
(UART, bridge, chip image, macro) as Verilog and runs ``verif/cocotb/fpga_host.py`` on
Icarus: the same driver, over the transport, over a bit-level UART line, into the RTL.
"""

import asyncio
import json
import shutil

import numpy as np
import pytest

from fpga.bridge_model import BoardBus, FakeBridgePort
from host.serial_transport import (SerialDesyncError, SerialLinkError, SerialTransport,
                                   encode_read, encode_write, split_runs)
from models.macro import MacroModel
from models.params import CSR, ID_MAGIC, MacroParams
from host.driver import MacroDriver
from host.transport import ModelTransport

from .random_nets import random_net


def run(coro):
    return asyncio.run(coro)


def fake_link(p, **kwargs):
    model = MacroModel(p)
    port = FakeBridgePort(BoardBus(model, p.addr_bits), bridge_timeout=0.1)
    return port, SerialTransport(port, **kwargs), model


# --- framing -------------------------------------------------------------------------------

def test_frames_and_runs():
    assert encode_write(0x12345678, [0xA1B2C3D4]) == bytes.fromhex("0101" "12345678" "a1b2c3d4")
    assert encode_read(7, 3) == bytes.fromhex("0203" "00000007")
    assert encode_read(7, 1, fixed=True)[0] == 0x04
    with pytest.raises(ValueError, match="1..255 words, not 256"):
        encode_read(0, 256)
    with pytest.raises(ValueError, match="not 0"):
        encode_write(0, [])
    assert split_runs([4, 5, 6, 9, 10, 3], 64) == [(4, 3), (9, 2), (3, 1)]
    assert split_runs(list(range(10)), 4) == [(0, 4), (4, 4), (8, 2)]
    assert split_runs([], 4) == []


def test_constructor_checks():
    port = FakeBridgePort(BoardBus(MacroModel(MacroParams(8, 8)), 10))
    with pytest.raises(ValueError, match=r"max_burst must be in \[1, 255\], not 256"):
        SerialTransport(port, max_burst=256)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        SerialTransport(port, retries=-1)
    with pytest.raises(ValueError, match="latency must be a finite number >= 0"):
        SerialTransport(port, latency=float("inf"))
    with pytest.raises(TypeError, match="port must have a write"):
        SerialTransport(object())
    with pytest.raises(ValueError, match="baudrate must be a positive integer"):
        SerialTransport(port, baudrate=0)


def test_bursts_go_out_as_single_frames(rng):
    p = MacroParams(32, 96)
    port, t, _ = fake_link(p, max_burst=64)
    words = [int(v) for v in rng.integers(0, 1 << 32, 96)]   # all of WEIGHT
    base = 1 << p.region_shift              # WEIGHT region, consecutive words
    run(t.write_burst([(base + i, w) for i, w in enumerate(words)]))
    assert t.frames == 2 and t.unconfirmed_words == 96
    assert run(t.read_burst([base + i for i in range(96)])) == words
    assert t.frames == 4 and t.unconfirmed_words == 0
    assert run(t.read(CSR.ID)) == ID_MAGIC
    with pytest.raises(ValueError, match="sel must be 0xF, not 0x3"):
        run(t.write(base, 1, sel=0x3))
    with pytest.raises(ValueError, match="read address must be in"):
        run(t.read(1 << 32))
    assert t.frames == 5                      # nothing went out for the rejected calls


def test_driver_over_serial_equals_golden_model(rng):
    """The same driver calls give the same answers over the UART bridge as on the model."""
    from models.export import infer_folded
    from host.network import run_network
    p = MacroParams(32, 12, cols_per_cycle=4)
    _, t, _ = fake_link(p)

    async def both():
        d = await MacroDriver.connect(t)
        g = MacroDriver(ModelTransport(MacroModel(p)), p)
        w = rng.choice([-1, 1], size=(32, 12))
        offsets = rng.integers(-6, 6, 12)
        for x in (d, g):
            await x.write_weights(w)
            await x.write_offsets(offsets)
            await x.calibrate()
        assert np.array_equal(await d.read_comp(packed=True), await g.read_comp(packed=True))
        v = rng.integers(0, 32, 32)
        assert np.array_equal(await d.matvec(v), await g.matvec(v))
        net = random_net(rng, (40, 12, 5), 5, 32, 12)
        images = rng.integers(0, 32, (3, 40))
        got, trace = await run_network(d, net, images, return_trace=True)
        want, want_trace = await run_network(g, net, images, return_trace=True)
        for a, b in zip(trace, want_trace):
            for key in a:
                assert np.array_equal(a[key], b[key]), key
        # With the offsets removed and COMP balanced the chip is ideal again.
        for x in (d, g):
            await x.write_offsets(np.zeros(12, int))
            await x.write_comp(np.full(12, (1 << p.comp_rows // 2) - 1))
        ideal = await run_network(d, net, images)
        return got, want, ideal, infer_folded(net, images, acc_bits=p.acc_bits)

    got, want, ideal, folded = run(both())
    assert np.array_equal(got, want)
    assert np.array_equal(ideal, folded)
    assert t.resyncs == 0


# --- failures -------------------------------------------------------------------------------

def test_silent_port_raises_a_clear_error_in_bounded_time():
    p = MacroParams(8, 8)
    port, t, _ = fake_link(p, retries=2, latency=0.05)
    port.silent = True
    with pytest.raises(SerialLinkError, match=r"no valid answer from the UARTBone bridge on fake "
                       r"\(read of 1 word\(s\) at 0x0: 0 of 4 answer bytes .* 3 tries\): is the "
                       r"board programmed"):
        run(MacroDriver.connect(t))
    assert t.resyncs == 3
    # Three tries, each a deadline and a resynchronisation of a few bridge timeouts.
    assert port.now < 3 * (0.1 + 10 * 0.2)


def test_lost_answer_byte_is_retried_transparently():
    p = MacroParams(8, 8)
    port, t, _ = fake_link(p)
    port.drop_answer_bytes.add(2)
    assert run(t.read(CSR.ID)) == ID_MAGIC
    assert t.retried == 1 and t.resyncs == 1


def test_garbage_before_an_answer_is_retried():
    p = MacroParams(8, 8)
    port, t, _ = fake_link(p)
    port.garbage_to_host[0] = b"\x42"
    assert run(t.read(CSR.ID)) == ID_MAGIC
    assert t.retried == 1


def test_garbage_towards_the_bridge_between_frames_is_skipped():
    p = MacroParams(8, 8)
    port, t, _ = fake_link(p)
    port.garbage_to_bridge[0] = bytes([0x00, 0x7F, 0xFF, 0x10])
    assert run(t.read(CSR.ID)) == ID_MAGIC
    assert t.resyncs == 0 and port.bridge_idle


def test_lost_byte_in_a_write_frame_is_a_desync_error(rng):
    p = MacroParams(8, 8)
    port, t, model = fake_link(p)
    drv = run(MacroDriver.connect(t))
    w = rng.choice([-1, 1], size=(8, 8))
    port.drop_host_bytes.add(port.sent + 8)
    with pytest.raises(SerialDesyncError, match=r"lost sync .* with 8 written word\(s\) "
                       r"unconfirmed .* reload it") as err:
        run(drv.write_weights(w))
    assert err.value.unconfirmed_words == 8
    assert port.bridge_idle and t.unconfirmed_words == 0
    # Resynchronised: reloading works and reads back right.
    run(drv.clear_errors())
    run(drv.write_weights(w))
    assert np.array_equal(run(drv.read_weights()), (w > 0).astype(np.uint8))


def test_lost_byte_without_pending_writes_resyncs_and_retries():
    """A lost byte of a read frame: the bridge waits, times out, and the retry succeeds."""
    p = MacroParams(8, 8)
    port, t, _ = fake_link(p)
    port.drop_host_bytes.add(3)
    assert run(t.read(CSR.ID)) == ID_MAGIC
    assert t.retried == 1 and port.bridge.timeouts == 1


def test_real_pyserial_loopback_is_not_a_bridge():
    """pyserial's loop:// echoes the frame: the transport sees stray bytes and gives up."""
    import serial
    port = serial.serial_for_url("loop://", baudrate=115200, timeout=0)
    t = SerialTransport(port, bridge_timeout=0.01, latency=0.01, retries=1)
    with pytest.raises(SerialLinkError, match="stray bytes on the line"):
        run(t.read(0))
    assert t.resyncs == 2


# --- end to end in cocotb --------------------------------------------------------------------

def _e2e(simulator, tmp_path, rng, pipeline=0):
    from fpga.top import chip_image
    from models.export import save_folded

    p = MacroParams(16, 8, cols_per_cycle=4, input_bits=4, pipeline=pipeline)
    image, summary = chip_image(p, seed=int(rng.integers(1 << 16)))
    assert summary["baked"] == ["offset"]
    src, cfg = board_files(p, image, tmp_path)
    net = random_net(rng, (20, 8, 4), 4, p.rows, p.cols)
    save_folded(net, tmp_path / "net")
    gold = MacroDriver(ModelTransport(MacroModel(p)), p)
    for a, d in image:
        gold.transport.model.write(a, d, 0xF)
    offsets = run(gold.read_offsets())
    assert np.any(offsets)                         # the chip has offsets to bake
    images = rng.integers(0, 16, (3, 20))
    np.savez(tmp_path / "data.npz", offsets=offsets, images=images)
    cfg.update(params=p.to_dict(), seed=int(rng.integers(1 << 31)),
               network=str(tmp_path / "net"), arrays=str(tmp_path / "data.npz"))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))

    run_board(simulator, tmp_path, src, "verif.cocotb.fpga_host", tests=2)


def board_files(p, image, tmp_path):
    """The board top for ``p`` (MacroParams or EngineParams) with the chip ``image`` as
    simulation Verilog in ``tmp_path``, and the clock and UART part of the cocotb test's
    configuration: ``(verilog path, cfg dict)``."""
    from fpga.sim import simulation_verilog
    from fpga.top import BoardCore

    divisor, period_ns, timeout_cycles = 4, 10, 3000
    core = BoardCore(p, divisor=divisor, timeout_cycles=timeout_cycles, image=image,
                     stretch_cycles=16)
    src = tmp_path / "board_core.v"
    src.write_text(simulation_verilog(core, "board_core"))
    assert "always @*" not in src.read_text()
    return src, dict(image=image, divisor=divisor, clock_period_ns=period_ns,
                     bridge_timeout_s=timeout_cycles * period_ns * 1e-9, latency_s=20e-6)


def run_board(simulator, tmp_path, src, module, *, tests):
    """Build the board Verilog ``src`` in ``tmp_path/build`` and run the cocotb module
    on it with ``tmp_path/cfg.json`` as its data; all ``tests`` must pass."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    runner = get_runner(simulator)
    # The flattened simulation netlist is not lint-clean (Yosys's proc output); the
    # generator's own Verilog is what the lint tests check.
    build_args = ["-Wno-fatal"] if simulator == "verilator" else []
    runner.build(sources=[src], hdl_toplevel="board_core", build_dir=tmp_path / "build",
                 timescale=("1ns", "1ps"), build_args=build_args)
    results = runner.test(test_module=module, hdl_toplevel="board_core",
                          build_dir=tmp_path / "build", test_dir=tmp_path,
                          extra_env={"FPGA_HOST_DATA": str(tmp_path / "cfg.json")})
    assert get_results(results) == (tests, 0)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_end_to_end_icarus(tmp_path, rng):
    _e2e("icarus", tmp_path, rng)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
@pytest.mark.parametrize("pipeline", [2, 4])
def test_end_to_end_icarus_pipelined(tmp_path, rng, pipeline):
    """The FPGA builds' macros behind the bridge: the iCE40 one (L = 2, ack two cycles
    late) and the ECP5 one (L = 4, registered decode, ack four cycles late)."""
    _e2e("icarus", tmp_path, rng, pipeline=pipeline)


@pytest.mark.slow
def test_end_to_end_verilator(tmp_path, rng):
    from verif.toolchain import apply_tool_env
    apply_tool_env()
    _e2e("verilator", tmp_path, rng)


# --- the command line ---------------------------------------------------------------------

def model_port_run(tmp_path, rng):
    """A random 25-16-4 network for a 32x16 macro and 12 images whose labels are its
    classes but for three: ``(net, x, labels, argv)``, ``argv`` the ``fpga run --port
    model`` command line over those files (75 % correct on an ideal chip)."""
    from models.datasets import save_idx
    from models.export import infer_folded, save_folded
    net = random_net(rng, (25, 16, 4), 5, 32, 16)
    save_folded(net, tmp_path / "net")
    images = rng.integers(0, 32, (12, 5, 5)).astype(np.uint8)
    x = images.reshape(12, -1).astype(np.int64)
    labels = infer_folded(net, x)
    labels[:3] = (labels[:3] + 1) % 4                 # three wrong labels: 75% correct
    save_idx(tmp_path / "images.idx", images)
    save_idx(tmp_path / "labels.idx", labels.astype(np.uint8))
    argv = ["run", "--port", "model", "--model", str(tmp_path / "net"),
            "--images", str(tmp_path / "images.idx"), "--labels", str(tmp_path / "labels.idx")]
    return net, x, labels, argv


def test_cli_run_on_the_model_port_prints_accuracy(tmp_path, rng, capsys):
    """``python -m fpga run --port model``: the whole host path, scored against infer_folded."""
    from fpga.__main__ import main
    *_, argv = model_port_run(tmp_path, rng)
    code = main(argv + ["--no-calibrate"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("accuracy 75.00% (9/12 images) on fake, macro 32x16 P=16"), out


def test_cli_run_reports_a_missing_port_in_one_line(tmp_path, rng, capsys):
    from fpga.__main__ import main
    from models.datasets import save_idx
    from models.export import save_folded
    save_folded(random_net(rng, (8, 4, 2), 5, 8, 4), tmp_path / "net")
    save_idx(tmp_path / "i.idx", np.zeros((2, 8), np.uint8))
    save_idx(tmp_path / "l.idx", np.zeros(2, np.uint8))
    code = main(["run", "--port", str(tmp_path / "no-such-tty"), "--model", str(tmp_path / "net"),
                 "--images", str(tmp_path / "i.idx"), "--labels", str(tmp_path / "l.idx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fpga: error: argument --port: ") and err.count("\n") == 1 \
        and "no-such-tty" in err, err


def test_cli_run_with_a_sampled_chip_calibrates_and_trims(tmp_path, rng, capsys):
    """``--port model --chip-seed S --trim``: the model gets chip S's offsets, CALIBRATE
    and the trim make it the ideal macro again (offsets only: the trim is exact)."""
    from fpga.__main__ import main
    from fpga.top import chip_image
    from models.datasets import save_idx
    from models.export import infer_folded, save_folded
    net = random_net(rng, (25, 16, 4), 5, 32, 16)
    save_folded(net, tmp_path / "net")
    images = rng.integers(0, 32, (40, 5, 5)).astype(np.uint8)
    want = infer_folded(net, images.reshape(40, -1).astype(np.int64))
    save_idx(tmp_path / "images.idx", images)
    save_idx(tmp_path / "labels.idx", want.astype(np.uint8))
    chip_seed = int(rng.integers(1 << 16))
    # The dry-run macro is MacroParams(32, 16): offsets (and SAT) are what it builds.
    image, summary = chip_image(MacroParams(32, 16), chip_seed)
    assert "offset" in summary["baked"]
    argv = ["run", "--port", "model", "--model", str(tmp_path / "net"), "--images",
            str(tmp_path / "images.idx"), "--labels", str(tmp_path / "labels.idx"),
            "--chip-seed", str(chip_seed)]
    assert main(argv + ["--trim"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("accuracy 100.00% (40/40 images) on fake"), lines
    assert lines[1].startswith("calibrated: ") and lines[2].startswith("trim: residual "), lines
    assert "nonzero in 0 of" not in lines[2]
    # Without --trim: calibrated, no trim line (tests/test_network.py shows what the
    # residual does to the results).
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("calibrated: "), lines


@pytest.mark.parametrize("extra, message", [
    (["--trim", "--no-calibrate"], "argument --trim: measures the residual that CALIBRATE leaves"),
    (["--chip-seed", "3"], "argument --chip-seed: gives the dry-run model (--port model) a sampled chip"),
    (["--range", "0:0"], "argument --range: range must be START:STOP with integers 0 <= START < STOP"),
])
def test_cli_run_rejects_contradicting_options_in_one_line(tmp_path, capsys, extra, message):
    from fpga.__main__ import main
    # Checked before any file is read or port opened: none of these exist.
    code = main(["run", "--port", str(tmp_path / "tty"), "--model", str(tmp_path / "net"),
                 "--images", str(tmp_path / "i.idx"), "--labels", str(tmp_path / "l.idx")] + extra)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fpga: error: ") and err.count("\n") == 1 and message in err, err
