"""The command line ``python -m gen``: options, one-line errors, nothing written on bad input,
the manifest's register map, atomic writes, and byte-identical output run after run.

Bad invocations run the real command in a subprocess (``sys.executable -m gen`` from the
repository root) because the exit status, the stderr line and the absence of files are
what a user sees. The in-process tests use the same functions the command uses.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import gen
from gen import cli, emit, manifest
from models.params import (CSR, DEFAULT_NONIDEALITIES, NONIDEALITIES, Region, MacroParams)

ROOT = Path(__file__).resolve().parent.parent


def gen_command(args, cwd=ROOT, hash_seed="0", yosys=None):
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed  # differs between the determinism test's two runs
    # From a foreign cwd the package must still be importable; the CLI sets the Yosys itself.
    env["PYTHONPATH"] = str(ROOT)
    env.pop("AMARANTH_USE_YOSYS", None)
    if yosys is not None:
        env["AMARANTH_USE_YOSYS"] = yosys
    return dict(args=[sys.executable, "-m", "gen", *map(str, args)], cwd=cwd, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_gen(args, cwd=ROOT, timeout=300, hash_seed="0", yosys=None):
    return subprocess.run(**gen_command(args, cwd, hash_seed, yosys), timeout=timeout)


def run_gen_parallel(*calls, timeout=300):
    """Several ``run_gen(**call)`` at once (the machine has more than one core)."""
    procs = [subprocess.Popen(**gen_command(**call)) for call in calls]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def tree(path: Path):
    """Every path under ``path`` (relative), to show that nothing was created."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- bad input: exit 2, one stderr line naming option, value and what is allowed ----------

#: (id, arguments without -o, fragments the one stderr line must contain)
BAD_PARAMS = [
    ("rows-zero", ["--rows", "0", "--cols", "4"], ["--rows", "not 0", "multiple of 32 up to 1024"]),
    ("rows-negative", ["--rows", "-3", "--cols", "4"], ["--rows", "not -3", "multiple of 32 up to 1024"]),
    ("rows-float", ["--rows", "3.5", "--cols", "4"], ["--rows", "'3.5'", "integer", "multiple of 32"]),
    ("rows-text", ["--rows", "abc", "--cols", "4"], ["--rows", "'abc'", "integer"]),
    ("rows-huge", ["--rows", str(10**9), "--cols", "4"], ["--rows", f"not {10**9}", "multiple of 32 up to 1024"]),
    ("rows-40", ["--rows", "40", "--cols", "4"], ["--rows", "not 40", "multiple of 32"]),
    ("rows-2000", ["--rows", "2048", "--cols", "4"], ["--rows", "not 2048", "1024"]),
    ("cols-zero", ["--rows", "32", "--cols", "0"], ["--cols", "not 0", "[1, 1024]"]),
    ("cols-missing", ["--rows", "32"], ["--cols", "required"]),
    ("comp-rows-6", ["--rows", "32", "--cols", "4", "--comp-rows", "6"],
     ["--comp-rows", "not 6", "power of two"]),
    ("comp-rows-64", ["--rows", "32", "--cols", "4", "--comp-rows", "64"],
     ["--comp-rows", "not 64", "[2, 32]"]),
    ("input-bits-0", ["--rows", "32", "--cols", "4", "--input-bits", "0"],
     ["--input-bits", "not 0", "[1, 8]"]),
    ("input-bits-9", ["--rows", "32", "--cols", "4", "--input-bits", "9"],
     ["--input-bits", "not 9", "[1, 8]"]),
    ("readout-bits-narrow", ["--rows", "32", "--cols", "4", "--comp-rows", "8", "--readout-bits", "6"],
     ["--readout-bits", "not 6", ">= 7"]),
    ("readout-bits-wide", ["--rows", "32", "--cols", "4", "--readout-bits", "17"],
     ["--readout-bits", "not 17", "16"]),
    ("acc-bits-small", ["--rows", "32", "--cols", "4", "--acc-bits", "11"],
     ["--acc-bits", "not 11", "[12, 32]"]),
    ("acc-bits-big", ["--rows", "32", "--cols", "4", "--acc-bits", "33"],
     ["--acc-bits", "not 33", "32"]),
    ("cols-per-cycle-no-divisor", ["--rows", "32", "--cols", "96", "--cols-per-cycle", "7"],
     ["--cols-per-cycle", "not 7", "divide", "48"]),
    ("cols-per-cycle-too-big", ["--rows", "32", "--cols", "4", "--cols-per-cycle", "8"],
     ["--cols-per-cycle", "not 8", "[1, 4]"]),
    ("pipeline-too-deep", ["--rows", "32", "--cols", "96", "--pipeline", "5"],
     ["--pipeline", "not 5", "[0, 4]"]),
    ("pipeline-not-int", ["--rows", "32", "--cols", "96", "--pipeline", "two"],
     ["--pipeline", "'two'", "0..4"]),
    ("unknown-option", ["--rows", "32", "--cols", "4", "--bogus", "1"], ["--bogus", "--help"]),
    ("abbreviated-option", ["--row", "32", "--cols", "4"], ["--row", "--help"]),
    ("unknown-nonideality", ["--rows", "32", "--cols", "4", "--nonideal", "offset,noise"],
     ["--nonideal", "'noise'", "offset, gain, readout, table, stuck"]),
    ("conflicting-nonideal", ["--rows", "32", "--cols", "4", "--ideal", "--all-nonidealities"],
     ["--all-nonidealities", "--ideal", "not allowed"]),
    ("name-digit", ["--rows", "32", "--cols", "4", "--name", "1abc"],
     ["--name", "'1abc'", "identifier"]),
    ("name-dash", ["--rows", "32", "--cols", "4", "--name", "my-macro"],
     ["--name", "'my-macro'", "identifier"]),
    ("name-keyword", ["--rows", "32", "--cols", "4", "--name", "module"],
     ["--name", "'module'", "keyword"]),
    ("name-long", ["--rows", "32", "--cols", "4", "--name", "a" * 300],
     ["--name", "300", "at most 128"]),
]


def assert_one_line_error(result, fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gen: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == "", result.stdout


@pytest.mark.parametrize("args, fragments", [case[1:] for case in BAD_PARAMS],
                         ids=[case[0] for case in BAD_PARAMS])
def test_bad_parameter_is_one_line_exit_2_and_writes_nothing(tmp_path, args, fragments):
    out = tmp_path / "out"
    result = run_gen([*args, "-o", out])
    assert_one_line_error(result, fragments)
    assert tree(tmp_path) == []


def test_output_path_is_an_existing_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me\n")
    result = run_gen(["--rows", "2", "--cols", "3", "-o", target])
    assert_one_line_error(result, ["-o/--out", str(target), "existing file"])
    assert target.read_text() == "keep me\n"
    assert tree(tmp_path) == ["taken"]


def test_output_dir_below_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker / "sub" / "dir"
    result = run_gen(["--rows", "2", "--cols", "3", "-o", out])
    assert_one_line_error(result, ["-o/--out", str(out), str(blocker), "not a folder"])
    assert tree(tmp_path) == ["blocker"]


def test_output_file_name_taken_by_a_folder(tmp_path):
    (tmp_path / "cim_macro.json").mkdir()
    result = run_gen(["--rows", "2", "--cols", "3", "-o", tmp_path])
    assert_one_line_error(result, ["-o/--out", "cim_macro.json", "folder"])
    assert tree(tmp_path) == ["cim_macro.json"]


def test_empty_output_path(tmp_path):
    result = run_gen(["--rows", "2", "--cols", "3", "-o", ""], cwd=tmp_path)
    assert_one_line_error(result, ["-o/--out", "empty"])
    assert tree(tmp_path) == []


def test_at_least_fifteen_bad_invocations_are_covered():
    assert len(BAD_PARAMS) + 4 >= 15


# --- options, help, defaults --------------------------------------------------------------

def test_help_explains_every_option_with_its_range():
    result = run_gen(["--help"])
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for option in ("--rows", "--cols", "--input-bits", "--comp-rows", "--readout-bits",
                   "--acc-bits", "--cols-per-cycle", "--nonideal", "--ideal",
                   "--all-nonidealities", "--out", "--name"):
        assert option in text, option
    for allowed in ("multiple of 32 up to 1024", "1..1024", "1..8 (default 5)",
                    "power of two in [2, 32] (default 8)", "a divisor of C", "W+B .. 32",
                    "up to 16", ",".join(NONIDEALITIES), "default build/", "default cim_macro",
                    "default offset,readout"):
        assert allowed in text, allowed


def parse(argv):
    return cli.params_from_args(cli.build_parser().parse_args(argv))


def test_defaults_are_the_contract_defaults():
    p = parse(["--rows", "32", "--cols", "96"])
    assert p == MacroParams(rows=32, cols=96)
    assert (p.input_bits, p.comp_rows, p.cols_per_cycle, p.name) == (5, 8, 96, "cim_macro")
    assert p.nonideal == DEFAULT_NONIDEALITIES
    args = cli.build_parser().parse_args(["--rows", "32", "--cols", "96"])
    assert args.out == "build/"


@pytest.mark.parametrize("argv, expected", [
    (["--ideal"], set()),
    (["--nonideal", "none"], set()),
    (["--all-nonidealities"], set(NONIDEALITIES)),
    (["--nonideal", "gain"], {"gain"}),
    (["--nonideal", " stuck , table"], {"stuck", "table"}),
    ([], set(DEFAULT_NONIDEALITIES)),
])
def test_nonideal_options(argv, expected):
    assert set(parse(["--rows", "4", "--cols", "4", *argv]).nonideal) == expected


def test_every_option_reaches_the_parameters():
    p = parse(["--rows", "64", "--cols", "12", "--input-bits", "7", "--comp-rows", "16",
               "--readout-bits", "9", "--acc-bits", "20", "--cols-per-cycle", "4",
               "--nonideal", "gain,stuck", "--name", "layer2"])
    assert p == MacroParams(rows=64, cols=12, input_bits=7, comp_rows=16, readout_bits=9,
                            acc_bits=20, cols_per_cycle=4, nonideal={"gain", "stuck"},
                            name="layer2")


def random_params(rng):
    rows = int(rng.choice([int(rng.integers(1, 33)), 32 * int(rng.integers(1, 33))]))
    cols = int(rng.integers(1, 1025))
    divisors = [d for d in range(1, cols + 1) if cols % d == 0]
    comp_rows = 2 ** int(rng.integers(1, 6))
    input_bits = int(rng.integers(1, 9))
    min_w = (rows + comp_rows).bit_length() + 1
    readout_bits = int(rng.integers(min_w, 17))
    acc_bits = int(rng.integers(readout_bits + input_bits, 33))
    nonideal = {n for n in NONIDEALITIES if rng.random() < 0.5}
    return MacroParams(rows=rows, cols=cols, input_bits=input_bits, comp_rows=comp_rows,
                       readout_bits=readout_bits, acc_bits=acc_bits,
                       cols_per_cycle=int(rng.choice(divisors)), nonideal=nonideal,
                       pipeline=int(rng.integers(0, 5)), counters=bool(rng.random() < 0.5),
                       name=f"m{int(rng.integers(0, 1000))}")


def test_manifest_command_rebuilds_the_same_parameters(rng):
    for _ in range(200):
        p = random_params(rng)
        argv = manifest.command_line(p).split()
        assert argv[:3] == ["python", "-m", "gen"]
        assert parse(argv[3:]) == p


def test_version_option():
    result = run_gen(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gen {gen.__version__} (contract 1.3)"


def test_generator_version_is_the_project_version():
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert gen.__version__ == tomllib.load(f)["project"]["version"]


def test_summary_line():
    p = MacroParams(rows=32, cols=96)
    line = cli.summary_line(p, "build/cim_macro.v", 1234, "build/cim_macro.json")
    assert line == ("cim_macro: 32x96, B=5, K=8, W=7, A=16, P=96, L=0, nonideal=offset,readout "
                    "-> build/cim_macro.v (1234 lines), build/cim_macro.json")
    assert "nonideal=none" in cli.summary_line(MacroParams(rows=2, cols=3, nonideal=()), "a", 1, "b")


# --- manifest from parameters (no RTL needed) ---------------------------------------------

FAKE_VERILOG = "module cim_macro(clk);\n  input clk;\nendmodule\n"


@pytest.mark.parametrize("kwargs", [
    dict(rows=32, cols=96),
    dict(rows=2, cols=3, nonideal=()),
    dict(rows=64, cols=10, cols_per_cycle=5, nonideal=NONIDEALITIES, comp_rows=16),
    dict(rows=1024, cols=1024, cols_per_cycle=1, input_bits=8, comp_rows=32, readout_bits=16),
])
def test_manifest_register_map_follows_the_contract(kwargs):
    p = MacroParams(**kwargs)
    m = json.loads(manifest.dumps(manifest.build_manifest(p, FAKE_VERILOG, [])))
    regmap = m["register_map"]
    shift = regmap["region_shift"]
    assert shift == p.region_shift and regmap["addr_bits"] == 4 + shift
    # Section 6: ack 1 cycle after an access without a pipeline (these sets).
    assert regmap["ack_latency"] == 1
    assert m["params"] == json.loads(json.dumps(p.to_dict()))
    assert m["contract_version"] == "1.3"
    assert m["verilog"]["sha256"] == hashlib.sha256(FAKE_VERILOG.encode()).hexdigest()
    assert m["verilog"]["lines"] == 3

    # Regions: exactly the built ones, at region << shift, fields tiling the offset.
    built = {"CSR", "WEIGHT", "COMP", "THRESH", "FLIP", "INPUT", "ACC", "OUT", "CALFLAG"}
    for n, names in (("offset", {"OFFSET"}), ("gain", {"GAIN"}), ("table", {"TABLE"}),
                     ("stuck", {"STUCK_MASK", "STUCK_VALUE"})):
        if p.has(n):
            built |= names
    assert {r["name"] for r in regmap["regions"]} == built
    G, P = p.cols // p.cols_per_cycle, p.cols_per_cycle
    chunks = max(1, p.rows // 32)
    words = -(-p.cols // 32)
    expected_entries = dict(WEIGHT=G * P * chunks, STUCK_MASK=G * P * chunks,
                            STUCK_VALUE=G * P * chunks, COMP=G * P, THRESH=G * P, ACC=G * P,
                            OFFSET=G * P, GAIN=G * P, FLIP=words, OUT=words, CALFLAG=words,
                            INPUT=p.input_bits * chunks, TABLE=2 ** p.readout_bits)
    for r in regmap["regions"]:
        assert r["region"] == getattr(Region, r["name"])
        assert r["base"] == r["region"] << shift
        assert r["base"] >> shift == r["region"] and r["base"] < 2 ** regmap["addr_bits"]
        assert r["span"] == 2 ** r["offset_bits"] <= 2 ** shift
        lsb = 0
        for field in reversed(r["fields"]):
            assert field["lsb"] == lsb and field["count"] <= 2 ** field["bits"]
            assert field["bits"] == max(0, (field["count"] - 1).bit_length())
            lsb += field["bits"]
        assert lsb == r["offset_bits"]
        if r["name"] != "CSR":
            assert r["entries"] == expected_entries[r["name"]], r["name"]
    assert [f["name"] for f in next(r for r in regmap["regions"] if r["name"] == "WEIGHT")["fields"]] \
        == ["group", "slot", "chunk"]

    # CSRs: the contract's offsets, word address = offset inside region 0.
    csrs = {c["name"]: c for c in regmap["csrs"]}
    expected_csrs = {n for n in vars(CSR) if n.isupper() and n != "REG_BITS"} - (
        {"SAT", "QSHIFT"} if not p.has("readout") else set()) - (
        {"PLANE_OPS", "CONVERSIONS", "CAL_READS", "BUS_ACCESSES"} if not p.counters else set())
    assert set(csrs) == expected_csrs
    for name, c in csrs.items():
        assert c["address"] == getattr(CSR, name) == c["offset"]
    assert csrs["ID"]["reset"] == 0x43694D31 and csrs["VERSION"]["reset"] == 0x00010003
    assert csrs["REGION_SHIFT"]["reset"] == shift
    assert len({c["address"] for c in regmap["csrs"]}) == len(csrs)

    # Cycle counts of ARCHITECTURE.md section 5 for this build.
    S = p.comp_rows.bit_length() - 1
    assert m["cycles"]["run"]["planes"] == {str(n): G * (n + 2) for n in range(1, p.input_bits + 1)}
    assert m["cycles"]["calibrate"]["cycles"] == G * (S + 3)
    assert m["cycles"]["clear"]["cycles"] == G


def test_manifest_holds_no_machine_specific_text():
    p = MacroParams(rows=32, cols=96)
    text = manifest.dumps(manifest.build_manifest(p, FAKE_VERILOG, []))
    assert str(ROOT) not in text and "site-packages" not in text and os.path.expanduser("~") not in text
    assert text == manifest.dumps(manifest.build_manifest(p, FAKE_VERILOG, []))


# --- atomic writes --------------------------------------------------------------------------

def test_write_outputs_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "a" / "b"
    paths = emit.write_outputs(out, {"x.v": "module x;\nendmodule\n", "x.json": "{}\n"})
    assert [p.name for p in paths] == ["x.v", "x.json"]
    assert tree(tmp_path) == ["a", "a/b", "a/b/x.json", "a/b/x.v"]
    assert (out / "x.v").read_text() == "module x;\nendmodule\n"
    assert oct((out / "x.v").stat().st_mode & 0o777) == oct(0o666 & ~emit._umask())


def test_write_outputs_failure_removes_everything_it_made(tmp_path, monkeypatch):
    out = tmp_path / "new" / "deeper"

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emit.os, "replace", failing_replace)
    with pytest.raises(OSError):
        emit.write_outputs(out, {"x.v": "v", "x.json": "j"})
    assert tree(tmp_path) == []


def test_write_outputs_replaces_old_files(tmp_path):
    (tmp_path / "x.v").write_text("old")
    emit.write_outputs(tmp_path, {"x.v": "new", "x.json": "{}"})
    assert (tmp_path / "x.v").read_text() == "new"


# --- with the top: real builds ----------------------------------------------------------------

SUMMARY_RE = re.compile(r"^(\w+): (\d+)x(\d+), B=(\d+), K=(\d+), W=(\d+), A=(\d+), P=(\d+), L=\d, "
                        r"nonideal=([a-z,]+) -> (\S+) \((\d+) lines\), (\S+)$")


def test_build_is_deterministic_and_machine_independent(tmp_path):
    # Two runs (at once, to save time): the second from another cwd, into the default
    # output folder build/, with another hash seed.
    (tmp_path / "b").mkdir()
    first, second = run_gen_parallel(
        dict(args=["--rows", "32", "--cols", "96", "-o", tmp_path / "a"], hash_seed="1"),
        dict(args=["--rows", "32", "--cols", "96"], cwd=tmp_path / "b", hash_seed="2"))
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    lines = first.stdout.splitlines()
    assert len(lines) == 1, first.stdout
    m = SUMMARY_RE.match(lines[0])
    assert m, lines[0]
    name, R, C, B, K, W, A, P, nonideal, vpath, nlines, jpath = m.groups()
    assert (name, R, C, B, K, P, nonideal) == ("cim_macro", "32", "96", "5", "8", "96", "offset,readout")
    assert Path(vpath) == tmp_path / "a" / "cim_macro.v" and Path(jpath) == tmp_path / "a" / "cim_macro.json"
    verilog = (tmp_path / "a" / "cim_macro.v").read_text()
    assert verilog.count("\n") == int(nlines)
    assert tree(tmp_path / "a") == ["cim_macro.json", "cim_macro.v"]

    assert second.returncode == 0, second.stderr
    assert "-> build/cim_macro.v" in second.stdout
    for fname in ("cim_macro.v", "cim_macro.json"):
        a = (tmp_path / "a" / fname).read_bytes()
        b = (tmp_path / "b" / "build" / fname).read_bytes()
        assert a == b, fname
    for fname in ("cim_macro.v", "cim_macro.json"):
        text = (tmp_path / "a" / fname).read_text()
        for needle in (str(ROOT), str(tmp_path), "site-packages", "/home/", "/root/", "/tmp/"):
            assert needle not in text, (fname, needle)
    assert "src =" not in verilog
    m_json = json.loads((tmp_path / "a" / "cim_macro.json").read_text())
    assert m_json["verilog"]["sha256"] == hashlib.sha256(verilog.encode()).hexdigest()
    assert m_json["verilog"]["lines"] == int(nlines)


def test_name_sets_module_and_file_names(tmp_path):
    # The user's AMARANTH_USE_YOSYS=system is overridden (on a machine without a Yosys on
    # PATH, like CI, the build would fail otherwise).
    result = run_gen(["--rows", "2", "--cols", "3", "--ideal", "--name", "tiny_layer", "-o", tmp_path],
                     yosys="system")
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path) == ["tiny_layer.json", "tiny_layer.v"]
    verilog = (tmp_path / "tiny_layer.v").read_text()
    assert re.search(r"^module tiny_layer\(", verilog, re.M)
    m = json.loads((tmp_path / "tiny_layer.json").read_text())
    assert m["top"] == m["params"]["name"] == "tiny_layer" and m["params"]["nonideal"] == []


def test_unwritable_output_dir_fails_after_conversion_without_leftovers(tmp_path):
    # /proc accepts no new folders even for root; the check passes, the mkdir fails.
    out = Path("/proc") / f"gen-test-{os.getpid()}"
    result = run_gen(["--rows", "2", "--cols", "3", "-o", out])
    assert_one_line_error(result, ["-o/--out", str(out), "cannot write"])
    assert not out.exists()


@pytest.mark.parametrize("pipeline, latency", [(0, 1), (1, 2), (2, 2), (3, 2), (4, 5)])
def test_manifest_gives_the_ack_latency(pipeline, latency):
    p = MacroParams(rows=8, cols=4, pipeline=pipeline)
    m = json.loads(manifest.dumps(manifest.build_manifest(p, FAKE_VERILOG, [])))
    assert m["register_map"]["ack_latency"] == p.bus_latency == latency
    # The rule's text names every pipeline's latency, this one's among them.
    assert "(1 for L = 0, 2 for L = 1..3, 5 for L = 4)" in m["register_map"]["ack_rule"]


def test_counters_option_builds_the_counter_csrs(tmp_path):
    result = run_gen(["--rows", "2", "--cols", "3", "--counters", "-o", tmp_path])
    assert result.returncode == 0, result.stderr
    assert ", counters" in result.stdout
    m = json.loads((tmp_path / "cim_macro.json").read_text())
    assert m["params"]["counters"] is True
    csrs = {c["name"]: c for c in m["register_map"]["csrs"]}
    assert {name: csrs[name]["offset"] for name in ("PLANE_OPS", "CONVERSIONS", "CAL_READS",
                                                     "BUS_ACCESSES")} == \
        dict(PLANE_OPS=23, CONVERSIONS=24, CAL_READS=25, BUS_ACCESSES=26)
    assert all(csrs[n]["access"] == "ro" for n in ("PLANE_OPS", "BUS_ACCESSES"))
    assert csrs["FEATURES"]["reset"] >> 5 & 1
    assert "module \\cim_macro.counters" in (tmp_path / "cim_macro.v").read_text()
    result = run_gen(["--rows", "2", "--cols", "3", "-o", tmp_path / "plain"])
    plain = json.loads((tmp_path / "plain" / "cim_macro.json").read_text())
    assert plain["params"]["counters"] is False
    assert "PLANE_OPS" not in {c["name"] for c in plain["register_map"]["csrs"]}
    assert "module \\cim_macro.counters" not in (tmp_path / "plain" / "cim_macro.v").read_text()
