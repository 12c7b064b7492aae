"""The plain datapath: the area yardstick of the macro and the network engine.

:class:`PlainDatapath` computes what one RUN of the macro computes on an ideal array
(docs/ARCHITECTURE.md sections 1-3 with every non-ideality at its reset value, balanced
compensation cells, no ACCUMULATE, no flip) with nothing around it: no bus, no register
file, no calibration, no compensation or offset cells. It holds one R x C tile of weights
and the C thresholds, takes B input planes, and per column forms

``s_b = 2 * popcount(x_b & w) - popcount(x_b)``, ``tile = sum_b 2^b s_b`` (Horner, most
significant plane first), ``out = tile >= thresh``,

P columns per cycle. The command builds it on a board with the project's FPGA flow (the
same Yosys and nextpnr options and report fields as ``python -m fpga build``), so that
the macro's and the engine's logic can be divided by this one's:

    python -m bench.plain_datapath --board ulx3s --rows 32 --cols 96 --cols-per-cycle 96 \\
        --cuts 4 --freq 100 [-o DIR]

It prints one table row and, as its last line, one JSON object (``luts``, ``logic``,
``ffs``, ``block_ram``, ``fmax_mhz``, ``met`` ...); the report is ``DIR/report.json``.

``--engine MODEL`` also builds, in the same run and with the same board, size, folding
and clock, the network engine sized for MODEL (``python -m fpga build --model``, at
pipeline L = the cuts unless ``--engine-pipeline`` says otherwise) into ``DIR/engine``,
prints its row and the ratio of the two logic counts (block RAM reported beside, not in
the ratio); the JSON line then holds ``engine`` (its figures, ``nonideal`` among them) and
``engine_logic_ratio``. The engine's macro has the default non-idealities (offset,
readout) and the calibration that cancels the offsets; ``--engine-ideal`` (or
``--engine-nonideal LIST``) builds it with none (or those), so that an engine of the plain
datapath's function can be compared too.
"""

from __future__ import annotations

import json
import sys
from functools import reduce
from operator import xor
from pathlib import Path

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpga.boards import BOARDS, BoardTop, pll_config
from fpga.build import BuildError, check_freq, flow_options, run_tools, tool_environment
from gen.cli import nonideal_type
from models import cmdline
from models.params import NONIDEALITIES
from rtl.column_memory import ColumnMemory
from rtl.compute_array import popcount
from rtl.replicas import LANE_BLOCK, block_copies

__all__ = ["PlainDatapath", "PlainBoardCore", "CUTS", "build_plain", "main"]

#: Pipeline cuts the datapath can be built with (see :class:`PlainDatapath`).
CUTS = (0, 2, 4)
#: Rows summed by one partial count of the L = 4 popcount cut (the macro's eight partial
#: counts per lane at 32 rows).
PARTIAL_ROWS = 4


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {allowed}, not {value}")


class PlainDatapath(wiring.Component):
    """One RUN of an ideal macro in bare logic: weights, planes, popcounts, thresholds.

    Loading. Each ``load_en`` cycle loads one column: its R weight bits (``load_weights``,
    bit r = row r, 1 = +1) and its threshold (``load_thresh``). After reset, and after
    every C loads, the next load is column 0 (the weights and thresholds sit in shift
    chains of flip-flops, or with ``storage="ram"`` in memories written at a load
    counter). Each ``plane_en`` cycle loads one input plane (bit r = row r); the last B
    planes loaded are planes 0 .. B-1 in the order they came (plane 0 first). Loading
    during a run changes the run's result: wait for ``busy`` to fall.

    Running. ``start`` while not busy runs every column group g = 0 .. C/P - 1: one cycle
    that reads the group's weights, then one cycle per plane (B-1 first) that selects the
    plane into a register; ``cuts`` register stages later each plane's readouts reach
    the P accumulators, and in the cycle after a group's last plane is accumulated its P
    tiles are on ``acc`` with ``acc_valid`` and ``acc_group``, and its P bits of ``out``
    are written at the clock edge. ``done`` is high for one cycle after the last group's
    write-back. A run takes ``G * (B + 1) + cuts + 3`` cycles from ``start`` to ``done``.

    Pipeline cuts, placed as the macro's readout stages are (docs/ARCHITECTURE.md,
    "Pipelined readout"; like the macro's, the selected plane is always registered,
    once per block of 8 lanes):
    0, the AND, popcount, readout and accumulator in one cycle; 2, registers after the
    popcount (with the plane's ones count) and after the readout ``s``; 4, also a
    register after the popcount's partial counts of 4 rows and one more after the
    readout (the macro's cuts of ``a`` and of ``v``, between which an ideal array's
    readout chain is the identity).

    Parameters
    ----------
    rows, cols : int
        R (>= 1) and C (>= 1).
    cols_per_cycle : int or None
        P, a divisor of C; default C (fully parallel).
    input_bits : int
        B, 1..8.
    cuts : int
        0, 2 or 4 register stages (above).
    storage : {"ff", "ram"} or None
        Where the weights and thresholds live: flip-flops in shift chains, or memories
        of one word of P lanes per column group (block RAM on the FPGA, as the folded
        macro's). Default ``"ff"`` for P = C and ``"ram"`` otherwise.

    Members
    -------
    load_en : In(1)
        Load one column (above).
    load_weights : In(rows)
        The column's weight bits.
    load_thresh : In(signed(acc_bits))
        The column's threshold.
    plane_en : In(1)
        Load one input plane.
    plane : In(rows)
        The plane's bits.
    start : In(1)
        Start a run (ignored while ``busy``).
    busy : Out(1)
        A run is in progress: high from the cycle after ``start`` until ``done``.
    done : Out(1)
        One cycle: ``out`` holds every column's bit.
    out : Out(cols)
        Bit c: ``tile_c >= thresh_c``.
    acc : Out(signed(acc_bits)) x cols_per_cycle, as one vector of ``cols_per_cycle *
    acc_bits`` bits
        Lane j (bits ``[j * acc_bits, (j + 1) * acc_bits)``): the tile of column
        ``acc_group * P + j`` while ``acc_valid``; after ``done`` the last group's tiles.
    acc_valid : Out(1)
        ``acc`` holds the tiles of group ``acc_group``.
    acc_group : Out(range(groups))
        The group on ``acc``.
    readout_bits : int
        W: signed bits of ``s`` (holds +-R).
    acc_bits : int
        W + B: signed bits of a tile and of a threshold (a tile never overflows).
    groups : int
        G = C / P.
    """

    def __init__(self, rows, cols, *, cols_per_cycle=None, input_bits=5, cuts=0, storage=None):
        _check_int("rows", rows, 1)
        _check_int("cols", cols, 1)
        if cols_per_cycle is None:
            cols_per_cycle = cols
        _check_int("cols_per_cycle", cols_per_cycle, 1, cols)
        if cols % cols_per_cycle:
            raise ValueError(f"cols_per_cycle must divide cols ({cols}), not {cols_per_cycle}")
        _check_int("input_bits", input_bits, 1, 8)
        if cuts not in CUTS:
            raise ValueError(f"cuts must be one of {', '.join(map(str, CUTS))}, not {cuts!r}")
        if storage is None:
            storage = "ff" if cols_per_cycle == cols else "ram"
        if storage not in ("ff", "ram"):
            raise ValueError(f"storage must be ff or ram, not {storage!r}")
        self.rows, self.cols, self.cols_per_cycle = rows, cols, cols_per_cycle
        self.input_bits, self.cuts, self.storage = input_bits, cuts, storage
        self.groups = cols // cols_per_cycle
        self.readout_bits = rows.bit_length() + 1
        self.acc_bits = self.readout_bits + input_bits
        super().__init__({
            "load_en": In(1),
            "load_weights": In(rows),
            "load_thresh": In(signed(self.acc_bits)),
            "plane_en": In(1),
            "plane": In(rows),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "out": Out(cols),
            "acc": Out(cols_per_cycle * self.acc_bits),
            "acc_valid": Out(1),
            "acc_group": Out(range(self.groups)),
        })

    # --- storage -------------------------------------------------------------------------

    def _ff_storage(self, m, width, data, name):
        """C registers of ``width`` bits in a shift chain (column 0 is loaded first), as a
        list of groups, each the Cat of its P lanes."""
        chain = [Signal(width, name=f"{name}_{c}", reset_less=True) for c in range(self.cols)]
        with m.If(self.load_en):
            m.d.sync += [chain[c].eq(chain[c + 1]) for c in range(self.cols - 1)]
            m.d.sync += chain[-1].eq(data)
        P = self.cols_per_cycle
        return [Cat(*chain[g * P:(g + 1) * P]) for g in range(self.groups)]

    def _ram_storage(self, m, width, data, name, slot, group):
        """A :class:`rtl.column_memory.ColumnMemory` of ``width``-bit lanes written at the
        load counter (``slot``, ``group``)."""
        P = self.cols_per_cycle
        m.submodules[name] = mem = ColumnMemory(width, P, self.groups)
        m.d.comb += [mem.write_addr.eq(group), mem.write_data.eq(Cat(*[data] * P)),
                     mem.write_en.eq(Mux(self.load_en, Const(1, P) << slot, 0))]
        return mem

    # --- datapath ------------------------------------------------------------------------

    def _stage(self, m, cut, value, name, reset_less=True):
        """``value`` registered when ``cut`` is built, else ``value`` itself."""
        if not cut:
            return value
        reg = Signal(Value.cast(value).shape(), name=name, reset_less=reset_less)
        m.d.sync += reg.eq(value)
        return reg

    def elaborate(self, platform):
        m = Module()
        R, P, B, G = self.rows, self.cols_per_cycle, self.input_bits, self.groups
        A, W = self.acc_bits, self.readout_bits
        cut2, cut4 = self.cuts >= 2, self.cuts >= 4

        # Input planes: a shift chain of B planes, plane 0 loaded first.
        planes = [Signal(R, name=f"plane_{b}", reset_less=True) for b in range(B)]
        with m.If(self.plane_en):
            m.d.sync += [planes[b].eq(planes[b + 1]) for b in range(B - 1)]
            m.d.sync += planes[-1].eq(self.plane)

        # Sequencer: per group one read cycle, then planes B-1 .. 0.
        running = Signal()
        reading = Signal()
        group = Signal(range(G))
        plane_index = Signal(range(B))
        issue = Signal()
        with m.If(running & reading):
            m.d.sync += [reading.eq(0), plane_index.eq(B - 1)]
        with m.Elif(running):
            m.d.comb += issue.eq(1)
            with m.If(plane_index == 0):
                with m.If(group == G - 1):
                    m.d.sync += running.eq(0)
                with m.Else():
                    m.d.sync += [group.eq(group + 1), reading.eq(1)]
            with m.Else():
                m.d.sync += plane_index.eq(plane_index - 1)
        # Flags travelling with a plane: valid, first plane, last plane, last group; and
        # its group.
        first = plane_index == B - 1
        last = plane_index == 0
        flags0 = Cat(issue, first, last, last & (group == G - 1))
        plane0 = Array(planes)[plane_index]

        # Weights and thresholds.
        if self.storage == "ff":
            weight_groups = self._ff_storage(m, R, self.load_weights, "weight")
            thresh_groups = self._ff_storage(m, A, self.load_thresh, "thresh")
        else:
            slot = Signal(range(P))
            load_group = Signal(range(G))
            with m.If(self.load_en):
                m.d.sync += slot.eq(Mux(slot == P - 1, 0, slot + 1))
                with m.If(slot == P - 1):
                    m.d.sync += load_group.eq(Mux(load_group == G - 1, 0, load_group + 1))
            weight_mem = self._ram_storage(m, R, self.load_weights, "weight", slot, load_group)
            thresh_mem = self._ram_storage(m, A, self.load_thresh, "thresh", slot, load_group)
            # The read cycle presents the group; the word stays until the next read cycle
            # (one cycle after the group's last plane, so the plane register still
            # sees its own group's word).
            m.d.comb += weight_mem.read_addr.eq(group)

        # The plane select, registered (a cycle ahead, as the macro's for every L), once
        # per block of 8 lanes (rtl/replicas.py): one register driving all 96 lanes of
        # the fully parallel ECP5 build was a 12.8 ns wire.
        plane_copies = block_copies(m, plane0, P, "plane_q", reset_less=True)
        plane1 = [plane_copies[(j // LANE_BLOCK) * R:(j // LANE_BLOCK + 1) * R] for j in range(P)]
        tags = [self._stage(m, True, Cat(flags0, group), "tag_q", reset_less=False)]
        in_flight = [tags[0][0]]

        def tag(cut, name):
            """The flags and group of the newest stage, registered when ``cut`` is built."""
            if cut:
                tags.append(self._stage(m, True, tags[-1], name, reset_less=False))
                in_flight.append(tags[-1][0])
            return tags[-1]

        group1 = tags[0][4:]
        if self.storage == "ff":
            weights = Array(weight_groups)[group1] if G > 1 else weight_groups[0]
        else:
            weights = weight_mem.read_data

        # Partial counts of PARTIAL_ROWS rows (cut 4), then the popcount (cut 2).
        chunks = [(lo, min(lo + PARTIAL_ROWS, R)) for lo in range(0, R, PARTIAL_ROWS)]
        width = PARTIAL_ROWS.bit_length()
        partials, counts = [], []
        for j in range(P):
            agree = plane1[j] & weights[j * R:(j + 1) * R]
            lane = Signal(width * len(chunks), name=f"partial{j}")
            m.d.comb += [lane[k * width:(k + 1) * width].eq(
                popcount(m, agree[lo:hi], f"agree{j}_{lo}")) for k, (lo, hi) in enumerate(chunks)]
            partials.append(self._stage(m, cut4, lane, f"partial{j}_q"))
        # The plane's ones count, beside the lanes' popcounts.
        ones = self._stage(m, cut4, popcount(m, plane1[0], "ones"), "ones_q")
        tag(cut4, "tag_partial")
        for j in range(P):
            terms = [partials[j][k * width:(k + 1) * width] for k in range(len(chunks))]
            while len(terms) > 1:
                terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                         for k in range(0, len(terms), 2)]
            counts.append(self._stage(m, cut2, terms[0], f"count{j}_q"))
        ones = self._stage(m, cut2, ones, "ones_qq")
        tag(cut2, "tag_count")

        # Readout (cut 2): s = 2 * popcount(x & w) - popcount(x); cut 4 registers it once
        # more before the accumulator (the macro's cut of v after its cut of a: on an
        # ideal array the readout chain between them is the identity).
        readouts = []
        for j in range(P):
            s = Signal(signed(W), name=f"readout{j}")
            m.d.comb += s.eq((counts[j] << 1) - ones)
            s = self._stage(m, cut2, s, f"readout{j}_q")
            readouts.append(self._stage(m, cut4, s, f"readout{j}_qq"))
        tag(cut2, "tag_readout")
        tag4 = tag(cut4, "tag_readout_q")
        valid4, first4, last4, end4, group4 = tag4[0], tag4[1], tag4[2], tag4[3], tag4[4:]

        # Shift-accumulate, most significant plane first.
        tiles = [Signal(signed(A), name=f"tile{j}", reset_less=True) for j in range(P)]
        with m.If(valid4):
            for j in range(P):
                m.d.sync += tiles[j].eq(Mux(first4, 0, tiles[j] << 1) + readouts[j])
        write_back = Signal()
        write_end = Signal()
        write_group = Signal(range(G))
        m.d.sync += [write_back.eq(valid4 & last4), write_end.eq(valid4 & end4)]
        with m.If(valid4):
            m.d.sync += write_group.eq(group4)

        # Write-back: the thresholds of the group, the comparators, OUT.
        if self.storage == "ff":
            thresh = Array(thresh_groups)[write_group] if G > 1 else thresh_groups[0]
        else:
            m.d.comb += thresh_mem.read_addr.eq(group4)
            thresh = thresh_mem.read_data
        bits = Cat(*[tiles[j] >= thresh[j * A:(j + 1) * A].as_signed() for j in range(P)])
        with m.If(write_back):
            if G == 1:
                m.d.sync += self.out.eq(bits)
            else:
                with m.Switch(write_group):
                    for g in range(G):
                        with m.Case(g):
                            m.d.sync += self.out[g * P:(g + 1) * P].eq(bits)
        m.d.sync += self.done.eq(write_back & write_end)
        m.d.comb += [self.acc.eq(Cat(*tiles)), self.acc_valid.eq(write_back),
                     self.acc_group.eq(write_group)]

        m.d.comb += self.busy.eq(running | Cat(*in_flight, write_back).any())
        with m.If(self.start & ~self.busy):
            m.d.sync += [running.eq(1), reading.eq(1), group.eq(0)]
        return m


# --- on a board --------------------------------------------------------------------------

class PlainBoardCore(Elaboratable):
    """A :class:`PlainDatapath` with the least I/O that keeps all of it: the core that
    :class:`fpga.boards.BoardTop` puts on a board in place of the macro's.

    Every input of the datapath comes from a shift register fed from the UART receive
    pin (weights and planes share its first R bits, the threshold the next A bits, then
    ``load_en``, ``plane_en`` and ``start``), so synthesis can fold nothing; the transmit
    pin shows the XOR of ``out`` (registered), which every tile bit, comparator and
    threshold reaches; the LEDs show ``done``, ``busy`` and ``acc_valid``.

    Members
    -------
    rx : Signal
        Serial data in.
    tx : Signal
        XOR of ``out``, registered.
    leds : types.SimpleNamespace
        One signal per LED field of the board.
    """

    def __init__(self, datapath: PlainDatapath, led_fields):
        self.datapath = datapath
        self.rx = Signal()
        self.tx = Signal()
        self.leds = SimpleNamespace(**{f: Signal(name=f"led_{f}") for f in led_fields})

    def elaborate(self, platform):
        m = Module()
        m.submodules.datapath = dp = self.datapath
        R, A = dp.rows, dp.acc_bits
        shift = Signal(R + A + 3)
        m.d.sync += shift.eq(Cat(self.rx, shift[:-1]))
        m.d.comb += [dp.load_weights.eq(shift[:R]), dp.plane.eq(shift[:R]),
                     dp.load_thresh.eq(shift[R:R + A]), dp.load_en.eq(shift[R + A]),
                     dp.plane_en.eq(shift[R + A + 1]), dp.start.eq(shift[R + A + 2])]
        m.d.sync += self.tx.eq(reduce(xor, list(dp.out)))
        shown = (dp.done, dp.busy, dp.acc_valid)
        for field, value in zip(vars(self.leds), shown):
            m.d.comb += getattr(self.leds, field).eq(value)
        return m


REPORT_FORMAT = "cim-plain-datapath-report"
REPORT_VERSION = 1


def default_out_dir(board, dp: PlainDatapath) -> Path:
    return (Path("build") / "bench" /
            f"plain-{board}-{dp.rows}x{dp.cols}-p{dp.cols_per_cycle}-c{dp.cuts}-{dp.storage}")


def build_plain(board: str, datapath: PlainDatapath, *, out_dir=None, freq_mhz=None, seed: int = 1,
                tmg_ripup: bool | None = None, status=None) -> dict:
    """Build ``datapath`` on ``board`` with the project's flow; return the report.

    The board top is :class:`fpga.boards.BoardTop` (clock, PLL, reset as the macro's
    builds) around :class:`PlainBoardCore`; Yosys and nextpnr run with
    :func:`fpga.build.flow_options` (the options of ``python -m fpga build``), and the
    report counts logic as its report does. Writes the bitstream and ``report.json`` into
    ``out_dir`` (default ``build/bench/plain-BOARD-RxC-pP-cN-STORAGE``).
    """
    b = BOARDS[board]
    clock_hz = check_freq(board, freq_mhz)
    pll = None
    if clock_hz != b.clock_hz:
        pll = pll_config(b.family, b.clock_hz, clock_hz)
        clock_hz = pll["achieved_hz"]
    if tmg_ripup is None:
        tmg_ripup = b.family == "ecp5"
    mapper = "abc" if b.family == "ecp5" else "abc9"
    out = Path(out_dir) if out_dir is not None else default_out_dir(board, datapath)
    if status is not None:
        status.begin("elaboration (Amaranth)")
    top = BoardTop(b, PlainBoardCore(datapath, b.leds), clock_hz, pll)
    platform = b.make_platform()
    router, nextpnr_opts, overrides = flow_options(b.family, seed=seed, mapper=mapper,
                                                   tmg_ripup=tmg_ripup)
    env = tool_environment()
    flow = run_tools(board, platform, top, out / "work", clock_hz, router=router,
                     nextpnr_opts=nextpnr_opts, overrides=overrides, env=env, status=status)
    fmax_hz = flow["fmax_hz"]
    dp = datapath
    name = default_out_dir(board, dp).name.replace("-", "_") + (".bin" if b.family == "ice40"
                                                                  else ".bit")
    report = dict(
        format=REPORT_FORMAT, version=REPORT_VERSION, board=board, family=b.family,
        device=f"{platform.device}-{platform.package}",
        params=dict(rows=dp.rows, cols=dp.cols, cols_per_cycle=dp.cols_per_cycle,
                    input_bits=dp.input_bits, cuts=dp.cuts, storage=dp.storage,
                    readout_bits=dp.readout_bits, acc_bits=dp.acc_bits),
        bitstream=str(out / name), utilization=flow["parsed"]["utilization"],
        luts=flow["luts"], ffs=flow["ffs"], yosys_cells=flow["cells"],
        timing=dict(board_clock_hz=b.clock_hz, clock_hz=clock_hz, pll=pll,
                    fmax_hz=fmax_hz, met=fmax_hz is not None and fmax_hz >= clock_hz,
                    critical_path=flow["parsed"]["critical_path"]),
        nextpnr_seed=seed, nextpnr_opts=nextpnr_opts, yosys_overrides=overrides,
        lut_mapper=mapper,
        seconds=dict(elaborate=round(flow["seconds_prepare"], 1),
                     tools=round(flow["seconds_tools"], 1)))
    cmdline.write_files(out, {name: flow["blob"], "report.json": json.dumps(report, indent=2) + "\n"})
    return report


#: nextpnr's cell type of the logic count and of block RAM, per family (docs/FPGA.md,
#: "Results": iCE40 logic cells, ECP5 TRELLIS_COMB).
LOGIC_CELL = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}
RAM_CELL = {"ice40": "ICESTORM_RAM", "ecp5": "DP16KD"}


def summary(report: dict) -> dict:
    """The figures of a report: what the table row and the JSON line show."""
    util, t, p = report["utilization"], report["timing"], report["params"]
    logic = util.get(LOGIC_CELL[report["family"]], {})
    ram = util.get(RAM_CELL[report["family"]], {})
    return dict(board=report["board"], rows=p["rows"], cols=p["cols"],
                cols_per_cycle=p["cols_per_cycle"], input_bits=p["input_bits"], cuts=p["cuts"],
                storage=p["storage"], logic=logic.get("used"),
                logic_available=logic.get("available"), luts=report["luts"], ffs=report["ffs"],
                block_ram=ram.get("used", 0), block_ram_available=ram.get("available"),
                clock_mhz=round(t["clock_hz"] / 1e6, 3),
                fmax_mhz=round(t["fmax_hz"] / 1e6, 1) if t["fmax_hz"] else None, met=t["met"],
                tool_seconds=report["seconds"]["tools"], report=report.get("path"))


TABLE_HEAD = ("| board | R x C | P | cuts | storage | logic | LUTs | FFs | block RAM | "
              "clock MHz | Fmax MHz | timing | tool time |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def table_row(s: dict) -> str:
    fmax = "?" if s["fmax_mhz"] is None else f"{s['fmax_mhz']:.1f}"
    return (f"| {s['board']} | {s['rows']}x{s['cols']} | {s['cols_per_cycle']} | {s['cuts']} | "
            f"{s['storage']} | {s['logic']}/{s['logic_available']} | {s['luts']} | {s['ffs']} | "
            f"{s['block_ram']}/{s['block_ram_available']} | {s['clock_mhz']:g} | {fmax} | "
            f"{'met' if s['met'] else 'FAILED'} | {s['tool_seconds']:.0f} s |")


def engine_summary(report: dict) -> dict:
    """The figures of an engine's ``python -m fpga build`` report, in :func:`summary`'s
    keys (``cuts`` is the engine's pipeline L, ``storage`` "engine")."""
    params = dict(report["params"], cuts=report["params"].get("pipeline", 0), storage="engine")
    s = summary(dict(report, params=params))
    s["nonideal"] = sorted(report["params"].get("nonideal", []))
    return s


def build_engine(board: str, model, *, rows, cols, cols_per_cycle, input_bits, pipeline,
                 out_dir, freq_mhz=None, seed: int = 1, tmg_ripup=None, status=None,
                 nonideal=None) -> dict:
    """Build the network engine sized for ``model`` (a FoldedNet) with ``fpga.build.build``
    and return its report. ``nonideal``: the macro's non-idealities (None: the default
    ones)."""
    from fpga.build import build
    from models.engine import EngineParams
    from models.params import MacroParams

    kwargs = {} if nonideal is None else dict(nonideal=nonideal)
    macro = MacroParams(rows, cols, cols_per_cycle=cols_per_cycle, input_bits=input_bits,
                        pipeline=pipeline, **kwargs)
    e = EngineParams.for_model(model, macro)
    return build(board, rows, cols, cols_per_cycle=cols_per_cycle, input_bits=input_bits,
                 pipeline=pipeline, nonideal=nonideal, out_dir=out_dir, freq_mhz=freq_mhz,
                 seed=seed, tmg_ripup=tmg_ripup, status=status,
                 engine=dict(weight_banks=e.weight_banks, layers=e.layers,
                             image_slots=e.image_slots, max_width=e.max_width))


# --- the command -------------------------------------------------------------------------

PROG = "bench.plain_datapath"


def build_parser() -> cmdline.CommandParser:
    ap = cmdline.CommandParser(
        name=PROG, prog="python -m bench.plain_datapath",
        renamed={"--seed": "--placement-seed (the nextpnr seed)", "--output": "-o/--out"},
        description="Build the plain datapath (one R x C tile of weights in flip-flops or "
                    "block RAM, XNOR-popcount, shift-accumulate, thresholds; no bus) with the "
                    "flow of python -m fpga build; print a table row and a JSON line "
                    "(docs/FPGA.md). Exit status 0: timing met; 1: timing failed; 2: bad "
                    "input or a tool failed.")
    ap.add_argument("--board", required=True, choices=sorted(BOARDS),
                    help="icebreaker: iCE40 UP5K; ulx3s: ECP5-85F")
    ap.add_argument("--rows", type=cmdline.integer("rows", 1, 1024), required=True, metavar="R",
                    help="rows R, 1..1024; required")
    ap.add_argument("--cols", type=cmdline.integer("cols", 1, 1024), required=True, metavar="C",
                    help="columns C, 1..1024; required")
    ap.add_argument("--cols-per-cycle", type=cmdline.integer("cols-per-cycle", 1, 1024),
                    default=None, metavar="P", help="columns per cycle: a divisor of C (default C)")
    ap.add_argument("--input-bits", type=cmdline.integer("input-bits", 1, 8), default=5,
                    metavar="B", help="input planes B, 1..8")
    ap.add_argument("--cuts", type=cmdline.integer("cuts", 0, 4), default=2, metavar="N",
                    help="pipeline cuts: 0, 2 or 4")
    ap.add_argument("--storage", choices=("ff", "ram"), default=None,
                    help="weights and thresholds in flip-flops or block RAM (default: ff at "
                         "P = C, ram otherwise)")
    ap.add_argument("--freq", type=cmdline.number("freq", 0, lo_open=True, unit="MHz"),
                    default=None, metavar="MHZ",
                    help="design clock from the PLL (default the board oscillator)")
    ap.add_argument("--placement-seed", type=cmdline.integer("placement-seed", 0, 2**31 - 1),
                    default=1, metavar="S", help="nextpnr placement seed")
    ap.add_argument("--no-tmg-ripup", dest="tmg_ripup", action="store_false", default=None,
                    help="ECP5 only: route without nextpnr's timing-driven ripup")
    ap.add_argument("--engine", default=None, metavar="MODEL",
                    help="also build the network engine sized for this exported model (same "
                         "board, size, folding and clock) into DIR/engine and print the "
                         "ratio of the logic counts")
    ap.add_argument("--engine-pipeline", type=cmdline.integer("engine-pipeline", 0, 4),
                    default=None, metavar="L",
                    help="the engine's pipeline L, 0..4 (default the cuts: 0, 2 or 4)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--engine-nonideal", type=nonideal_type, default=None, metavar="LIST",
                       help="the non-idealities built into the engine's macro: comma-separated "
                            "subset of " + ",".join(NONIDEALITIES) + ", or 'none' (default "
                            "offset,readout, as python -m gen)")
    which.add_argument("--engine-ideal", dest="engine_nonideal", action="store_const",
                       const=frozenset(), help="an engine without non-idealities (same as "
                                               "--engine-nonideal none): the plain datapath's "
                                               "function")
    ap.add_argument("-o", "--out", default=None, metavar="DIR",
                    help="output folder, created if missing (default "
                         "build/bench/plain-BOARD-RxC-pP-cN-STORAGE)")
    ap.add_argument("--quiet", action="store_true", help="no stage lines on stderr")
    return ap


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    cols_per_cycle = args.cols if args.cols_per_cycle is None else args.cols_per_cycle
    if args.cols % cols_per_cycle:
        raise cmdline.UsageError(f"must be a divisor of --cols {args.cols}, not "
                                 f"{cols_per_cycle}", "--cols-per-cycle")
    if args.cuts not in CUTS:
        raise cmdline.UsageError(f"must be one of {', '.join(map(str, CUTS))}, not {args.cuts}",
                                 "--cuts")
    if args.tmg_ripup is False and BOARDS[args.board].family != "ecp5":
        raise cmdline.UsageError(f"timing-driven ripup is router2's, used on ECP5 (ulx3s) "
                                 f"only; not allowed with --board {args.board}", "--no-tmg-ripup")
    try:
        check_freq(args.board, args.freq)
    except ValueError as exc:
        raise cmdline.UsageError(cmdline.one_line(exc), "--freq") from None
    if args.engine_pipeline is not None and args.engine is None:
        raise cmdline.UsageError("sets the engine's pipeline; needs --engine MODEL",
                                 "--engine-pipeline")
    if args.engine_nonideal is not None and args.engine is None:
        raise cmdline.UsageError("sets the engine's non-idealities; needs --engine MODEL",
                                 "--engine-nonideal/--engine-ideal")
    engine_kwargs = ({} if args.engine_nonideal is None
                     else dict(nonideal=args.engine_nonideal))
    net = None
    if args.engine is not None:
        from models.engine import EngineParams
        from models.inputs import load_model
        from models.params import MacroParams

        try:
            macro = MacroParams(args.rows, args.cols, cols_per_cycle=cols_per_cycle,
                                input_bits=args.input_bits,
                                pipeline=args.cuts if args.engine_pipeline is None
                                else args.engine_pipeline, **engine_kwargs)
        except ValueError as exc:
            message = cmdline.one_line(exc)
            raise cmdline.UsageError(message, _macro_option(message, args)) from None
        net = load_model(args.engine, "--engine")
        try:
            EngineParams.for_model(net, macro)
        except ValueError as exc:
            raise cmdline.UsageError(f"{args.engine}: {cmdline.one_line(exc)}", "--engine") from None
    dp = PlainDatapath(args.rows, args.cols, cols_per_cycle=cols_per_cycle,
                       input_bits=args.input_bits, cuts=args.cuts, storage=args.storage)
    # The option's own text: Path("") would be the current folder.
    out = cmdline.check_output_folder(args.out if args.out is not None
                                      else default_out_dir(args.board, dp), "-o/--out",
                                      files=["report.json"])
    status = cmdline.StatusLine(PROG, quiet=args.quiet)
    try:
        report = build_plain(args.board, dp, out_dir=out, freq_mhz=args.freq,
                             seed=args.placement_seed, tmg_ripup=args.tmg_ripup, status=status)
    except (BuildError, RuntimeError) as exc:
        raise cmdline.UsageError(cmdline.one_line(exc)) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"tools stopped; no bitstream or report written (logs in "
                                f"{out / 'work'})") from None
    report["path"] = str(out / "report.json")
    s = summary(report)
    print(TABLE_HEAD)
    print(table_row(s))
    if net is None:
        print(json.dumps(s))
        return 0 if s["met"] else 1
    try:
        engine_report = build_engine(
            args.board, net, rows=args.rows, cols=args.cols, cols_per_cycle=cols_per_cycle,
            input_bits=args.input_bits, out_dir=out / "engine", freq_mhz=args.freq,
            pipeline=args.cuts if args.engine_pipeline is None else args.engine_pipeline,
            seed=args.placement_seed, tmg_ripup=args.tmg_ripup, status=status, **engine_kwargs)
    except (BuildError, RuntimeError) as exc:
        raise cmdline.UsageError(cmdline.one_line(exc)) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"tools stopped; the engine's bitstream and report not written "
                                f"(logs in {out / 'engine' / 'work'})") from None
    engine_report["path"] = str(out / "engine" / "report.json")
    e = engine_summary(engine_report)
    print(table_row(e))
    ratio = e["logic"] / s["logic"] if e["logic"] and s["logic"] else None
    print(f"engine ({','.join(e['nonideal']) or 'ideal'}) / plain datapath logic: "
          f"{e['logic']} / {s['logic']} = {'?' if ratio is None else f'{ratio:.2f}'} "
          f"(block RAM: engine {e['block_ram']}, plain {s['block_ram']})")
    print(json.dumps(dict(s, engine=e, engine_logic_ratio=None if ratio is None
                          else round(ratio, 3))))
    return 0 if s["met"] and e["met"] else 1


def _macro_option(message: str, args) -> str:
    """The option behind a MacroParams error of the engine's macro (its message starts
    with the parameter's name)."""
    name = message.split()[0] if message else ""
    if name == "pipeline":
        return "--cuts" if args.engine_pipeline is None else "--engine-pipeline"
    if name == "nonideal":
        return "--engine-nonideal/--engine-ideal"
    return {"rows": "--rows", "cols": "--cols", "cols_per_cycle": "--cols-per-cycle",
            "input_bits": "--input-bits", "readout_bits": "--input-bits"}.get(name, "--engine")


def main(argv=None) -> int:
    """Run the command; exit status 0 (timing met), 1 (failed), 2 (bad input), 130."""
    return cmdline.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(cmdline.main_entry(PROG, lambda: main))
