"""The shared command-line layer ``models.cmdline``: argument types, the parser's one-line
errors, ``run`` (exit statuses, Ctrl-C), output checks, atomic and staged writes,
resumable rows, progress lines. The commands' bad-input tables are in
tests/test_cli_bad_input.py."""

import argparse
import io
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import cmdline
from models.cmdline import UsageError

FAST = settings(max_examples=150, deadline=None, derandomize=True)


def type_error(parse, text) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- argument types -----------------------------------------------------------------------

@FAST
@given(st.integers(-10**6, 10**6))
def test_integer_takes_every_value_in_range_and_names_the_others(value):
    parse = cmdline.integer("epochs", 1, 10000)
    if 1 <= value <= 10000:
        assert parse(str(value)) == value
    else:
        assert type_error(parse, str(value)) == f"epochs must be an integer in 1..10000, not {value}"


@FAST
@given(st.text(max_size=30))
def test_integer_refuses_anything_but_plain_decimal_digits(text):
    parse = cmdline.integer("rows", 0)
    stripped = text.strip()
    plain = stripped.lstrip("+-")
    if plain and all(c in "0123456789" for c in plain) and len(stripped) - len(plain) <= 1:
        assert parse(text) == int(stripped)
    else:
        assert "rows must be an integer >= 0, not " in type_error(parse, text)


@pytest.mark.parametrize("text", ["1_000", "0x10", "3.0", "1e3", "٣", "３２", "", " ", "--1", "+-1"])
def test_integer_refuses_python_int_extras(text):
    assert "must be an integer" in type_error(cmdline.integer("n", 0), text)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_number_open_interval_refuses_nan_inf_and_bounds(value):
    parse = cmdline.number("bridge-timeout", 0, 10, lo_open=True, unit="s")
    text = repr(value)
    if value == value and 0 < value <= 10:
        assert parse(text) == value
    else:
        message = type_error(parse, text)
        assert message.startswith("bridge-timeout must be a number in (0, 10] s, not ")
        assert text in message


@pytest.mark.parametrize("text, ok", [("inf", True), ("+inf", True), ("Infinity", True),
                                      ("-inf", False), ("nan", False), ("1", False),
                                      ("1.0000001", True), ("1_0", False), ("", False)])
def test_number_with_infinity(text, ok):
    parse = cmdline.number("on-off-ratio", 1, lo_open=True, allow_inf=True)
    if ok:
        assert parse(text) > 1
    else:
        assert "on-off-ratio must be a number > 1 (or inf)" in type_error(parse, text)


def test_number_list_and_ranges():
    parse = cmdline.number_list("offset-sigmas", 0, 8)
    assert parse("0,1, 2.5") == (0.0, 1.0, 2.5)
    assert "'1,,2'" in type_error(parse, "1,,2")
    assert "lists 1 twice" in type_error(parse, "1,1")
    assert "'9' in '0,9'" in type_error(parse, "0,9")
    assert "not ''" in type_error(parse, "")
    rng = cmdline.index_range()
    assert rng("6000:8000") == (6000, 8000)
    for bad in ("5:2", "3:3", "-1:4", "1:2:3", "a:b", ":5", "5", "1.5:3"):
        assert f"range must be START:STOP with integers 0 <= START < STOP, not {bad!r}" == \
            type_error(rng, bad)
    subset = cmdline.choice_list("nonideal", ("offset", "gain"), none="none")
    assert subset(" gain ,offset") == {"gain", "offset"} and subset("none") == frozenset()
    assert "not 'noise'" in type_error(subset, "offset,noise")


@pytest.mark.parametrize("text", ["", ".hidden", "-x", "a/b", "a b", "x" * 200, "é", "a\0b", ".."])
def test_file_name_refuses(text):
    assert "must be a file name" in type_error(cmdline.file_name("name"), text)


def test_huge_values_are_cut_in_messages():
    message = type_error(cmdline.integer("rows", 0), "x" * 10000)
    assert len(message) < 200 and message.endswith("...'")


# --- the parser ---------------------------------------------------------------------------

def make_parser():
    parser = cmdline.CommandParser(name="tool", prog="python -m tool", description="A tool.",
                                   renamed={"--old": "--count"})
    parser.add_argument("--count", type=cmdline.integer("count", 1, 9), default=3, help="how many")
    parser.add_argument("--rows", type=int, default=None, help="rows")
    parser.add_argument("--flag", action="store_true", help="a flag")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("go", help="go")
    s.add_argument("--speed", type=cmdline.number("speed", 0), required=True, help="speed")
    return parser


@pytest.mark.parametrize("argv, line", [
    (["--count", "0", "go", "--speed", "1"],
     "tool: error: argument --count: count must be an integer in 1..9, not 0"),
    (["--coun", "3", "go", "--speed", "1"],
     "tool: error: unrecognized arguments: --coun; did you mean --count? "
     "(python -m tool --help lists every option)"),
    (["--count", "2", "--count", "3", "go", "--speed", "1"],
     "tool: error: argument --count: given twice (2, then 3); give it once"),
    (["go"], "tool: error: the following arguments are required: --speed "
             "(python -m tool go --help lists every option)"),
    (["go", "--sped", "1"], "tool: error: unrecognized arguments: --sped; did you mean --speed? "
                            "(python -m tool go --help lists every option)"),
    (["go", "--speed", "1", "extra"], "tool: error: unrecognized arguments: extra "
                                      "(python -m tool go --help lists every option)"),
    (["--old", "2", "go", "--speed", "1"], "tool: error: unrecognized arguments: --old; use "
                                           "--count instead (python -m tool --help lists "
                                           "every option)"),
    (["go", "--speed", "1", "--old", "2"], "tool: error: unrecognized arguments: --old 2; use "
                                           "--count instead (python -m tool go --help lists "
                                           "every option)"),
    (["stop"], "tool: error: argument command: invalid choice: 'stop' (choose from 'go')"),
])
def test_parser_errors_are_one_line_with_status_2(capsys, argv, line):
    with pytest.raises(SystemExit) as info:
        make_parser().parse_args(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == line + "\n"


def test_flags_may_repeat_and_help_shows_defaults(capsys):
    args = make_parser().parse_args(["--flag", "--flag", "go", "--speed", "2.5"])
    assert args.flag and args.speed == 2.5 and args.count == 3
    with pytest.raises(SystemExit) as info:
        make_parser().parse_args(["--help"])
    assert info.value.code == 0
    assert "how many (default 3)" in " ".join(capsys.readouterr().out.split())


# --- run ----------------------------------------------------------------------------------

def body_raising(exc):
    def body(argv):
        raise exc
    return body


@pytest.mark.parametrize("exc, status, line", [
    (UsageError("rows must be 1..1024, not 0", "--rows"), 2,
     "tool: error: argument --rows: rows must be 1..1024, not 0"),
    (UsageError("two\nlines"), 2, "tool: error: two lines"),
    (KeyboardInterrupt(), 130, "tool: interrupted"),
    (KeyboardInterrupt("nothing written"), 130, "tool: interrupted; nothing written"),
    (OSError(28, "No space left on device", "out/x.csv"), 2,
     "tool: error: out/x.csv: No space left on device"),
    (MemoryError(), 2, "tool: error: out of memory"),
])
def test_run_turns_exceptions_into_one_line_and_a_status(capsys, exc, status, line):
    assert cmdline.run("tool", body_raising(exc), []) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line), err


def test_run_passes_statuses_and_argparse_exits(capsys):
    assert cmdline.run("tool", lambda argv: None, []) == 0
    assert cmdline.run("tool", lambda argv: 1, []) == 1
    assert cmdline.run("tool", lambda argv: make_parser().parse_args(argv), ["--count", "x"]) == 2
    assert cmdline.run("tool", lambda argv: make_parser().parse_args(argv), ["--help"]) == 0
    with pytest.raises(ZeroDivisionError):           # a bug keeps its traceback
        cmdline.run("tool", lambda argv: 1 / 0, [])


# --- output paths and writes --------------------------------------------------------------

def snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_output_folder_checks_create_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "out" / "result.csv").mkdir(parents=True)
    os.mkfifo(tmp_path / "out" / "pipe.csv")
    before = snapshot(tmp_path)
    cases = [("", "must not be empty"), (tmp_path / "file", "is an existing file, not a folder"),
             (tmp_path / "file" / "a" / "b", "file' is a file, not a folder"),
             ("/proc/no/such", "refuses new files"), ("a\0b", "NUL byte"),
             ("x" * 5000, "File name too long")]
    for path, words in cases:
        with pytest.raises(UsageError) as info:
            cmdline.check_output_folder(path, "-o/--out")
        assert str(info.value).startswith("argument -o/--out: ") and words in str(info.value)
    for name, words in (("result.csv", "is a folder"), ("pipe.csv", "not a regular file")):
        with pytest.raises(UsageError, match=words):
            cmdline.check_output_folder(tmp_path / "out", "-o/--out", files=[name])
    with pytest.raises(UsageError, match="names a folder"):
        cmdline.check_output_file(str(tmp_path) + "/", "--out")
    assert cmdline.check_output_folder(tmp_path / "new" / "deep", "-o") == tmp_path / "new" / "deep"
    assert cmdline.check_output_file(tmp_path / "new.csv", "-o") == tmp_path / "new.csv"
    assert snapshot(tmp_path) == before


def test_input_file_checks(tmp_path):
    (tmp_path / "f").write_bytes(b"1")
    assert cmdline.check_input_file(tmp_path / "f", "--images") == tmp_path / "f"
    for path, words in (("", "must not be empty"), (tmp_path / "none", "no such file"),
                        (tmp_path, "is a folder"), ("/dev/null", "not a regular file")):
        with pytest.raises(UsageError, match=words):
            cmdline.check_input_file(path, "--images")


def test_write_files_is_all_or_nothing(tmp_path, monkeypatch):
    out = tmp_path / "a" / "b"
    paths = cmdline.write_files(out, {"x.csv": "1\n", "y.bin": b"\x00\x01"})
    assert [p.name for p in paths] == ["x.csv", "y.bin"]
    assert snapshot(tmp_path) == {"a": None, "a/b": None, "a/b/x.csv": b"1\n",
                                  "a/b/y.bin": b"\x00\x01"}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((out / "x.csv").stat().st_mode) == 0o666 & ~mask
    calls = []

    def second_rename_fails(src, dst):
        calls.append(dst)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError):
        cmdline.write_files(tmp_path / "c" / "d", {"x": "1"})
    monkeypatch.undo()
    assert not (tmp_path / "c").exists()
    with pytest.raises(KeyboardInterrupt):
        with cmdline.staged_outputs(out, ["x.csv"]) as stage:
            (stage / "x.csv").write_text("partial")
            raise KeyboardInterrupt
    assert (out / "x.csv").read_text() == "1\n" and sorted(p.name for p in out.iterdir()) == \
        ["x.csv", "y.bin"]


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    cmdline.atomic_write(target, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        cmdline.atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_resumable_rows_keep_finished_lines_only(tmp_path):
    path = tmp_path / "rows.csv"
    assert cmdline.finished_lines(path) == []
    cmdline.append_lines(path, ["a,1", "b,2"])
    with open(path, "ab") as f:
        f.write(b"c,")                               # interrupted in the middle of a row
    assert cmdline.finished_lines(path) == ["a,1", "b,2"]
    assert path.read_bytes() == b"a,1\nb,2\n"        # the torn row is cut
    cmdline.append_lines(path, ["c,3"])
    assert cmdline.finished_lines(path) == ["a,1", "b,2", "c,3"]


# --- progress -----------------------------------------------------------------------------

class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert cmdline.progress_wanted(stream=Tty()) and not cmdline.progress_wanted(stream=io.StringIO())
    assert not cmdline.progress_wanted(quiet=True, stream=Tty())
    monkeypatch.setenv("CI", "true")
    assert not cmdline.progress_wanted(stream=Tty())
    bar = cmdline.progress_bar(10, "x")             # pytest's stderr is no terminal
    bar.update(3), bar.set_postfix(a=1), bar.close()


def test_status_lines_in_a_pipe():
    stream = io.StringIO()
    status = cmdline.StatusLine("fpga", stream=stream)
    status.note("logs in w")
    status.begin("synthesis (Yosys)")
    status.update("pass ABC9")
    status.begin("routing (nextpnr router2)")
    status.update("iteration 7, 3 overused wires")
    status.end()
    status.begin("bitstream")
    status.abort()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "fpga: logs in w"
    assert lines[1] == "fpga: synthesis (Yosys) ..."
    assert lines[2].startswith("fpga: synthesis (Yosys) done in ") and lines[2].endswith("(pass ABC9)")
    assert lines[3] == "fpga: routing (nextpnr router2) ..."
    assert lines[4].endswith("s (iteration 7, 3 overused wires)")
    assert lines[5] == "fpga: bitstream ..." and len(lines) == 6
    quiet = io.StringIO()
    q = cmdline.StatusLine("fpga", quiet=True, stream=quiet)
    q.note("x"), q.begin("a"), q.end()
    assert quiet.getvalue() == ""


def test_status_line_redraws_in_place_on_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    tty = Tty()
    status = cmdline.StatusLine("fpga", stream=tty)
    status.begin("placement (nextpnr)")
    status.end("annealing placer")
    text = tty.getvalue()
    assert text.startswith("\r\x1b[Kfpga: placement (nextpnr) 0 s")
    assert text.endswith("fpga: placement (nextpnr) done in 0 s (annealing placer)\n")
