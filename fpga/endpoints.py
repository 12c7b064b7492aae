"""Which flip-flops miss the clock, grouped by register, from nextpnr's per-net timing.

nextpnr's report names one critical path per clock. When timing fails broadly (the fully
parallel ECP5 builds), the question is which registers miss the period and by how
much. ``--detailed-timing-report`` (``python -m fpga build ... --detailed-timing``) adds,
for every net, each timing endpoint the net reaches and the arrival time there
(``delay``: ``[min, max]`` in ns). This module takes the worst arrival at each
flip-flop input and groups the flip-flops by register name (digits masked), so that
``core.macro.input_0_3_TRELLIS_FF_Q_7.CE`` counts under ``core.macro.input_#_#.CE``.

Command line: ``python -m fpga endpoints REPORT [--period NS] [--all]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EndpointGroup", "endpoint_arrivals", "group_endpoints", "load_report"]


class EndpointsError(ValueError):
    """A report that cannot be read or has no per-net timing (one-line message)."""


@dataclass(frozen=True)
class EndpointGroup:
    """Flip-flop inputs of one register (cells whose names differ only in digits).

    Members
    -------
    name : str
        Register name with digits masked, and the input port (``DI``, ``CE``, ``M``,
        ``LSR``, ...).
    failing : int
        Endpoints whose worst arrival exceeds the period.
    total : int
        Endpoints in the group.
    worst_ns : float
        Latest arrival in the group.
    """
    name: str
    failing: int
    total: int
    worst_ns: float


def load_report(path) -> dict:
    """nextpnr's JSON report at ``path``; it must hold ``detailed_net_timings``."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise EndpointsError(f"no report at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EndpointsError(f"{path} is not a JSON report: {e}") from None
    if not isinstance(report, dict) or not isinstance(report.get("detailed_net_timings"), list):
        raise EndpointsError(f"{path} has no per-net timing (detailed_net_timings); build with "
                             f"--detailed-timing and pass DIR/work/report.json")
    return report


def endpoint_arrivals(report: dict) -> dict:
    """Worst arrival (ns) at each ``(cell, port)`` timing endpoint of the report."""
    worst = {}
    for net in report["detailed_net_timings"]:
        for end in net.get("endpoints", ()):
            delay = end["delay"]
            arrival = float(delay[-1] if isinstance(delay, list) else delay)
            key = (end["cell"], end["port"])
            worst[key] = max(worst.get(key, arrival), arrival)
    return worst


def _register_name(cell: str) -> str:
    # Yosys names the flip-flops of register `r` `r_TRELLIS_FF_Q[_n]` (`r_SB_DFF...` on
    # iCE40); the register name is what a designer knows.
    cell = re.sub(r"_(TRELLIS_FF|SB_DFF\w*)_Q(_\d+)?$", "", cell)
    return re.sub(r"\d+", "#", cell)


def group_endpoints(report: dict, period_ns: float) -> list[EndpointGroup]:
    """Endpoint groups, latest arrival first."""
    if not isinstance(period_ns, (int, float)) or not period_ns > 0:
        raise EndpointsError(f"period must be a positive number of ns, not {period_ns!r}")
    groups = {}
    for (cell, port), arrival in endpoint_arrivals(report).items():
        name = f"{_register_name(cell)}.{port}"
        failing, total, worst = groups.get(name, (0, 0, 0.0))
        groups[name] = (failing + (arrival > period_ns), total + 1, max(worst, arrival))
    return sorted((EndpointGroup(n, f, t, w) for n, (f, t, w) in groups.items()),
                  key=lambda g: (-g.worst_ns, g.name))


def format_groups(groups, period_ns: float, show_all: bool = False) -> str:
    """The table ``python -m fpga endpoints`` prints."""
    failing = sum(g.failing for g in groups)
    total = sum(g.total for g in groups)
    lines = [f"{failing} of {total} flip-flop endpoints arrive later than {period_ns:g} ns "
             f"({1e3 / period_ns:.1f} MHz)"]
    for g in groups:
        if g.failing or show_all:
            lines.append(f"{g.worst_ns:7.2f} ns {g.failing:6d}/{g.total:<6d} {g.name}")
    return "\n".join(lines)
