"""The command-line layer shared by every command of the project.

``python -m gen``, ``python -m models``, ``python -m fpga`` and the ``bench`` commands
all parse their arguments, report errors, write files and show progress through this
module, so that they behave alike (docs/CLI.md lists the conventions and spellings):

* every bad invocation ends with exit status 2 and exactly one line on stderr,
  ``PROG: error: argument --OPTION: <what is wrong>``, naming the bad value and what is
  allowed (:class:`UsageError`, :class:`CommandParser`, the argument types below);
* options must be spelled out in full (no abbreviations), and an option that takes a
  value may be given only once;
* Ctrl-C ends a command with one line, ``PROG: interrupted``, and exit status 130
  (:func:`run`);
* output paths are checked before any work (:func:`check_output_folder`,
  :func:`check_output_file`), and every output file is either absent or complete: it is
  written under a temporary name and renamed (:func:`atomic_write`, :func:`staged_outputs`,
  :func:`write_files`); commands that resume keep only finished rows
  (:func:`append_lines`, :func:`finished_lines`);
* progress goes to stderr, only on a terminal, never in pipes or CI
  (:func:`progress_wanted`, :func:`progress_bar`, :class:`StatusLine`).

A command looks like this::

    from models import cmdline

    def build_parser():
        parser = cmdline.CommandParser(name="mytool", prog="python -m mytool",
                                       description="What it does.")
        parser.add_argument("--count", type=cmdline.integer("count", 1, 1000), default=10,
                            metavar="N", help="how many")
        parser.add_argument("-o", "--out", default="build/mytool", metavar="DIR",
                            help="output folder, created if missing")
        return parser

    def _main(argv):
        args = build_parser().parse_args(argv)
        out = cmdline.check_output_folder(args.out, "-o/--out", files=["result.csv"])
        ...                                   # the work; raise UsageError for bad input
        cmdline.write_files(out, {"result.csv": text})
        return 0

    def main(argv=None) -> int:
        return cmdline.run("mytool", _main, argv)

This module uses the standard library only (``tqdm`` is imported when a progress bar
is shown), so that every package of the project can import it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

__all__ = [
    "UsageError", "CommandParser", "HelpFormatter", "one_line", "shown", "run", "main_entry",
    "integer", "number", "number_list", "value_list", "index_range", "choice_list", "file_name",
    "non_empty", "check_input_file", "check_output_folder", "check_output_file",
    "atomic_write", "staged_outputs", "write_files", "append_lines", "finished_lines",
    "progress_wanted", "progress_bar", "StatusLine", "MAX_CHIPS",
]

#: Longest value quoted in an error message; longer ones are cut with "...".
MAX_SHOWN = 60


# --- errors -------------------------------------------------------------------------------

class UsageError(Exception):
    """A bad invocation or a bad input file: the command prints one line and exits with 2.

    Parameters
    ----------
    message : str
        What is wrong, naming the bad value and what is allowed. Newlines and runs of
        blanks are folded into single blanks.
    option : str or None
        The option the problem is about (``"--rows"``, ``"-o/--out"``); the line then
        reads ``argument OPTION: message``, like argparse's own errors.

    Examples
    --------
    >>> str(UsageError("rows must be 1..1024, not 0", option="--rows"))
    'argument --rows: rows must be 1..1024, not 0'
    """

    def __init__(self, message: str, option: str | None = None):
        self.option = option
        self.message = one_line(message)
        super().__init__(f"argument {option}: {self.message}" if option else self.message)


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) folded into one blank."""
    return " ".join(str(text).split())


def shown(value, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (a bad value can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


# --- the parser ---------------------------------------------------------------------------

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every option's help ends with its default.

    The default is appended as ``(default X)`` unless the help text already says
    ``default``, the default is None or False, or the option is required.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or action.required
                or default is argparse.SUPPRESS or not action.option_strings):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        return f"{text} (default {default})"


class _StoreOnce(argparse._StoreAction):
    """``store``, refusing an option given twice (a repeated option is a mistake more
    often than an override, and a silent last-one-wins hides it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = getattr(parser, "_seen_options", None)
        if seen is not None and self.option_strings:
            if self.dest in seen:
                parser.error(f"argument {'/'.join(self.option_strings)}: given twice "
                             f"({seen[self.dest]}, then {shown(_raw(values))}); give it once")
            seen[self.dest] = shown(_raw(values))
        super().__call__(parser, namespace, values, option_string)


def _raw(values):
    return getattr(values, "raw", values)


class _ParsedTuple(tuple):
    """A parsed option value that remembers its text (``raw``), so that a message about
    the option (given twice) shows what was typed, not the tuple."""

    raw: str


def _parsed(values, text: str) -> tuple:
    parsed = _ParsedTuple(values)
    parsed.raw = text
    return parsed


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the project's conventions.

    * An error is one line ``NAME: error: MESSAGE`` on stderr and exit status 2 (no usage
      block); an unknown or missing option adds ``(PROG --help lists every option)``.
    * No abbreviations (``allow_abbrev=False``): adding an option never changes what an
      existing command line means. An unknown option is reported before missing ones,
      with the option it was probably meant to be (``--row``: did you mean ``--rows``?)
      or, for an option that was renamed, its new spelling (:attr:`renamed`).
    * An option that takes a value may be given only once.
    * Help keeps the description's line breaks and shows every option's default
      (:class:`HelpFormatter`).
    * Sub-commands (``add_subparsers``) are CommandParsers with the same ``name``.

    Parameters
    ----------
    name : str
        The command's short name, printed before ``: error:`` (``gen``, ``models``,
        ``fpga``, ``bench.gen_speed``).
    renamed : dict or None
        ``{old option: new spelling}`` of options that were renamed or removed; the
        error for an old one says what to use instead.
    *args, **kwargs
        As for ``argparse.ArgumentParser`` (``prog``, ``description``, ``epilog``, ...).
    """

    def __init__(self, *args, name: str, renamed: dict | None = None, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.name = name
        self.renamed = dict(renamed or {})
        self._arg_strings = []
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", functools.partial(type(self), name=self.name))
        return super().add_subparsers(**kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._seen_options = {}
        args = self._join_dash_values(list(sys.argv[1:] if args is None else args))
        self._arg_strings = args
        return super().parse_known_args(args, namespace)

    def _join_dash_values(self, args: list) -> list:
        """``--range -5:10`` as ``--range=-5:10``: argparse takes a value that starts
        with a dash for an option (and says the option lacks its argument); the range's
        own check then names the value."""
        joined, i = [], 0
        while i < len(args):
            action = self._option_string_actions.get(args[i])
            if (action is not None and getattr(action.type, "takes_dash_values", False)
                    and i + 1 < len(args) and _DASH_VALUE.match(args[i + 1])):
                joined.append(f"{args[i]}={args[i + 1]}")
                i += 2
            else:
                joined.append(args[i])
                i += 1
        return joined

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self._active(namespace).error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _active(self, namespace):
        """The (sub-)parser that parsed the options of the chosen sub-command."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None))
                if isinstance(chosen, CommandParser):
                    chosen._parent = self
                    return chosen._active(namespace)
        return self

    def _unknown_options(self) -> list:
        known = set(self._option_string_actions)
        found = []
        for token in self._arg_strings:
            if token == "--":
                break
            if token.startswith("-") and not _NUMBER.fullmatch(token) and len(token) > 1:
                if not token.startswith("--") and token[:2] in known:
                    continue                  # a short option with its value attached: -oDIR
                if token.split("=", 1)[0] not in known:
                    found.append(token.split("=", 1)[0])
        return found

    def _hint(self, option: str) -> str:
        parser = self
        while parser is not None:
            if option in parser.renamed:
                return f"; use {parser.renamed[option]} instead"
            parser = getattr(parser, "_parent", None)
        import difflib
        close = difflib.get_close_matches(option, [o for o in self._option_string_actions
                                                   if o.startswith("--")], n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""

    def error(self, message):
        message = one_line(message)
        if message.startswith("the following arguments are required") or \
                "invalid choice" in message:
            # An unknown option is the likelier cause: it took a value as the sub-command
            # or left a required option out.
            unknown = self._unknown_options()
            if unknown:
                message = f"unrecognized arguments: {unknown[0]}"
        if message.startswith("unrecognized arguments"):
            unknown = self._unknown_options()
            if unknown:
                message += self._hint(unknown[0])
        if message.startswith(("unrecognized arguments", "the following arguments are required")):
            message += f" ({self.prog} --help lists every option)"
        self.exit(2, f"{self.name}: error: {message}\n")


# --- running a command --------------------------------------------------------------------

def run(name: str, body, argv=None) -> int:
    """Run ``body(argv)`` with the project's error handling; return the exit status.

    Parameters
    ----------
    name : str
        Printed before ``: error:`` and ``: interrupted``.
    body : callable
        ``body(argv) -> int | None`` parses ``argv`` (None: ``sys.argv[1:]``) and does
        the work; None counts as 0.
    argv : list of str or None

    Returns
    -------
    int
        ``body``'s status; 2 after a :class:`UsageError` (its one line is printed), after
        argparse's own errors and after an ``OSError`` or ``MemoryError`` (one line);
        130 after Ctrl-C (``KeyboardInterrupt``), printing ``NAME: interrupted`` and, when
        the interrupt carries a message (``raise KeyboardInterrupt("nothing written")``),
        that message after a semicolon; ``--help`` and ``--version`` give 0.
        Exceptions of other kinds are bugs and propagate with their traceback.
    """
    try:
        status = body(argv)
        try:
            if sys.stdout is not None:    # None when the command started with fd 1 closed
                sys.stdout.flush()        # a full disk shows here, not as a traceback at exit
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            _drop_stdout()
            raise OSError(exc.errno, f"cannot write the standard output: "
                                     f"{exc.strerror or exc}") from None
        return 0 if status is None else int(status)
    except UsageError as exc:
        _quiet_abandoned_objects()
        _print_line(f"{name}: error: {exc}")
        return 2
    except SystemExit as exc:             # argparse: errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt as exc:
        _quiet_abandoned_objects()
        with _sigint_ignored():
            note = one_line(exc.args[0]) if exc.args else ""
            _print_line(f"{name}: interrupted" + (f"; {note}" if note else ""))
        return 130
    except BrokenPipeError:
        # stdout went to a pipe that closed (`| head`): stop quietly, as cat does.
        _drop_stdout()
        return 1
    except MemoryError:
        _print_line(f"{name}: error: out of memory (ask for less at once: fewer chips, "
                    f"images or a smaller size)")
        return 2
    except OSError as exc:
        # What no check can foresee: a full disk, a folder that vanished, a device error.
        where = f"{exc.filename}: " if exc.filename else ""
        _print_line(f"{name}: error: {where}{one_line(exc.strerror or exc)}")
        return 2


def _quiet_abandoned_objects() -> None:
    """A run stopped half way leaves Amaranth designs it never elaborated; their "created
    but never used" warnings (at exit) would follow the one line."""
    warnings.filterwarnings("ignore", message=r".* created but never used$")


def _drop_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main_entry(name: str, load) -> int:
    """``sys.exit(main_entry("gen", load))`` in a ``__main__.py``: ``load()`` imports and
    returns the command's ``main``, whose status is returned. A Ctrl-C while the
    command's modules load (numpy, Amaranth: a second or more) is one line and 130 too.
    """
    try:
        main = load()
    except KeyboardInterrupt:
        with _sigint_ignored():
            _print_line(f"{name}: interrupted")
        return 130
    return main()


def _print_line(line: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _sigint_ignored():
    """A second Ctrl-C while the interrupt is reported must not add a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --- argument types -----------------------------------------------------------------------
#
# Each factory returns a callable for argparse's ``type=``; a bad value raises
# ArgumentTypeError, which the parser prints as ``argument --OPTION: MESSAGE``. ``name``
# is the option's name without dashes, as the message begins with it
# ("epochs must be an integer in 1..10000, not 0").

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?inf(?:inity)?",
                     re.IGNORECASE)


def _interval(lo, hi, lo_open=False, hi_open=False, fmt=str) -> str:
    if lo is not None and hi is not None:
        if not (lo_open or hi_open) and fmt is str:
            return f"in {lo}..{hi}"
        return f"in {'(' if lo_open else '['}{fmt(lo)}, {fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {fmt(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {fmt(hi)}"
    return ""


def integer(name: str, lo: int | None = None, hi: int | None = None, *,
            allowed: str | None = None):
    """Type of an integer option in ``lo..hi`` (either bound may be None).

    Only plain decimal integers are taken (``12``, ``+3``, ``-1``); ``1_000``, ``0x10``,
    ``3.0`` and non-ASCII digits are refused. ``allowed`` replaces the generated
    description of the range (``"1..32, or a multiple of 32 up to 1024"``).

    Examples
    --------
    >>> integer("epochs", 1, 10000)("30")
    30
    """
    allowed = allowed or " ".join(filter(None, ["an integer", _interval(lo, hi)]))

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        value = int(text.strip())
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {value}")
        return value
    parse.__name__ = name
    return parse


def number(name: str, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False, allow_inf: bool = False,
           unit: str = ""):
    """Type of a real-number option in the interval from ``lo`` to ``hi``.

    ``lo_open``/``hi_open`` exclude the bound itself. NaN is always refused, infinity
    unless ``allow_inf``. ``unit`` is named in the message (``"MHz"``, ``"s"``).

    Examples
    --------
    >>> number("bridge-timeout", 0, 10, lo_open=True, unit="s")("0.1")
    0.1
    """
    bounds = _interval(lo, hi, lo_open, hi_open, fmt=lambda v: f"{v:g}")
    allowed = " ".join(filter(None, ["a number", bounds, unit])) + (" (or inf)" if allow_inf else "")

    def parse(text: str) -> float:
        if not _NUMBER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        value = float(text)
        if math.isinf(value):
            bad = not (allow_inf and value > 0)
        else:
            bad = ((lo is not None and (value < lo or (lo_open and value == lo))) or
                   (hi is not None and (value > hi or (hi_open and value == hi))))
        if bad:
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        return value
    parse.__name__ = name
    return parse


def number_list(name: str, lo: float | None = None, hi: float | None = None, *,
                max_items: int = 1000):
    """Type of a comma-separated list of distinct numbers, each as :func:`number`.

    Empty items (``1,,2``), duplicates and more than ``max_items`` items are refused.
    Returns a tuple of floats in the order given.
    """
    allowed = f"a comma-separated list of distinct numbers {_interval(lo, hi, fmt=lambda v: f'{v:g}')}"
    return value_list(name, number(name, lo, hi), allowed=allowed, max_items=max_items)


def value_list(name: str, one, *, allowed: str, none: str | None = None,
               max_items: int = 1000):
    """Type of a comma-separated list of distinct values, each parsed by the argument
    type ``one`` (``integer(...)``, ``number(...)``, ...); ``none`` names a word that
    stands for None (``"all"``). Empty items, duplicates and more than ``max_items``
    items are refused; ``allowed`` describes the whole list in the message. Returns a
    tuple in the order given.
    """
    def parse(text: str) -> tuple:
        items = text.split(",")
        if not text.strip() or any(not item.strip() for item in items):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        if len(items) > max_items:
            raise argparse.ArgumentTypeError(f"{name} must have at most {max_items} items, "
                                             f"not {len(items)}")
        values = []
        for item in items:
            try:
                value = None if item.strip() == none else one(item.strip())
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(
                    f"{name} must be {allowed}, not {shown(item.strip())} in {shown(text)}") from None
            if value in values:
                raise argparse.ArgumentTypeError(f"{name} lists {item.strip()} twice in "
                                                 f"{shown(text)}; give each value once")
            values.append(value)
        return _parsed(values, text)
    parse.__name__ = name
    return parse


# A value that starts with a dash and a digit: a negative number or range.
_DASH_VALUE = re.compile(r"-\d")

#: Most chip instances one command runs (``--chips``, ``--chunk``).
MAX_CHIPS = 100_000


def index_range(name: str = "range", *, max_items: int | None = None):
    """Type of ``START:STOP``: integers with ``0 <= START < STOP``, the items
    ``START .. STOP-1`` (Python's slice), at most ``max_items`` of them when given.
    Returns ``(start, stop)``; whether STOP fits the data is for the command to check
    once it knows the data."""
    allowed = "START:STOP with integers 0 <= START < STOP" + (
        "" if max_items is None else f" and at most {max_items} items")

    def parse(text: str) -> tuple:
        parts = text.split(":")
        if len(parts) != 2 or not all(_INTEGER.fullmatch(p.strip()) for p in parts):
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        start, stop = int(parts[0]), int(parts[1])
        if not 0 <= start < stop or max_items is not None and stop - start > max_items:
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        return _parsed((start, stop), text)
    parse.__name__ = name
    parse.takes_dash_values = True          # CommandParser._join_dash_values
    return parse


def choice_list(name: str, choices, *, none: str | None = None):
    """Type of a comma-separated subset of ``choices``; returns a frozenset.

    ``none`` names the word for the empty set (``"none"``); blanks around items are
    ignored, an unknown item is named in the message.
    """
    choices = tuple(choices)
    allowed = "a comma-separated subset of " + ",".join(choices) + (f", or {none!r}" if none else "")

    def parse(text: str) -> frozenset:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if none is not None and items == [none]:
            return frozenset()
        for item in items:
            if item not in choices:
                raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(item)}")
        return frozenset(items)
    parse.__name__ = name
    return parse


def non_empty(name: str, *, max_length: int = 4096):
    """Type of a free-text option (a port name, a URL): not empty, no NUL byte."""
    def parse(text: str) -> str:
        if not text.strip() or "\0" in text or len(text) > max_length:
            raise argparse.ArgumentTypeError(
                f"{name} must be a non-empty text of at most {max_length} characters "
                f"without NUL bytes, not {shown(text)}")
        return text
    parse.__name__ = name
    return parse


_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def file_name(name: str, *, max_length: int = 128):
    """Type of a bare file name (no folder): letters, digits, ``_ . + -``, not starting
    with ``.`` or ``-``, at most ``max_length`` characters."""
    allowed = (f"a file name of letters, digits, '_', '.', '+' and '-' (not starting with "
               f"'.' or '-'), at most {max_length} characters")

    def parse(text: str) -> str:
        if not _FILE_NAME.fullmatch(text) or len(text) > max_length:
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, not {shown(text)}")
        return text
    parse.__name__ = name
    return parse


# --- input files --------------------------------------------------------------------------

def _stat(path: Path, option: str):
    """os.stat of ``path`` or None when it does not exist; odd paths are UsageErrors."""
    text = str(path)
    if "\0" in text:
        raise UsageError(f"{shown(text)} is not a usable path (NUL byte)", option)
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise UsageError(f"{shown(text)}: {one_line(exc.strerror or exc)}", option) from None


def check_input_file(path, option: str, *, what: str = "file") -> Path:
    """``path`` as a Path, after checking that it is a readable regular file.

    Raises
    ------
    UsageError
        Naming ``option`` and the path: empty, missing, a folder, not a regular file,
        not readable.
    """
    text = os.fspath(path)
    if text == "":
        raise UsageError(f"the {what} name must not be empty", option)
    path = Path(text)
    st = _stat(path, option)
    if st is None:
        raise UsageError(f"{text}: no such {what}", option)
    import stat as _st
    if _st.S_ISDIR(st.st_mode):
        raise UsageError(f"{text} is a folder, not a {what}", option)
    if not _st.S_ISREG(st.st_mode):
        raise UsageError(f"{text} is not a regular file", option)
    if not os.access(path, os.R_OK):
        raise UsageError(f"{text}: {what} is not readable", option)
    return path


# --- output paths -------------------------------------------------------------------------

def _nearest_existing(path: Path, option: str) -> Path:
    ancestor = path.absolute()
    while _stat(ancestor, option) is None and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _probe_writable(folder: Path, option: str, target: str) -> None:
    """Create and remove a file in ``folder``: the one test that /proc, read-only mounts
    and ACLs cannot fool (``os.access`` says yes to root everywhere)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
    except OSError as exc:
        raise UsageError(f"cannot write to {shown(target)}: {str(folder)!r} refuses new files "
                         f"({one_line(exc.strerror or exc)})", option) from None
    os.close(fd)
    os.unlink(probe)


def check_output_folder(path, option: str, *, files=()) -> Path:
    """Check that ``path`` is, or can be created as, a writable folder for ``files``.

    Nothing is left behind: the check creates no folder (it creates and removes one
    probe file in the nearest existing folder, to catch file systems that refuse
    writes). Call it before any work, then write with :func:`write_files` or
    :func:`staged_outputs`.

    Parameters
    ----------
    path : str or PathLike
    option : str
        Named in the error (``"-o/--out"``).
    files : iterable of str
        Names the command will write inside the folder; each must not be a folder or
        another non-regular file already.

    Returns
    -------
    Path

    Raises
    ------
    UsageError
        Empty path, an existing file in place of the folder, a file among its parents,
        a folder in place of one of ``files``, no permission to write.
    """
    text = os.fspath(path)
    if text.strip() == "":
        raise UsageError("the output folder must not be empty", option)
    path = Path(text)
    st = _stat(path, option)
    if st is not None:
        if not path.is_dir():
            raise UsageError(f"{text!r} is an existing file, not a folder", option)
        _probe_writable(path, option, text)
        for name in files:
            target = path / name
            tst = _stat(target, option)
            if tst is not None and target.is_dir():
                raise UsageError(f"{str(target)!r} is a folder, cannot write the file {name}", option)
            if tst is not None and not target.is_file():
                raise UsageError(f"{str(target)!r} is not a regular file, cannot write {name}",
                                 option)
        return path
    if path.is_symlink():
        raise UsageError(f"{text!r} is a symbolic link to nothing", option)
    ancestor = _nearest_existing(path, option)
    if not ancestor.is_dir():
        raise UsageError(f"cannot create folder {text!r}: {str(ancestor)!r} is a file, "
                         "not a folder", option)
    _probe_writable(ancestor, option, text)
    return path


def check_output_file(path, option: str) -> Path:
    """Check that the file ``path`` can be written (its folder as :func:`check_output_folder`;
    the file itself may exist and is then replaced, but must not be a folder)."""
    text = os.fspath(path)
    if text.strip() == "":
        raise UsageError("the output file name must not be empty", option)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise UsageError(f"{text!r} names a folder, not a file", option)
    check_output_folder(path.parent, option, files=[path.name])
    return path


# --- writing outputs ----------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _blob(data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes or str, not {type(data).__name__}")


def atomic_write(path, data) -> Path:
    """Write ``data`` (bytes or str, UTF-8) to ``path`` through a temporary file in the
    same folder, synced, then renamed: ``path`` is either its old content or complete.
    The folder must exist."""
    path = Path(path)
    blob = _blob(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def staged_outputs(folder, names):
    """Write several outputs into ``folder`` all or nothing.

    Yields a hidden staging folder inside ``folder`` (``folder`` is created with its
    parents first). Write each of ``names`` into the staging folder; when the block ends
    normally every one of them is renamed into ``folder`` (after all were written) and
    the staging folder is removed. When the block raises (Ctrl-C included), the staging
    folder and every folder this call created are removed, and the exception propagates.

    Examples
    --------
    >>> with staged_outputs("build/models", ["m.json", "m.npz"]) as tmp:  # doctest: +SKIP
    ...     save_folded(net, tmp / "m")
    """
    folder = Path(folder)
    created = [p for p in reversed([folder, *folder.absolute().parents]) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    stage = None
    try:
        stage = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
        yield stage
        missing = [n for n in names if not (stage / n).is_file()]
        if missing:
            raise RuntimeError(f"staged_outputs: {', '.join(missing)} not written")
        mode = 0o666 & ~_umask()
        for name in names:
            os.chmod(stage / name, mode)
        for name in names:
            os.replace(stage / name, folder / name)
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            stage = None
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def write_files(folder, files: dict) -> list:
    """Write ``{file name: bytes or str}`` into ``folder`` all or nothing
    (:func:`staged_outputs`); returns the paths written."""
    with staged_outputs(folder, list(files)) as stage:
        for name, data in files.items():
            with open(stage / name, "wb") as f:
                f.write(_blob(data))
                f.flush()
                os.fsync(f.fileno())
    return [Path(folder) / name for name in files]


def append_lines(path, lines) -> None:
    """Append finished rows to the text file ``path`` (created if missing).

    All ``lines`` (each without its newline) go out in one ``write`` of whole lines,
    followed by an fsync, so that an interrupted run leaves complete rows and at most
    one torn last line, which :func:`finished_lines` drops. For commands that resume.
    """
    text = "".join(f"{line}\n" for line in lines)
    if not text:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def finished_lines(path, *, repair: bool = True) -> list:
    """The complete lines of ``path`` (without newlines), [] when it does not exist.

    A torn last line (no newline: the run was interrupted while appending) is dropped
    and, with ``repair``, cut from the file, so that appending continues cleanly.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if repair and end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return data[:end].decode("utf-8").splitlines()


# --- progress -----------------------------------------------------------------------------

def progress_wanted(quiet: bool = False, stream=None) -> bool:
    """True when progress should be shown: not ``quiet``, ``stream`` (default stderr)
    is a terminal, and the environment is not CI (``CI`` set) or a dumb terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int, desc: str, quiet: bool = False):
    """A tqdm bar on stderr when :func:`progress_wanted`, else an object with the same
    ``update``, ``set_postfix``, ``close`` methods that does nothing."""
    if not progress_wanted(quiet):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:                      # pragma: no cover - tqdm is pinned
        return _NoBar()
    # A terminal that reports no size (0x0, e.g. a pseudo-terminal under `script`) would
    # hide the bar (tqdm hides bars below the last row): give it the fallback size.
    size = shutil.get_terminal_size((100, 20))
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, ncols=size.columns,
                nrows=size.lines)


class StatusLine:
    """Stages of a long run on stderr: ``NAME: stage ...`` and ``NAME: stage done in T s``.

    On a terminal the current stage's line is redrawn in place with its elapsed time and
    the latest detail (:meth:`update`, at most a few times a second); elsewhere (pipes,
    CI logs) each stage prints one line when it starts and one when it ends. Nothing is
    printed with ``quiet``.

    Parameters
    ----------
    name : str
        Command name at the start of every line.
    quiet : bool
    stream : file or None
        Default stderr.
    """

    def __init__(self, name: str, quiet: bool = False, stream=None):
        self.name = name
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.live = progress_wanted(quiet, self.stream)
        self.stage = None
        self.detail = ""
        self.started = 0.0
        self._drawn = 0.0

    def note(self, text: str) -> None:
        """One line of its own (``NAME: text``), e.g. where the log is."""
        if not self.quiet:
            self._clear()
            print(f"{self.name}: {text}", file=self.stream, flush=True)

    def begin(self, stage: str, detail: str = "") -> None:
        """End the current stage (if any) and start ``stage``."""
        self.end()
        self.stage, self.detail, self.started = stage, detail, time.monotonic()
        if self.quiet:
            return
        if self.live:
            self._draw(force=True)
        else:
            print(f"{self.name}: {stage} ..." + (f" {detail}" if detail else ""),
                  file=self.stream, flush=True)

    def update(self, detail: str | None = None) -> None:
        """New detail of the current stage (iterations, the current pass); redraws the
        live line, at most 4 times a second."""
        if detail is not None:
            self.detail = detail
        if self.live and self.stage is not None:
            self._draw()

    def end(self, detail: str | None = None) -> None:
        """Finish the current stage: ``NAME: stage done in T s (detail)``."""
        if self.stage is None:
            return
        if detail is not None:
            self.detail = detail
        seconds = time.monotonic() - self.started
        if not self.quiet:
            self._clear()
            print(f"{self.name}: {self.stage} done in {seconds:.0f} s"
                  + (f" ({self.detail})" if self.detail else ""), file=self.stream, flush=True)
        self.stage = None

    def abort(self) -> None:
        """Leave the current stage without a 'done' line (it failed or was stopped)."""
        self._clear()
        self.stage = None

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.25:
            return
        self._drawn = now
        text = f"{self.name}: {self.stage} {now - self.started:.0f} s" + \
            (f", {self.detail}" if self.detail else "")
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\x1b[K" + text[:width])
        self.stream.flush()

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
