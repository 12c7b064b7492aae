"""Parameters of one generated CiM macro: validation, derived widths and the register map.

This module is the contract of ``docs/ARCHITECTURE.md`` in code form. It is pure Python
(no numpy, no amaranth) so that the golden model, the RTL, the generator and the host
driver all read the same widths and the same register map from one place. The RTL may
import it; it never imports the RTL.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = [
    "CONTRACT_VERSION", "ID_MAGIC", "NONIDEALITIES", "DEFAULT_NONIDEALITIES",
    "GAIN_BITS", "GAIN_FRAC_BITS", "QSHIFT_BITS", "MAX_ROWS", "MAX_COLS",
    "Op", "Cmd", "ErrCode", "EngineErrCode", "Status", "Region", "CSR", "MacroParams",
    "MAX_PIPELINE", "bus_latency_of", "latencies_text",
]

#: Bumped whenever a bit-exact rule or the register map changes.
CONTRACT_VERSION = (1, 3)
#: Value of the ID register: ASCII "CiM1".
ID_MAGIC = 0x4369_4D31

#: Non-idealities the generator can build into the compute array, in FEATURES bit order.
NONIDEALITIES = ("offset", "gain", "readout", "table", "stuck")
DEFAULT_NONIDEALITIES = frozenset({"offset", "readout"})

GAIN_BITS = 8          # unsigned per-column gain, 1.0 == 1 << GAIN_FRAC_BITS
GAIN_FRAC_BITS = 6
QSHIFT_BITS = 4        # readout quantisation shift register width
MAX_ROWS = 1024
MAX_COLS = 1024
MAX_INPUT_BITS = 8
MAX_COMP_ROWS = 32
MAX_READOUT_BITS = 16
MAX_ACC_BITS = 32
MAX_PIPELINE = 4
BUS_DATA_BITS = 32
#: FEATURES bit of the activity counters (bits 0..4 are the non-idealities).
COUNTERS_FEATURE_BIT = 5


class Op:
    """Opcodes of the CMD register (bits [2:0])."""
    RUN = 1
    CALIBRATE = 2
    CLEAR = 3
    ALL = (RUN, CALIBRATE, CLEAR)


class Cmd:
    """Fields of the CMD register (section 6, "CMD format"): opcode in bits 2:0, the
    ACCUMULATE bit, NPLANES in bits 11:8; every other bit is reserved."""
    OPCODE_MASK = 0x7
    ACCUMULATE_BIT = 4
    ACCUMULATE = 1 << ACCUMULATE_BIT
    NPLANES_SHIFT = 8
    NPLANES_BITS = 4
    NPLANES_MASK = ((1 << NPLANES_BITS) - 1) << NPLANES_SHIFT
    #: Bits an accepted command can have set (CMD reads back only these).
    BITS = NPLANES_SHIFT + NPLANES_BITS
    RESERVED_MASK = 0xFFFF_FFFF & ~(OPCODE_MASK | ACCUMULATE | NPLANES_MASK)


class ErrCode:
    """Values of the ERRCODE register: the cause of the first error since it was cleared."""
    NONE = 0
    BAD_ADDRESS = 1   # unmapped address, a hole in a region, or a region not built
    READ_ONLY = 2     # write to a read-only register or region
    BAD_COMMAND = 3   # unknown opcode, reserved bits set, bad plane count
    BUSY = 4          # command, memory access or non-STATUS CSR write while busy
    BAD_SEL = 5       # write whose byte selects are not all ones
    BAD_VALUE = 6     # numeric field written with a value outside its range


class EngineErrCode(ErrCode):
    """ERRCODE values of the network engine (docs/ENGINE.md, "Errors"): the macro's
    values unchanged, and two causes the macro's codes cannot name."""
    NO_RESULT = 7     # read of a result or score the engine has not produced
    BAD_PROGRAM = 8   # CLASSIFY with a layer program the engine cannot run


class Status:
    """Bit positions of the STATUS register."""
    BUSY = 0
    DONE = 1          # W1C
    ERROR = 2         # W1C (also clears ERRCODE and ERRADDR)
    CAL_RANGE = 3     # some column's offset is outside the compensation range; cleared by CALIBRATE
    ACC_SAT = 4       # an accumulator saturated; W1C
    W1C_MASK = (1 << DONE) | (1 << ERROR) | (1 << ACC_SAT)
    #: Write 1: clear the activity counters (macros built with ``counters``); reads 0.
    CLEAR_COUNTERS = 5


class Region:
    """Region numbers: word address = (region << region_shift) | offset."""
    CSR = 0
    WEIGHT = 1
    COMP = 2
    THRESH = 3
    FLIP = 4
    INPUT = 5
    ACC = 6
    OUT = 7
    CALFLAG = 8
    OFFSET = 9
    GAIN = 10
    TABLE = 11
    STUCK_MASK = 12
    STUCK_VALUE = 13
    BITS = 4


class CSR:
    """Word offsets of the registers in region 0 (the ``reg`` field, :data:`REG_BITS` bits)."""
    REG_BITS = 5
    ID = 0
    VERSION = 1
    ROWS = 2
    COLS = 3
    INPUT_BITS = 4
    COMP_ROWS = 5
    COLS_PER_CYCLE = 6
    READOUT_BITS = 7
    ACC_BITS = 8
    FEATURES = 9
    GAIN_FRAC = 10
    REGION_SHIFT = 11
    PIPELINE = 12
    CMD = 16
    STATUS = 17
    ERRCODE = 18
    ERRADDR = 19
    CYCLES = 20
    SAT = 21
    QSHIFT = 22
    # Activity counters (``counters`` built): 32 bits, saturating (docs/ENERGY.md).
    PLANE_OPS = 23
    CONVERSIONS = 24
    CAL_READS = 25
    BUS_ACCESSES = 26


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _clog2(n: int) -> int:
    """Bits needed to index ``n`` items (0 for a single item)."""
    return max(0, (n - 1).bit_length())


def signed_bits_for(magnitude: int) -> int:
    """Smallest two's-complement width holding every integer in ``[-magnitude, magnitude]``."""
    return magnitude.bit_length() + 1


def _check_int(name: str, value, lo: int, hi: int, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {what or f'an integer in [{lo}, {hi}]'}, not {value}")


def bus_latency_of(pipeline: int) -> int:
    """Cycles from a bus access (``cyc & stb``) to its ``ack`` at pipeline ``pipeline``
    (section 6).

    1 without a pipeline; 2 with L = 1..3 (the lane read multiplexer is split by a
    register and memory writes land a cycle late); 5 with L = 4, the FPGA-clock build,
    whose address decode and checks end at a register of their own, whose read
    multiplexers take three cycles and whose read data leaves the macro from a register.
    """
    if pipeline == 0:
        return 1
    return 2 if pipeline < 4 else 5


def latencies_text(latency_of, pipelines) -> str:
    """``latency_of(L)`` for each pipeline in words, equal neighbours joined: ``"1 for L =
    0, 2 for L = 1..3, 5 for L = 4"`` (the ack rule of a manifest's register map)."""
    runs = []
    for L in pipelines:
        latency = latency_of(L)
        if runs and runs[-1][0] == latency and runs[-1][2] == L - 1:
            runs[-1][2] = L
        else:
            runs.append([latency, L, L])
    return ", ".join(f"{latency} for L = {a}" + (f"..{b}" if b > a else "")
                     for latency, a, b in runs)


@dataclasses.dataclass(frozen=True)
class MacroParams:
    """Validated parameters of one macro instance and every width derived from them.

    Parameters
    ----------
    rows : int
        Data word lines R: 1..32, or a multiple of 32 up to 1024.
    cols : int
        Columns C (= neurons), 1..1024.
    input_bits : int
        Bit-planes B of an unsigned input, 1..8.
    comp_rows : int
        Compensation rows K per column, a power of two in [2, 32].
    readout_bits : int or None
        Width W of the signed readout; default the smallest width holding the ideal
        column range ``±(rows + comp_rows)``; smaller is rejected, at most 16.
    acc_bits : int or None
        Width A of the signed accumulator; default ``W + B + 4`` (16 row tiles); in
        ``[W + B, 32]``.
    cols_per_cycle : int or None
        Column parallelism P (folding); must divide ``cols``; default ``cols``.
    nonideal : iterable of str or None
        Non-idealities to build, a subset of :data:`NONIDEALITIES`; default
        :data:`DEFAULT_NONIDEALITIES`.
    pipeline : int
        Register stages L in the readout path, 0..4 (default 0: combinational). Each
        stage delays the readout by one cycle and adds one cycle per group to a RUN and
        ``comp_steps + 1`` to a CALIBRATE; the results are the same.
    name : str
        Verilog module name.

    Members
    -------
    groups : int
        ``cols // cols_per_cycle``: column groups processed one after another.
    comp_bits : int
        Width of the signed compensation value ``2n - K``.
    region_shift : int
        Word-address bits of the offset inside a region.
    addr_bits : int
        Wishbone word-address width.
    """

    rows: int
    cols: int
    input_bits: int = 5
    comp_rows: int = 8
    readout_bits: int | None = None
    acc_bits: int | None = None
    cols_per_cycle: int | None = None
    nonideal: frozenset = DEFAULT_NONIDEALITIES
    pipeline: int = 0
    counters: bool = False
    name: str = "cim_macro"

    def __post_init__(self):
        _check_int("rows", self.rows, 1, MAX_ROWS, f"1..32 or a multiple of 32 up to {MAX_ROWS}")
        if self.rows > 32 and self.rows % 32:
            raise ValueError(f"rows must be 1..32 or a multiple of 32 up to {MAX_ROWS}, not {self.rows}")
        _check_int("cols", self.cols, 1, MAX_COLS)
        _check_int("input_bits", self.input_bits, 1, MAX_INPUT_BITS)
        _check_int("comp_rows", self.comp_rows, 2, MAX_COMP_ROWS,
                   f"a power of two in [2, {MAX_COMP_ROWS}]")
        if self.comp_rows & (self.comp_rows - 1):
            raise ValueError(f"comp_rows must be a power of two in [2, {MAX_COMP_ROWS}], not {self.comp_rows}")

        min_w = signed_bits_for(self.rows + self.comp_rows)
        if self.readout_bits is None:
            object.__setattr__(self, "readout_bits", min_w)
        if isinstance(self.readout_bits, int) and not isinstance(self.readout_bits, bool) \
                and self.readout_bits < min_w:
            raise ValueError(
                f"readout_bits must be >= {min_w} to hold the ideal column range "
                f"±{self.rows + self.comp_rows} (rows + comp_rows), not {self.readout_bits}")
        _check_int("readout_bits", self.readout_bits, min_w, MAX_READOUT_BITS)

        min_a = self.readout_bits + self.input_bits
        if self.acc_bits is None:
            object.__setattr__(self, "acc_bits", min(min_a + 4, MAX_ACC_BITS))
        if min_a > MAX_ACC_BITS:
            raise ValueError(f"readout_bits + input_bits must be <= {MAX_ACC_BITS}, not {min_a}")
        _check_int("acc_bits", self.acc_bits, min_a, MAX_ACC_BITS,
                   f"in [{min_a}, {MAX_ACC_BITS}] (readout_bits + input_bits up to {MAX_ACC_BITS})")

        if self.cols_per_cycle is None:
            object.__setattr__(self, "cols_per_cycle", self.cols)
        _check_int("cols_per_cycle", self.cols_per_cycle, 1, self.cols)
        if self.cols % self.cols_per_cycle:
            divisors = [d for d in range(1, self.cols + 1) if self.cols % d == 0]
            raise ValueError(f"cols_per_cycle must divide cols={self.cols} (one of "
                             f"{', '.join(map(str, divisors))}), not {self.cols_per_cycle}")

        _check_int("pipeline", self.pipeline, 0, MAX_PIPELINE)
        if not isinstance(self.counters, bool):
            raise TypeError(f"counters must be True or False, not {self.counters!r}")

        nonideal = self.nonideal
        if isinstance(nonideal, str):
            raise TypeError(f"nonideal must be an iterable of names, not the string {nonideal!r}")
        nonideal = frozenset(nonideal)
        unknown = sorted(nonideal - set(NONIDEALITIES))
        if unknown:
            raise ValueError(f"nonideal must be a subset of {{{', '.join(NONIDEALITIES)}}}, "
                             f"not {unknown[0]!r}")
        object.__setattr__(self, "nonideal", nonideal)

        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"name must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*), "
                             f"not {self.name!r}")

    # --- derived widths -------------------------------------------------------------

    @property
    def groups(self) -> int:
        return self.cols // self.cols_per_cycle

    @property
    def comp_bits(self) -> int:
        return signed_bits_for(self.comp_rows)

    @property
    def comp_steps(self) -> int:
        """Moves of the calibration search: sizes K/4, K/8, ..., 1 and a final 1."""
        return self.comp_rows.bit_length() - 1

    @property
    def tile_bits(self) -> int:
        """Width of one tile's shift-accumulated sum ``sum_b 2^b v_b``."""
        return self.readout_bits + self.input_bits

    @property
    def offset_bits(self) -> int:
        return self.readout_bits

    @property
    def readout_max(self) -> int:
        """Largest readout magnitude, ``2^(W-1) - 1``: the ADC's saturation limit."""
        return (1 << (self.readout_bits - 1)) - 1

    @property
    def chunk_rows(self) -> int:
        """Rows per 32-bit bus word of a weight column or an input plane."""
        return min(self.rows, BUS_DATA_BITS)

    @property
    def chunks(self) -> int:
        return self.rows // self.chunk_rows

    @property
    def packed_words(self) -> int:
        """Bus words of a packed one-bit-per-column region (FLIP, OUT, CALFLAG)."""
        return -(-self.cols // BUS_DATA_BITS)

    @property
    def group_addr_bits(self) -> int:
        return _clog2(self.groups)

    @property
    def slot_addr_bits(self) -> int:
        return _clog2(self.cols_per_cycle)

    @property
    def chunk_addr_bits(self) -> int:
        return _clog2(self.chunks)

    @property
    def features(self) -> int:
        """FEATURES: bit i = non-ideality i built; bit :data:`COUNTERS_FEATURE_BIT` = the
        activity counters built."""
        return (sum(1 << i for i, n in enumerate(NONIDEALITIES) if n in self.nonideal)
                | (self.counters << COUNTERS_FEATURE_BIT))

    @property
    def gain_frac(self) -> int:
        return GAIN_FRAC_BITS if "gain" in self.nonideal else 0

    def has(self, nonideality: str) -> bool:
        return nonideality in self.nonideal

    # --- register map ---------------------------------------------------------------

    def regions(self) -> list[dict]:
        """Every built region: name, number, access, field layout and size in words."""
        p = self
        col_fields = [("group", p.group_addr_bits), ("slot", p.slot_addr_bits)]
        weight_fields = col_fields + [("chunk", p.chunk_addr_bits)]
        regs = [
            dict(name="CSR", region=Region.CSR, access="see registers", fields=[("reg", CSR.REG_BITS)],
                 kind="csr", width=32),
            dict(name="WEIGHT", region=Region.WEIGHT, access="rw", fields=weight_fields,
                 kind="bits", width=p.chunk_rows,
                 doc="bit i of word (group, slot, chunk) is the weight of row chunk*32+i "
                     "in column group*P+slot; 1 = +1, 0 = -1"),
            dict(name="COMP", region=Region.COMP, access="rw", fields=col_fields,
                 kind="bits", width=p.comp_rows,
                 doc="bit k is compensation cell k of the column; 1 = +1, 0 = -1"),
            dict(name="THRESH", region=Region.THRESH, access="rw", fields=col_fields,
                 kind="signed", width=p.acc_bits, doc="batchnorm threshold theta"),
            dict(name="FLIP", region=Region.FLIP, access="rw", fields=[("word", _clog2(p.packed_words))],
                 kind="packed", width=32, doc="bit i of word j: flip of column 32j+i"),
            dict(name="INPUT", region=Region.INPUT, access="rw",
                 fields=[("plane", _clog2(p.input_bits)), ("chunk", p.chunk_addr_bits)],
                 kind="bits", width=p.chunk_rows,
                 doc="bit i of word (plane, chunk) is bit 'plane' of input row chunk*32+i"),
            dict(name="ACC", region=Region.ACC, access="ro", fields=col_fields,
                 kind="signed", width=p.acc_bits, doc="accumulator, sign-extended"),
            dict(name="OUT", region=Region.OUT, access="ro", fields=[("word", _clog2(p.packed_words))],
                 kind="packed", width=32, doc="bit i of word j: binarized output of column 32j+i"),
            dict(name="CALFLAG", region=Region.CALFLAG, access="ro",
                 fields=[("word", _clog2(p.packed_words))], kind="packed", width=32,
                 doc="bit i of word j: column 32j+i offset outside the compensation range"),
        ]
        if p.has("offset"):
            regs.append(dict(name="OFFSET", region=Region.OFFSET, access="rw", fields=col_fields,
                             kind="signed", width=p.offset_bits, doc="column offset in cell units"))
        if p.has("gain"):
            regs.append(dict(name="GAIN", region=Region.GAIN, access="rw", fields=col_fields,
                             kind="unsigned", width=GAIN_BITS,
                             doc=f"column gain, {1 << GAIN_FRAC_BITS} = 1.0"))
        if p.has("table"):
            regs.append(dict(name="TABLE", region=Region.TABLE, access="rw",
                             fields=[("index", p.readout_bits)], kind="signed", width=p.readout_bits,
                             doc="transfer curve: entry (k mod 2^W) is the output for clamped value k"))
        if p.has("stuck"):
            for name, region in (("STUCK_MASK", Region.STUCK_MASK), ("STUCK_VALUE", Region.STUCK_VALUE)):
                regs.append(dict(name=name, region=region, access="rw", fields=weight_fields,
                                 kind="bits", width=p.chunk_rows,
                                 doc="same layout as WEIGHT; a masked cell reads as its STUCK_VALUE bit"))
        for r in regs:
            r["offset_bits"] = sum(w for _, w in r["fields"])
        return regs

    @property
    def cycle_bits(self) -> int:
        """Width of CYCLES: holds the longest command's busy time (section 5)."""
        return max(self.run_cycles(self.input_bits), self.calibrate_cycles(),
                   self.clear_cycles()).bit_length()

    def field_sizes(self) -> dict:
        """Number of valid values of each address field (section 6, "Regions"): an offset
        whose field is at or above its size is a hole (BAD_ADDRESS)."""
        return dict(reg=1 << CSR.REG_BITS, group=self.groups, slot=self.cols_per_cycle,
                    chunk=self.chunks, plane=self.input_bits, word=self.packed_words,
                    index=1 << self.readout_bits)

    @property
    def region_shift(self) -> int:
        return max(r["offset_bits"] for r in self.regions())

    @property
    def addr_bits(self) -> int:
        return Region.BITS + self.region_shift

    def csrs(self) -> list[dict]:
        """Every register of region 0 with its access, reset value and meaning."""
        p = self
        regs = [
            ("ID", CSR.ID, "ro", ID_MAGIC, "magic 0x43694D31 ('CiM1')"),
            ("VERSION", CSR.VERSION, "ro", CONTRACT_VERSION[0] << 16 | CONTRACT_VERSION[1],
             "contract version major<<16 | minor"),
            ("ROWS", CSR.ROWS, "ro", p.rows, "R"),
            ("COLS", CSR.COLS, "ro", p.cols, "C"),
            ("INPUT_BITS", CSR.INPUT_BITS, "ro", p.input_bits, "B"),
            ("COMP_ROWS", CSR.COMP_ROWS, "ro", p.comp_rows, "K"),
            ("COLS_PER_CYCLE", CSR.COLS_PER_CYCLE, "ro", p.cols_per_cycle, "P"),
            ("READOUT_BITS", CSR.READOUT_BITS, "ro", p.readout_bits, "W"),
            ("ACC_BITS", CSR.ACC_BITS, "ro", p.acc_bits, "A"),
            ("FEATURES", CSR.FEATURES, "ro", p.features,
             "bit i set when NONIDEALITIES[i] is built: " + ", ".join(
                 f"{i}={n}" for i, n in enumerate(NONIDEALITIES))),
            ("GAIN_FRAC", CSR.GAIN_FRAC, "ro", p.gain_frac, "fraction bits of GAIN (0: no gain)"),
            ("REGION_SHIFT", CSR.REGION_SHIFT, "ro", p.region_shift,
             "word address = region << REGION_SHIFT | offset"),
            ("PIPELINE", CSR.PIPELINE, "ro", p.pipeline,
             "register stages L in the readout path (cycle counts depend on it)"),
            ("CMD", CSR.CMD, "rw", 0, "write starts a command; reads the last accepted command"),
            ("STATUS", CSR.STATUS, "rw", 0,
             "busy[0] done[1] error[2] cal_range[3] acc_sat[4]; write 1 clears done, error, acc_sat"
             + (", and with bit 5 the activity counters" if p.counters else "")),
            ("ERRCODE", CSR.ERRCODE, "ro", 0, "cause of the first error (ErrCode)"),
            ("ERRADDR", CSR.ERRADDR, "ro", 0, "word address of the first error"),
            ("CYCLES", CSR.CYCLES, "ro", 0, "clock cycles the last command was busy"),
        ]
        if p.has("readout"):
            regs += [
                ("SAT", CSR.SAT, "rw", p.readout_max,
                 f"readout saturation limit, 0..{p.readout_max}"),
                ("QSHIFT", CSR.QSHIFT, "rw", 0,
                 f"readout quantisation: floor to a multiple of 2^QSHIFT, 0..{(1 << QSHIFT_BITS) - 1}"),
            ]
        if p.counters:
            regs += [
                ("PLANE_OPS", CSR.PLANE_OPS, "ro", 0, "plane cycles of RUNs (one per group and plane)"),
                ("CONVERSIONS", CSR.CONVERSIONS, "ro", 0,
                 "column readouts converted: P per plane cycle and per calibration read"),
                ("CAL_READS", CSR.CAL_READS, "ro", 0, "search and verification reads of a group"),
                ("BUS_ACCESSES", CSR.BUS_ACCESSES, "ro", 0,
                 "bus accesses, faulty and abandoned ones included (a read excludes itself)"),
            ]
        return [dict(name=n, offset=o, access=a, reset=r, doc=d) for n, o, a, r, d in regs]

    @property
    def bus_latency(self) -> int:
        """Cycles from a bus access (``cyc & stb``) to its ``ack`` (section 6):
        :func:`bus_latency_of` this pipeline."""
        return bus_latency_of(self.pipeline)

    def run_cycles(self, planes: int) -> int:
        """Cycles a RUN command with ``planes`` bit-planes keeps BUSY high."""
        return self.groups * (planes + 2 + self.pipeline)

    def calibrate_cycles(self) -> int:
        """Cycles a CALIBRATE command keeps BUSY high."""
        return self.groups * (self.comp_steps + 3 + (self.comp_steps + 1) * self.pipeline)

    def clear_cycles(self) -> int:
        """Cycles a CLEAR command keeps BUSY high."""
        return self.groups

    def to_dict(self) -> dict:
        """Every parameter and derived width, JSON-ready (the manifest's ``params``)."""
        return dict(
            name=self.name, rows=self.rows, cols=self.cols, input_bits=self.input_bits,
            comp_rows=self.comp_rows, readout_bits=self.readout_bits, acc_bits=self.acc_bits,
            cols_per_cycle=self.cols_per_cycle, nonideal=sorted(self.nonideal),
            pipeline=self.pipeline, counters=self.counters, derived=dict(
                groups=self.groups, comp_bits=self.comp_bits, comp_steps=self.comp_steps,
                tile_bits=self.tile_bits, offset_bits=self.offset_bits,
                readout_max=self.readout_max, gain_bits=GAIN_BITS, gain_frac=self.gain_frac,
                qshift_bits=QSHIFT_BITS, chunk_rows=self.chunk_rows, chunks=self.chunks,
                packed_words=self.packed_words, features=self.features,
                region_shift=self.region_shift, addr_bits=self.addr_bits,
            ),
        )

    @classmethod
    def from_dict(cls, d: dict) -> "MacroParams":
        keys = ("rows", "cols", "input_bits", "comp_rows", "readout_bits", "acc_bits",
                "cols_per_cycle", "nonideal", "pipeline", "counters", "name")
        return cls(**{k: d[k] for k in keys if k in d})
