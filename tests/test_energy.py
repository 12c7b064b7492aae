"""The event model (models/energy.py): golden-model counts equal the closed-form formulas,
the presets reproduce their papers within their stated factors, bad preset files and bad
invocations of ``python -m models energy`` get one line and exit 2 (docs/ENERGY.md)."""

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

from models import energy as E
from models.export import save_folded
from models.macro import MacroModel, word_address
from models.params import CSR, MacroParams, Op
from tests.random_nets import random_net

PY = sys.executable


def random_params(rng) -> MacroParams:
    rows = int(rng.choice([1, 5, 17, 32, 64, 96]))
    cols = int(rng.choice([1, 3, 8, 12, 33]))
    divisors = [d for d in range(1, cols + 1) if cols % d == 0]
    return MacroParams(rows=rows, cols=cols, input_bits=int(rng.integers(1, 9)),
                       comp_rows=int(rng.choice([2, 4, 8, 16, 32])),
                       cols_per_cycle=int(rng.choice(divisors)), pipeline=int(rng.integers(0, 5)))


def _ones(m: MacroModel, planes: int) -> int:
    return int(m.input_planes[:planes].sum())


def _random_session(p: MacroParams, m: MacroModel, rng, steps: int) -> dict:
    """Random bus accesses and commands on ``m``; returns the events the formulas give."""
    want = dict.fromkeys(E.EVENTS, 0)

    def add(part):
        for k, v in part.items():
            want[k] += v

    for _ in range(steps):
        kind = rng.choice(["weight", "comp", "thresh", "flip", "input", "run", "calibrate",
                           "clear", "read", "bad_sel", "bad_region", "read_only", "bad_cmd"])
        g, s = int(rng.integers(p.groups)), int(rng.integers(p.cols_per_cycle))
        if kind == "weight":
            m.write(word_address(p, "WEIGHT", group=g, slot=s, chunk=int(rng.integers(p.chunks))),
                    int(rng.integers(1 << 32)))
            add(E.access_events(p, "WEIGHT"))
        elif kind == "comp":
            m.write(word_address(p, "COMP", group=g, slot=s), int(rng.integers(1 << 32)))
            add(E.access_events(p, "COMP"))
        elif kind == "thresh":
            m.write(word_address(p, "THRESH", group=g, slot=s), int(rng.integers(0, 8)))
            add(E.access_events(p, "THRESH"))
        elif kind == "flip":
            m.write(word_address(p, "FLIP", word=int(rng.integers(p.packed_words))),
                    int(rng.integers(1 << 32)))
            add(E.access_events(p, "FLIP"))
        elif kind == "input":
            m.write(word_address(p, "INPUT", plane=int(rng.integers(p.input_bits)),
                                 chunk=int(rng.integers(p.chunks))), int(rng.integers(1 << 32)))
            add(E.access_events(p, "INPUT"))
        elif kind == "run":
            planes = int(rng.integers(0, p.input_bits + 1))
            ones = _ones(m, planes or p.input_bits)
            m.write(CSR.CMD, Op.RUN | int(rng.integers(2)) << 4 | planes << 8)
            add(E.access_events(p))
            add(E.command_events(p, "run", planes or p.input_bits, ones))
        elif kind == "calibrate":
            m.write(CSR.CMD, Op.CALIBRATE)
            add(E.access_events(p))
            add(E.command_events(p, "calibrate"))
        elif kind == "clear":
            m.write(CSR.CMD, Op.CLEAR)
            add(E.access_events(p))
            add(E.command_events(p, "clear"))
        elif kind == "read":
            m.read(word_address(p, "ACC", group=g, slot=s))
            add(E.access_events(p))
        elif kind == "bad_sel":
            m.write(word_address(p, "WEIGHT", group=g, slot=s), 1, sel=0x3)
            add(E.access_events(p))
        elif kind == "bad_region":
            addr = (15 << p.region_shift) | 1
            if rng.integers(2):
                m.write(addr, 1)
            else:
                m.read(addr)
            add(E.access_events(p))
        elif kind == "read_only":
            m.write(word_address(p, "ACC", group=g, slot=s), 1)
            add(E.access_events(p))
        else:  # a bad command changes nothing but the error registers
            m.write(CSR.CMD, Op.RUN | (p.input_bits + 1) << 8 if p.input_bits < 15 else 7)
            add(E.access_events(p))
        if rng.integers(8) == 0:
            m.write(CSR.STATUS, 0b10100)      # W1C done/error/acc_sat: a CSR write
            add(E.access_events(p))
    return want


def test_golden_model_counts_equal_formulas(rng, seed):
    """Random parameter sets and random command sequences (faulty accesses included)."""
    for _ in range(25):
        p = random_params(rng)
        m = MacroModel(p)
        want = _random_session(p, m, rng, steps=40)
        got = m.events.as_dict()
        assert got == want, f"seed {seed}, {p}: " + ", ".join(
            f"{k} {got[k]} != {want[k]}" for k in E.EVENTS if got[k] != want[k])
        # The RTL counters are per-cycle sums of section 5's cycles.
        assert got["plane_operations"] * p.cols_per_cycle \
            + got["calibration_reads"] * p.cols_per_cycle == got["column_conversions"]


def test_counters_are_32_bit_saturating_and_clear():
    m = MacroModel(MacroParams(rows=32, cols=8))
    m.run(np.ones(32, np.int64))
    assert m.events.counters() == dict(plane_operations=5, column_conversions=40,
                                       calibration_reads=0, bus_accesses=0)
    big = E.EventCounts({"bus_accesses": (1 << 32) + 5, "plane_operations": (1 << 32) - 1})
    assert big.counters()["bus_accesses"] == (1 << 32) - 1
    assert big.counters()["plane_operations"] == (1 << 32) - 1
    assert big["bus_accesses"] == (1 << 32) + 5          # the exact count is kept
    m.clear_events()
    assert m.events == {}


def test_counting_changes_no_result(rng):
    """Two models, one with its counts cleared between commands: same state throughout."""
    p = MacroParams(rows=64, cols=12, cols_per_cycle=4, input_bits=4, pipeline=1)
    a, b = MacroModel(p), MacroModel(p)
    for m in (a, b):
        m.load_weights(rng.integers(0, 2, (64, 12)) if m is a else a.weights)
    x = rng.integers(0, 16, 64)
    for step in range(3):
        assert np.array_equal(a.run(x), b.run(x))
        b.clear_events()
    assert np.array_equal(a.calibrate(), b.calibrate())
    assert a.cycles == b.cycles and a.events["run_commands"] == 3


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("sizes, rows, cols, bits", [
    ((40, 20, 7), 32, 8, 3),       # 2 row tiles (reordered), 3 column tiles, padding
    ((20, 12, 5), 16, 12, 5),      # one tile per layer, last layer padded
    ((70, 33, 4), 32, 11, 2),      # 3 row tiles, 3 column tiles
])
def test_network_runner_counts_equal_formula(sizes, rows, cols, bits, rng, seed):
    from host.driver import MacroDriver
    from host.network import run_network
    from host.transport import ModelTransport

    net = random_net(rng, sizes, bits, rows, cols)
    from models.chip_readout import macro_params_for
    p = macro_params_for(net, comp_rows=4)
    m = MacroModel(p)
    driver = MacroDriver(ModelTransport(m), p)
    images = rng.integers(0, 1 << bits, (7, sizes[0]))
    run(run_network(driver, net, images))
    want = E.network_events(p, net, images)
    got = m.events.as_dict()
    assert got == want, f"seed {seed}: " + ", ".join(
        f"{k} {got[k]} != {want[k]}" for k in E.EVENTS if got[k] != want[k])


def test_formulas_are_the_manifests():
    from gen.manifest import build_manifest
    p = MacroParams(rows=32, cols=96, cols_per_cycle=4, pipeline=2)
    manifest = build_manifest(p, "module x; endmodule\n", [])
    events = manifest["events"]
    assert events["formulas"]["run"] == E.RUN_FORMULAS
    assert events["formulas"]["rtl_counters"] == list(E.RTL_COUNTERS)
    assert events["run"]["5"] == E.command_events(p, "run", 5, ones=0) | dict(
        data_wordline_activations="G*ones")
    assert events["calibrate"]["column_conversions"] == 96 * 4


# --- presets -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", E.PRESETS)
def test_preset_reproduces_its_paper(name):
    preset = E.load_preset(name)
    rows = E.paper_comparison(preset)
    assert any(r["kind"] == "predicted" for r in rows)
    assert any(r["kind"] == "fitted" for r in rows)
    for r in rows:
        ratio = r["ratio"]
        assert ratio is not None and 1 / r["factor"] <= ratio <= r["factor"], (name, r)
        if r["kind"] == "fitted":      # the paper's own configuration, headline within 2x
            assert r["factor"] <= 2 and 0.5 <= ratio <= 2, (name, r)


def test_presets_exact_fits():
    """The fitted numbers in the files are the figures they cite, rounded."""
    jssc = E.load_preset("jssc17")
    assert jssc.energy_pj["column_conversions"] == pytest.approx(630 / 640, rel=1e-6)
    jet = E.load_preset("jetcas19")
    report = E.evaluate_configuration(jet)
    assert report.tops_per_w == pytest.approx(700, rel=1e-5)
    assert report.tops_per_mm2 == pytest.approx(6, rel=1e-5)
    val = E.evaluate_configuration(E.load_preset("valavi18"))
    assert val.tops_per_w == pytest.approx(658, rel=1e-5)
    assert val.gops == pytest.approx(9438, rel=1e-5)
    assert val.area_mm2 is None


def _preset_json(name="jetcas19") -> dict:
    return json.loads(E.load_preset(name).path and open(E.load_preset(name).path).read())


BAD_PRESETS = [
    ("missing energy field", lambda d: d["energy"].pop("column_conversions"),
     "missing field 'column_conversions'"),
    ("negative energy", lambda d: d["energy"]["bitline_evaluations"].update(value=-1),
     "energy.bitline_evaluations.value: must be >= 0"),
    ("unknown unit", lambda d: d["energy"]["binarize_ops"].update(unit="kWh"),
     "unknown unit 'kWh'"),
    ("wrong type", lambda d: d["energy"]["binarize_ops"].update(value="0.5"),
     "must be a finite number, not '0.5'"),
    ("bool value", lambda d: d["clock"].update(value=True), "clock.value"),
    ("null energy", lambda d: d["energy"]["idle_cycles"].update(value=None),
     "must be a number, not null"),
    ("no source", lambda d: d["energy"]["idle_cycles"].update(source=""), "source"),
    ("missing clock", lambda d: d.pop("clock"), "missing field 'clock'"),
    ("zero clock", lambda d: d["clock"].update(value=0), "must be > 0"),
    ("clock unit", lambda d: d["clock"].update(unit="rpm"), "unknown unit 'rpm'"),
    ("unknown event", lambda d: d["energy"].update(sneeze=dict(value=1, unit="pJ", source="x")),
     "unknown event 'sneeze'"),
    ("bad area unit", lambda d: d["area"]["cell"].update(unit="acre"), "unknown unit 'acre'"),
    ("extra quantity field", lambda d: d["area"]["cell"].update(error=1), "unknown field 'error'"),
    ("bad format", lambda d: d.update(format="other"), "format"),
    ("bad version", lambda d: d.update(format_version=2), "format_version"),
    ("rows not int", lambda d: d["configuration"].update(rows=9.5), "rows: must be an integer"),
    ("bad folding", lambda d: d["configuration"].update(cols_per_cycle=7), "cols_per_cycle must divide"),
    ("planes > bits", lambda d: d["configuration"].update(planes=3), "planes: must be in 1..input_bits"),
    ("no predictions", lambda d: d.update(predictions=[]), "at least one published figure"),
    ("bad metric", lambda d: d["fitted"][0].update(metric="speed"), "unknown metric 'speed'"),
    ("bad factor", lambda d: d["fitted"][0].update(factor=0.5), "factor: must be a number >= 1"),
    ("figure unit", lambda d: d["fitted"][0]["published"].update(unit="pJ"),
     "unknown unit 'pJ' (allowed: TOPS/W)"),
    ("coverage keys", lambda d: d["coverage"].pop("io"), "coverage"),
    ("not an object", lambda d: d.clear() or d.update(x=1), "format"),
]


@pytest.mark.parametrize("what, mutate, message", BAD_PRESETS, ids=[b[0] for b in BAD_PRESETS])
def test_bad_preset_file_one_line_exit_2(what, mutate, message, tmp_path):
    data = _preset_json()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(E.PresetError, match=None) as info:
        E.load_preset(path)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def _cli(*args, cwd=None):
    return subprocess.run([PY, "-m", "models", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_bad_preset_via_cli(tmp_path):
    """One representative per kind through the command line (the table above covers the
    loader): one line on stderr, exit 2, nothing on stdout."""
    for mutate, message in ((BAD_PRESETS[1][1], "must be >= 0"), (BAD_PRESETS[2][1], "unknown unit")):
        data = _preset_json()
        mutate(data)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data))
        r = _cli("energy", "--preset", path)
        assert r.returncode == 2 and r.stdout == "", r
        assert r.stderr.count("\n") == 1 and message in r.stderr and "--preset" in r.stderr
    (tmp_path / "broken.json").write_text("{")
    for arg, message in ((tmp_path / "broken.json", "not JSON"), ("nosuch", "no such preset")):
        r = _cli("energy", "--preset", arg)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r


BAD_ARGS = [
    (["--rows", "32"], "give both or neither"),
    (["--rows", "33", "--cols", "8"], "--rows: rows must be 1..32 or a multiple of 32"),
    (["--rows", "32", "--cols", "8", "--cols-per-cycle", "3"], "--cols-per-cycle"),
    (["--rows", "32", "--cols", "8", "--planes", "6"], "--planes: must be in 1..5"),
    (["--count", "3"], "--count: selects the images of --model"),
    (["--fpga-report", "nosuch.json"], "--fpga-report"),
    (["--input-density", "x"], "input-density"),
    (["--model", "nosuch"], "--model"),
]


@pytest.mark.parametrize("args, message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_energy_bad_arguments(args, message):
    r = _cli("energy", "--preset", "jssc17", *args)
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_energy_cli_presets_and_macro(tmp_path):
    for name in E.PRESETS:
        r = _cli("energy", "--preset", name, "--json")
        assert r.returncode == 0, r.stderr
        out = _last_json(r.stdout)
        for key in ("energy_pj_per_decision", "tops_per_w", "area_mm2", "latency_ns", "events"):
            assert key in out
        assert "published figures" in r.stdout and "coverage:" in r.stdout
    r = _cli("energy", "--preset", "jetcas19", "--rows", "64", "--cols", "12",
             "--cols-per-cycle", "4", "--pipeline", "2", "--json")
    out = _last_json(r.stdout)
    assert out["events"]["plane_operations"] == 3 * 5 and out["latency_ns"] == pytest.approx(
        3 * (5 + 2 + 2) * 20)
    # A preset file that is a copy of a shipped one gives the same numbers.
    copy_path = tmp_path / "mine.json"
    copy_path.write_text(json.dumps(_preset_json("valavi18")))
    a = _last_json(_cli("energy", "--preset", copy_path, "--json").stdout)
    b = _last_json(_cli("energy", "--preset", "valavi18", "--json").stdout)
    assert a["energy_pj_per_decision"] == b["energy_pj_per_decision"]


def test_fpga_report_clock(tmp_path):
    p = MacroParams(rows=32, cols=96, cols_per_cycle=4, pipeline=2)
    report = dict(format="cim-fpga-report", board="icebreaker", params=p.to_dict(),
                  timing=dict(fmax_hz=27.3e6))
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    r = _cli("energy", "--preset", "jetcas19", "--fpga-report", path, "--json")
    assert r.returncode == 0, r.stderr
    out = _last_json(r.stdout)
    cycles = p.run_cycles(5)
    assert out["latency_ns"] == pytest.approx(cycles * 1e3 / 27.3)
    assert "achieved Fmax" in out["clock_source"]
    path.write_text(json.dumps(dict(report, timing=dict(fmax_hz=None))))
    r = _cli("energy", "--preset", "jetcas19", "--fpga-report", path)
    assert r.returncode == 2 and "fmax_hz" in r.stderr


def test_energy_of_a_network_and_eval_energy(tmp_path, rng):
    net = random_net(rng, (64, 32, 10), 5, 32, 32)
    net.meta["preprocessing"] = dict(source="sklearn-digits", normalisation="none")
    base = tmp_path / "net"
    save_folded(net, base)
    r = _cli("energy", "--preset", "jetcas19", "--model", base, "--count", "20", "--json")
    assert r.returncode == 0, r.stderr
    out = _last_json(r.stdout)
    from models.chip_readout import macro_params_for
    from models.datasets import load_dataset
    p = macro_params_for(net)
    x = load_dataset("digits").x_val[:20].astype(np.int64)
    want = E.network_events(p, net, x)
    assert out["events"]["plane_operations"] == pytest.approx(want["plane_operations"] / 20)
    assert out["energy_pj_per_image"] == pytest.approx(
        want["column_conversions"] / 20 * E.load_preset("jetcas19").energy_pj["column_conversions"])
    assert out["ops_per_decision"] == 2 * (64 * 32 + 32 * 10)
    r = _cli("eval", "--model", base, "--dataset", "digits", "--energy", "jssc17")
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("accuracy:")][0]
    assert "nJ and" in line and "per image (preset jssc17" in line
    r = _cli("eval", "--model", base, "--dataset", "digits", "--energy", "nosuch")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "argument --energy: " in r.stderr and "no such preset" in r.stderr
