"""Functional coverage of the cocotb testbenches: named bins, merged over runs, reported.

Every bin the verification plan asks for is declared in :data:`PLAN` (group -> bins), so
a report lists the bins nobody hit as well as those that were hit. Testbenches record
hits in a :class:`Coverage` inside the simulator; :mod:`verif.runner` reads each run's
file back, and the pytest suite merges them into :data:`SESSION`, whose
:meth:`Coverage.report` is printed at the end of the cocotb tests (and whose
:meth:`Coverage.missing` must be empty after the default suite).

Groups (see docs/VERIFICATION.md for where each is sampled):

* ``cal_fsm.state`` / ``cal_fsm.transition``: the calibration FSM (block test and, via
  a probe, inside the macro), including a ``start`` while busy;
* ``macro.state`` / ``macro.transition``: the macro's command sequencer;
* ``command``: accepted command kinds; ``bad_command``: each reason a CMD is rejected;
* ``errcode``: every ERRCODE raised by a faulty access;
* ``saturation``: readout clamp at +SAT/-SAT, accumulator clamp at the top and bottom,
  STATUS.acc_sat seen;
* ``calibration``: offsets inside the range, above it and below it (CALFLAG).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["PLAN", "Coverage", "SESSION", "SESSION_RUNS"]

#: Every bin of the verification plan.
PLAN = {
    "cal_fsm.state": ["IDLE", "SEARCH", "VERIFY"],
    "cal_fsm.transition": ["IDLE->IDLE", "IDLE->SEARCH", "SEARCH->SEARCH", "SEARCH->VERIFY",
                           "VERIFY->IDLE", "VERIFY->VERIFY", "start_while_busy"],
    "macro.state": ["IDLE", "READ", "PLANES", "SEARCH", "WRITE", "CLEAR", "DRAIN"],
    "macro.transition": ["IDLE->IDLE", "IDLE->READ", "IDLE->CLEAR", "READ->PLANES", "READ->SEARCH",
                         "PLANES->PLANES", "PLANES->WRITE", "SEARCH->SEARCH", "SEARCH->WRITE",
                         "WRITE->READ", "WRITE->IDLE", "CLEAR->CLEAR", "CLEAR->IDLE",
                         "PLANES->DRAIN", "DRAIN->DRAIN", "DRAIN->WRITE"],
    "command": ["RUN", "RUN_ACCUMULATE", "RUN_ALL_PLANES", "RUN_FEWER_PLANES", "CALIBRATE",
                "CLEAR"],
    "bad_command": ["opcode", "reserved_bits", "nplanes_over_B", "accumulate_not_run",
                    "nplanes_not_run"],
    "errcode": ["BAD_ADDRESS", "READ_ONLY", "BAD_COMMAND", "BUSY", "BAD_SEL", "BAD_VALUE"],
    "saturation": ["readout_high", "readout_low", "acc_high", "acc_low", "status_acc_sat"],
    "calibration": ["in_range", "above_range", "below_range"],
}


class Coverage:
    """Hit counts of named bins, grouped.

    Members
    -------
    bins : dict
        ``group -> {bin: hits}``; groups and bins of :data:`PLAN` are always present.
    """

    def __init__(self):
        self.bins = {group: {name: 0 for name in names} for group, names in PLAN.items()}

    def hit(self, group: str, name: str, count: int = 1) -> None:
        self.bins.setdefault(group, {}).setdefault(name, 0)
        self.bins[group][name] += count

    def merge(self, other: "Coverage | dict") -> None:
        bins = other.bins if isinstance(other, Coverage) else other
        for group, names in bins.items():
            for name, count in names.items():
                self.hit(group, name, count)

    def to_dict(self) -> dict:
        return {g: dict(b) for g, b in self.bins.items()}

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path) -> "Coverage":
        cov = cls()
        cov.merge(json.loads(Path(path).read_text()))
        return cov

    def missing(self, groups=None) -> list[str]:
        """``group:bin`` of every planned bin with no hit (in ``groups`` when given)."""
        return [f"{g}:{n}" for g, names in PLAN.items() if groups is None or g in groups
                for n in names if self.bins[g][n] == 0]

    def report(self) -> str:
        """One line per group (hit bins / planned bins) and the bins not hit."""
        lines = ["functional coverage (bins hit / planned; hit counts):"]
        total = hit = 0
        for group, names in self.bins.items():
            planned = PLAN.get(group, list(names))
            n_hit = sum(1 for n in planned if names.get(n, 0))
            total += len(planned)
            hit += n_hit
            detail = ", ".join(f"{n}={names.get(n, 0)}" for n in planned)
            extra = [n for n in names if n not in planned]
            if extra:
                detail += "; unplanned: " + ", ".join(f"{n}={names[n]}" for n in extra)
            lines.append(f"  {group:20s} {n_hit:2d}/{len(planned):2d}  {detail}")
        lines.append(f"  total {hit}/{total} bins" + (
            "" if hit == total else f"; not hit: {', '.join(self.missing())}"))
        return "\n".join(lines)


#: The merge of every run of this Python process (the pytest session).
SESSION = Coverage()
#: ``(kind, paramset, sim, module, testcase)`` of every run merged into SESSION.
SESSION_RUNS: list = []
