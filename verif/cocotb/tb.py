"""Shared testbench pieces: the run context, reset, lane packing, monitors, statistics.

A test module gets everything that :mod:`verif.runner` passed through the environment
from :func:`context` (design kind, parameter set, ``MacroParams``, seed, arguments,
simulator), drives the harness of :mod:`verif.cocotb.harness` through :class:`TB`
(clock, reset, cycle counter, per-lane vectors), and records functional coverage in
``ctx.coverage`` (:mod:`verif.coverage`), which is saved for the runner at the end of
every test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from models.params import MacroParams
from verif.coverage import Coverage

__all__ = ["Context", "context", "TB", "pack_lanes", "unpack_lanes", "to_signed",
           "PhaseMonitor", "Stopwatch", "save_stats"]


@dataclasses.dataclass
class Context:
    """What the runner asked for (environment variables ``CIM_*``).

    Members
    -------
    kind, paramset : str
    p : MacroParams
    seed : int
    rng : numpy.random.Generator
        Seeded with ``seed``; every random choice of a test comes from it.
    args : dict
    sim : str
    coverage : Coverage
    """

    kind: str
    paramset: str
    p: MacroParams
    seed: int
    rng: np.random.Generator
    args: dict
    sim: str
    coverage: Coverage

    def save(self) -> None:
        """Write the coverage where the runner looks for it."""
        path = os.environ.get("CIM_COVERAGE_FILE")
        if path:
            self.coverage.save(path)


def context(test_name: str = "") -> Context:
    """The run context; ``test_name`` varies the seed per test of one module."""
    d = json.loads(os.environ["CIM_DESIGN"])
    seed = int(os.environ.get("CIM_SEED", "0"))
    # One independent stream per test, reproducible from (seed, test name).
    stream = np.random.SeedSequence([seed, *test_name.encode()])
    coverage = Coverage()
    path = os.environ.get("CIM_COVERAGE_FILE")
    if path and os.path.exists(path):
        coverage.merge(Coverage.load(path))
    return Context(kind=d["kind"], paramset=d["paramset"], p=MacroParams.from_dict(d["params"]),
                   seed=seed, rng=np.random.default_rng(stream),
                   args=json.loads(os.environ.get("CIM_ARGS", "{}")),
                   sim=os.environ.get("CIM_SIM", "?"), coverage=coverage)


def save_stats(**values) -> None:
    """Merge ``values`` into the statistics file the runner returns (benchmarks)."""
    path = os.environ.get("CIM_STATS_FILE")
    if not path:
        return
    stats = json.loads(open(path).read()) if os.path.exists(path) else {}
    stats.update(values)
    with open(path, "w") as f:
        json.dump(stats, f, indent=1)


def pack_lanes(values, bits: int) -> int:
    """Lane ``i`` of ``values`` at bits ``[i*bits, (i+1)*bits)`` (two's complement)."""
    mask = (1 << bits) - 1
    # Not np.asarray: a list of Python ints of 64 bits or more would become float64.
    values = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * bits)
    return word


def to_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def unpack_lanes(word: int, bits: int, lanes: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_lanes`."""
    mask = (1 << bits) - 1
    out = [(word >> (i * bits)) & mask for i in range(lanes)]
    if signed:
        out = [to_signed(v, bits) for v in out]
    return np.array(out, dtype=np.int64)


def _resolved(handle, what: str) -> int:
    value = handle.value
    if not value.is_resolvable:
        raise AssertionError(f"{what} is {value} (X/Z bits)")
    # A 1-bit signal reads as a Logic, a wider one as a LogicArray.
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


class TB:
    """The harness around one design: clock (in HDL), reset, cycle counter, lanes.

    Parameters
    ----------
    dut : cocotb handle of ``tb_top``
    ctx : Context
    """

    def __init__(self, dut, ctx: Context):
        self.dut = dut
        self.ctx = ctx
        self.p = ctx.p

    @property
    def clk(self):
        return self.dut.clk

    def cycles(self) -> int:
        """Rising clock edges since time 0 (the harness's ``tb_cycles`` counter)."""
        return self.dut.tb_cycles.value.to_unsigned()

    async def reset(self, cycles: int = 3) -> None:
        """Hold ``rst`` for ``cycles`` rising edges (designs without ``rst`` just wait)."""
        has_rst = hasattr(self.dut, "rst")
        if has_rst:
            self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        if has_rst:
            self.dut.rst.value = 0
        await RisingEdge(self.clk)

    async def settle(self) -> None:
        """Let combinational logic settle after inputs were written (no clock edge)."""
        await Timer(1, "ns")

    def set(self, name: str, value) -> None:
        getattr(self.dut, name).value = int(value)

    def get(self, name: str, signed_bits: int | None = None) -> int:
        value = _resolved(getattr(self.dut, name), name)
        return to_signed(value, signed_bits) if signed_bits else value

    def set_lanes(self, name: str, values, bits: int) -> None:
        getattr(self.dut, name).value = pack_lanes(values, bits)

    def get_lanes(self, name: str, bits: int, lanes: int | None = None,
                  signed: bool = False) -> np.ndarray:
        lanes = self.p.cols_per_cycle if lanes is None else lanes
        return unpack_lanes(_resolved(getattr(self.dut, name), name), bits, lanes, signed)


class PhaseMonitor:
    """Coverage of an FSM's states and transitions from its state wire, without polling.

    Wakes only when the state changes; a state held for more than one cycle counts as
    its self-transition. States are named by ``names`` (value -> name).

    Parameters
    ----------
    tb : TB
    signal : cocotb handle
    coverage : Coverage
    group : str
        Coverage group prefix: ``<group>.state`` and ``<group>.transition``.
    names : dict
    """

    def __init__(self, tb: TB, signal, coverage: Coverage, group: str, names: dict):
        self.tb = tb
        self.signal = signal
        self.coverage = coverage
        self.group = group
        self.names = names
        self.running = True

    async def run(self) -> None:
        await ReadOnly()
        state = _resolved(self.signal, "state")
        since = self.tb.cycles()
        self.coverage.hit(f"{self.group}.state", self.names.get(state, f"?{state}"))
        while self.running:
            await self.signal.value_change
            await ReadOnly()
            new = _resolved(self.signal, "state")
            now = self.tb.cycles()
            old_name = self.names.get(state, f"?{state}")
            new_name = self.names.get(new, f"?{new}")
            if now - since > 1:
                self.coverage.hit(f"{self.group}.transition", f"{old_name}->{old_name}")
            self.coverage.hit(f"{self.group}.transition", f"{old_name}->{new_name}")
            self.coverage.hit(f"{self.group}.state", new_name)
            state, since = new, now


class Stopwatch:
    """Wall-clock seconds and simulated cycles between :meth:`start` and :meth:`stop`."""

    def __init__(self, tb: TB):
        self.tb = tb

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = self.tb.cycles()

    def stop(self) -> tuple[float, int]:
        return time.perf_counter() - self.t0, self.tb.cycles() - self.c0
