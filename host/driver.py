"""The one host driver of a generated CiM macro: async and transport-agnostic.

:class:`MacroDriver` turns numpy arrays (weights, thresholds, inputs, non-idealities)
into the bus words of ``docs/ARCHITECTURE.md`` section 6 and back, issues commands and
checks STATUS. It reaches the macro only through a :class:`host.transport.Transport`,
so the same calls run on the golden model, on the RTL in cocotb and on an FPGA.

Every bus address is computed by :meth:`RegisterMap.addr`, from the field layouts of
``MacroParams.regions()``; nothing else in the driver knows the address format.

The driver awaits nothing but its transport, so it runs under ``asyncio.run`` and
inside a cocotb test alike.
"""

from __future__ import annotations

import numpy as np

from models.params import (
    CONTRACT_VERSION, COUNTERS_FEATURE_BIT, CSR, GAIN_BITS, ID_MAGIC, NONIDEALITIES, QSHIFT_BITS,
    BUS_DATA_BITS,
    EngineErrCode, ErrCode, MacroParams, Op, Status,
)

from .transport import read_burst, write_burst

__all__ = ["MacroDriver", "RegisterMap", "MacroError", "ProtocolError", "FeatureError",
           "errcode_name"]

_WORD_MASK = (1 << BUS_DATA_BITS) - 1
# The engine's codes too: a MacroDriver also drives the macro inside an engine
# (host.engine.EngineRegisterMap), whose accesses may answer them.
_ERRCODE_NAMES = {v: k for cls in (ErrCode, EngineErrCode) for k, v in vars(cls).items()
                  if k.isupper() and isinstance(v, int)}
_CSR_NAMES = {v: k for k, v in vars(CSR).items() if k.isupper() and isinstance(v, int)}
_STATUS_FLAGS = ("busy", "done", "error", "cal_range", "acc_sat")
#: The activity counters' CSRs under the energy model's event names, in read order.
_COUNTER_CSRS = (("plane_operations", "PLANE_OPS"), ("column_conversions", "CONVERSIONS"),
                 ("calibration_reads", "CAL_READS"), ("bus_accesses", "BUS_ACCESSES"))
_STATUS_BITS = dict(busy=Status.BUSY, done=Status.DONE, error=Status.ERROR,
                    cal_range=Status.CAL_RANGE, acc_sat=Status.ACC_SAT)


def errcode_name(code: int) -> str:
    """Name of an ERRCODE value of a macro or an engine (``"BAD_ADDRESS"``,
    ``"NO_RESULT"``), or ``"UNKNOWN(n)"``."""
    return _ERRCODE_NAMES.get(code, f"UNKNOWN({code})")


class MacroError(RuntimeError):
    """The macro set STATUS.error during a driver operation.

    Members
    -------
    operation : str
        What the driver was doing (``"RUN (planes=5, accumulate=False)"``).
    code : int
        The ERRCODE value; :attr:`code_name` is its :class:`models.params.ErrCode` name.
    addr : int
        The ERRADDR value: word address of the first faulty access.
    where : str
        ``addr`` decoded into region and fields.
    """

    def __init__(self, operation: str, code: int, addr: int, where: str):
        self.operation = operation
        self.code = code
        self.code_name = errcode_name(code)
        self.addr = addr
        self.where = where
        super().__init__(f"{operation}: the macro reports {self.code_name} (ERRCODE {code}) "
                         f"at word address {addr:#x} ({where})")


class ProtocolError(RuntimeError):
    """The macro answered something the contract does not allow (wrong ID, bad word)."""


class FeatureError(ValueError):
    """A driver call needs a non-ideality that this macro was generated without."""


def _check_int(name: str, value, lo: int, hi: int) -> int:
    """A Python int from an int-like scalar, or a one-line TypeError/ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], not {value}")
    return value


def _int_array(name: str, values, shape: tuple, lo: int, hi: int, what: str) -> np.ndarray:
    """``values`` as an int64 array of ``shape`` with every entry in ``[lo, hi]``.

    Floats are accepted when they hold whole numbers. The error names the first bad
    entry, its value and the allowed range, so the caller knows what to fix.
    """
    a = np.asarray(values)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, not {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.int64)
    elif a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            idx = np.argwhere(~np.isfinite(a) | (a != np.round(a)))[0]
            raise ValueError(f"{name}{list(map(int, idx))} = {a[tuple(idx)]} is not a whole number")
        a = a.astype(np.float64)
    elif a.dtype.kind == "O":
        try:
            a = np.array([int(v) for v in a.ravel()], dtype=object).reshape(shape)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold integers, not {values!r}") from None
    elif a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, not {a.dtype} values")
    bad = (a < lo) | (a > hi)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        label = f"{name}[{', '.join(map(str, idx))}]" if idx else name
        raise ValueError(f"{label} = {int(a[idx])} is out of range: {what} allows {lo}..{hi}")
    return a.astype(np.int64)


def _bit_array(name: str, values, shape: tuple) -> np.ndarray:
    """A 0/1 uint8 array from 0/1 or ±1 values (+1 -> 1, -1 -> 0)."""
    a = np.asarray(values)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, not {a.shape}")
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold 0/1 or -1/+1 values, not {a.dtype} values")
    if a.dtype.kind == "u" and (a.size == 0 or a.max() <= 1):
        return a.astype(np.uint8, copy=False)
    has_zero, has_minus = bool(np.any(a == 0)), bool(np.any(a == -1))
    bad = ~np.isin(a, (0, 1, -1)) if not (has_zero and has_minus) else ~np.isin(a, (0, 1))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}[{', '.join(map(str, idx))}] = {a[idx]} is not a weight bit: "
                         f"{name} must be all 0/1 or all -1/+1")
    return (a > 0).astype(np.uint8)


def _column_list(p: MacroParams, columns) -> np.ndarray | None:
    """``columns`` as an int64 array of distinct column indices (None stays None)."""
    if columns is None:
        return None
    if isinstance(columns, slice):
        columns = range(p.cols)[columns]
    c = np.asarray(columns)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"columns must be a non-empty 1-D sequence of column indices, "
                         f"not {columns!r}")
    if c.dtype.kind not in "iu":
        raise TypeError(f"columns must hold integers, not {c.dtype} values")
    if c.min() < 0 or c.max() >= p.cols:
        bad = int(c[(c < 0) | (c >= p.cols)][0])
        raise ValueError(f"columns holds {bad}; the macro's columns are 0..{p.cols - 1}")
    if np.unique(c).size != c.size:
        raise ValueError(f"columns must be distinct, not {c.tolist()}")
    return c.astype(np.int64)


def _to_signed(word: np.ndarray | int, bits: int):
    """Two's-complement value of the low ``bits`` bits."""
    word = np.asarray(word, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(word >= 1 << (bits - 1), word - (1 << bits), word)


class RegisterMap:
    """Word addresses of one macro, computed from the field layouts of ``p.regions()``.

    Parameters
    ----------
    p : MacroParams

    Members
    -------
    p : MacroParams
    region_shift : int
        ``p.region_shift``: word address = ``region << region_shift | offset``.
    regions : dict
        Region name -> the region's dict from ``p.regions()`` (built regions only).
    field_sizes : dict
        Field name -> number of valid values (a field of ``w`` bits may have holes).
    """

    def __init__(self, p: MacroParams):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self.p = p
        self.region_shift = p.region_shift
        self.regions = {r["name"]: r for r in p.regions()}
        self._by_number = {r["region"]: r for r in self.regions.values()}
        self.field_sizes = dict(group=p.groups, slot=p.cols_per_cycle, chunk=p.chunks,
                                plane=p.input_bits, word=p.packed_words,
                                index=1 << p.readout_bits, reg=32)
        self._cache: dict = {}
        self._csr_addrs: dict = {}

    def _cached(self, key, make) -> np.ndarray:
        """A read-only address array, computed once per map (the driver asks for the same
        arrays for every image of a network)."""
        a = self._cache.get(key)
        if a is None:
            a = np.asarray(make(), dtype=np.int64)
            a.setflags(write=False)
            self._cache[key] = a
        return a

    def addr(self, region: str, **fields):
        """Word address of ``region`` at the given field values.

        The offset is the concatenation of the region's fields, most significant first,
        each ``width`` bits wide; every field of the region must be given. Field values
        may be numpy integer arrays (broadcast together); the result is then an array.
        """
        try:
            r = self.regions[region]
        except KeyError:
            raise ValueError(f"region {region!r} is not built in this macro; built: "
                             f"{', '.join(self.regions)}") from None
        names = [n for n, _ in r["fields"]]
        if set(fields) != set(names):
            raise TypeError(f"region {region} takes the fields {names}, not {sorted(fields)}")
        offset = 0
        for name, width in r["fields"]:
            value = fields[name]
            size = self.field_sizes[name]
            if np.any(np.asarray(value) < 0) or np.any(np.asarray(value) >= size):
                raise ValueError(f"{region} field {name} must be in [0, {size - 1}], not {value}")
            offset = (offset << width) | value
        return (r["region"] << self.region_shift) | offset

    def csr(self, name: str) -> int:
        """Word address of the CSR called ``name``."""
        addr = self._csr_addrs.get(name)
        if addr is None:
            addr = self._csr_addrs[name] = int(self.addr("CSR", reg=getattr(CSR, name)))
        return addr

    def column_addrs(self, region: str) -> np.ndarray:
        """Addresses of a per-column region (group, slot), column 0..C-1 in order (read-only)."""
        def make():
            c = np.arange(self.p.cols, dtype=np.int64)
            P = self.p.cols_per_cycle
            return self.addr(region, group=c // P, slot=c % P)
        return self._cached(("column", region), make)

    def column_chunk_addrs(self, region: str) -> np.ndarray:
        """Addresses of a (group, slot, chunk) region as a (C, chunks) array (read-only)."""
        def make():
            c = np.arange(self.p.cols, dtype=np.int64)[:, None]
            j = np.arange(self.p.chunks, dtype=np.int64)[None, :]
            P = self.p.cols_per_cycle
            return self.addr(region, group=c // P, slot=c % P, chunk=j)
        return self._cached(("column_chunk", region), make)

    def word_addrs(self, region: str) -> np.ndarray:
        """Addresses of a packed one-bit-per-column region (FLIP, OUT, CALFLAG) (read-only)."""
        return self._cached(("word", region), lambda: self.addr(
            region, word=np.arange(self.p.packed_words, dtype=np.int64)))

    def input_addrs(self, planes: int) -> np.ndarray:
        """Addresses of INPUT planes 0..planes-1 as a (planes, chunks) array (read-only)."""
        def make():
            b = np.arange(planes, dtype=np.int64)[:, None]
            j = np.arange(self.p.chunks, dtype=np.int64)[None, :]
            return self.addr("INPUT", plane=b, chunk=j)
        return self._cached(("input", planes), make)

    def describe(self, addr: int) -> str:
        """``addr`` as ``REGION[field=value, ...]`` (for error messages)."""
        number, offset = addr >> self.region_shift, addr & ((1 << self.region_shift) - 1)
        r = self._by_number.get(number)
        if r is None:
            return f"region {number} (not built), offset {offset:#x}"
        values = []
        for name, width in reversed(r["fields"]):
            values.append((name, offset & ((1 << width) - 1)))
            offset >>= width
        if offset:
            return f"{r['name']}, offset beyond its fields"
        values.reverse()
        if r["name"] == "CSR":
            reg = values[0][1]
            return f"CSR {_CSR_NAMES.get(reg, f'{reg} (unmapped)')}"
        return f"{r['name']}[{', '.join(f'{n}={v}' for n, v in values)}]"


def _pack_bits(bits: np.ndarray, per_word: int) -> np.ndarray:
    """Pack a (N, M) 0/1 array along axis 0 into (ceil(N / per_word), M) words, bit i = row i."""
    n, m = bits.shape
    words = -(-n // per_word)
    padded = np.zeros((words * per_word, m), dtype=np.int64)
    padded[:n] = bits
    shifts = np.arange(per_word, dtype=np.int64)[None, :, None]
    return (padded.reshape(words, per_word, m) << shifts).sum(axis=1)


def _unpack_bits(words: np.ndarray, per_word: int, n: int) -> np.ndarray:
    """Inverse of :func:`_pack_bits`: (W, M) words -> (n, M) 0/1 uint8."""
    words = np.asarray(words, dtype=np.int64)
    shifts = np.arange(per_word, dtype=np.int64)[None, :, None]
    bits = (words[:, None, :] >> shifts) & 1
    return bits.reshape(-1, words.shape[1])[:n].astype(np.uint8)


class MacroDriver:
    """Host driver of one macro: arrays in, arrays out, over any transport.

    Build one with ``await MacroDriver.connect(transport)``, which reads the ID, the
    contract version and the parameter CSRs. ``MacroDriver(transport, p)`` skips those
    reads when the parameters are already known.

    Argument checks (shape, range, non-ideality built) all happen before the first bus
    access of a call, so a rejected call leaves the macro untouched. After every call
    that writes, the driver reads STATUS once and raises :class:`MacroError` if the
    macro flagged a fault (``check_errors = False`` turns that read off); the error
    registers are cleared after they are read into the exception.

    Parameters
    ----------
    transport : Transport
    p : MacroParams

    Members
    -------
    transport : Transport
    p : MacroParams
    map : RegisterMap
    check_errors : bool
        Read STATUS after every writing call (default True).
    poll_slack : int
        STATUS polls allowed beyond a command's contract cycle count before
        :class:`TimeoutError` (default 100). Each poll is one bus read, which takes at
        least one clock cycle, so ``cycles + poll_slack`` polls only run out when the
        macro hangs.
    last_cycles : int or None
        CYCLES of the last command.
    """

    def __init__(self, transport, p: MacroParams):
        if not (callable(getattr(transport, "read", None))
                and callable(getattr(transport, "write", None))):
            raise TypeError(f"transport must have async read(addr) and write(addr, data, sel) "
                            f"methods, not {transport!r}")
        self.transport = transport
        self.p = p
        self.map = RegisterMap(p)
        self.check_errors = True
        self.poll_slack = 100
        self.last_cycles: int | None = None

    # --- connection -----------------------------------------------------------------

    @classmethod
    async def connect(cls, transport, name: str = "cim_macro") -> "MacroDriver":
        """Identify the macro behind ``transport`` and read its parameters.

        Raises :class:`ProtocolError` when the ID is not ``ID_MAGIC``, when the
        contract's major version differs from ``CONTRACT_VERSION[0]``, or when the
        parameter CSRs do not describe a valid macro. Only reads; writes nothing.
        """
        ident = int(await transport.read(CSR.ID))
        if ident != ID_MAGIC:
            raise ProtocolError(f"no CiM macro at this transport: ID reads 0x{ident:08X}, "
                                f"expected 0x{ID_MAGIC:08X}")
        version = int(await transport.read(CSR.VERSION))
        major, minor = version >> 16, version & 0xFFFF
        if major != CONTRACT_VERSION[0]:
            raise ProtocolError(
                f"the macro implements contract version {major}.{minor}, this driver "
                f"implements {CONTRACT_VERSION[0]}.{CONTRACT_VERSION[1]}: major versions differ")
        names = ("ROWS", "COLS", "INPUT_BITS", "COMP_ROWS", "COLS_PER_CYCLE", "READOUT_BITS",
                 "ACC_BITS", "FEATURES", "GAIN_FRAC", "REGION_SHIFT")
        if minor >= 1:
            # PIPELINE came with contract 1.1; on a 1.0 macro the read would be a
            # BAD_ADDRESS fault left latched in STATUS, and its L is 0.
            names += ("PIPELINE",)
        values = dict(zip(names, await read_burst(transport, [getattr(CSR, n) for n in names])))
        values.setdefault("PIPELINE", 0)
        features = values["FEATURES"]
        if features >> (COUNTERS_FEATURE_BIT + 1):
            raise ProtocolError(f"FEATURES reads {features:#x}: bits above "
                                f"{COUNTERS_FEATURE_BIT} are not defined by contract "
                                f"{CONTRACT_VERSION[0]}.{CONTRACT_VERSION[1]}")
        try:
            p = MacroParams(
                rows=values["ROWS"], cols=values["COLS"], input_bits=values["INPUT_BITS"],
                comp_rows=values["COMP_ROWS"], readout_bits=values["READOUT_BITS"],
                acc_bits=values["ACC_BITS"], cols_per_cycle=values["COLS_PER_CYCLE"],
                nonideal={n for i, n in enumerate(NONIDEALITIES) if features >> i & 1},
                pipeline=values["PIPELINE"], counters=bool(features >> COUNTERS_FEATURE_BIT & 1),
                name=name)
        except (TypeError, ValueError) as e:
            raise ProtocolError(f"the macro's parameter CSRs describe no valid macro "
                                f"({', '.join(f'{n}={v}' for n, v in values.items())}): {e}") from None
        for csr, expected in (("GAIN_FRAC", p.gain_frac), ("REGION_SHIFT", p.region_shift)):
            if values[csr] != expected:
                raise ProtocolError(f"{csr} reads {values[csr]}, but the parameters "
                                    f"{p.rows}x{p.cols} (P={p.cols_per_cycle}, features "
                                    f"{sorted(p.nonideal)}) give {expected}")
        return cls(transport, p)

    # --- raw access -----------------------------------------------------------------

    async def read(self, addr: int) -> int:
        """One raw bus read (no error check)."""
        return int(await self.transport.read(int(addr)))

    async def write(self, addr: int, data: int, sel: int = 0xF) -> None:
        """One raw bus write (no error check)."""
        await self.transport.write(int(addr), int(data), int(sel))

    async def read_csr(self, name: str) -> int:
        return await self.read(self.map.csr(name))

    async def write_csr(self, name: str, value: int) -> None:
        await self.write(self.map.csr(name), value)

    async def _read_words(self, addrs) -> np.ndarray:
        addrs = np.asarray(addrs, dtype=np.int64)
        words = await read_burst(self.transport, addrs.ravel().tolist())
        return np.array(words, dtype=np.int64).reshape(addrs.shape)

    async def _write_words(self, addrs, words, operation: str) -> None:
        addrs = np.asarray(addrs, dtype=np.int64).ravel().tolist()
        words = (np.asarray(words, dtype=np.int64).ravel() & _WORD_MASK).tolist()
        burst = getattr(self.transport, "write_burst", None)
        if burst is not None:
            await burst(list(zip(addrs, words)))        # plain ints already
        else:
            await write_burst(self.transport, zip(addrs, words))
        if self.check_errors:
            await self._check(operation)

    # --- status and errors ----------------------------------------------------------

    async def status(self) -> dict:
        """STATUS as a dict of bools: busy, done, error, cal_range, acc_sat."""
        return self._flags(await self.read_csr("STATUS"))

    @staticmethod
    def _flags(word: int) -> dict:
        return {n: bool(word >> _STATUS_BITS[n] & 1) for n in _STATUS_FLAGS}

    async def read_error(self) -> tuple[str, int] | None:
        """``(ERRCODE name, ERRADDR)`` of the pending error, or None."""
        if not await self.read_csr("STATUS") >> Status.ERROR & 1:
            return None
        return errcode_name(await self.read_csr("ERRCODE")), await self.read_csr("ERRADDR")

    async def clear_errors(self) -> None:
        """Clear STATUS.error (with ERRCODE and ERRADDR) and STATUS.acc_sat."""
        await self.write_csr("STATUS", 1 << Status.ERROR | 1 << Status.ACC_SAT)

    async def _raise_error(self, operation: str):
        code = await self.read_csr("ERRCODE")
        addr = await self.read_csr("ERRADDR")
        await self.write_csr("STATUS", 1 << Status.ERROR)
        raise MacroError(operation, code, addr, self.map.describe(addr))

    async def _check(self, operation: str) -> None:
        if await self.read_csr("STATUS") >> Status.ERROR & 1:
            await self._raise_error(operation)

    def _require(self, feature: str, what: str) -> None:
        if not self.p.has(feature):
            built = ", ".join(sorted(self.p.nonideal)) or "none"
            raise FeatureError(f"{what} needs the '{feature}' non-ideality, which this macro "
                               f"was generated without (FEATURES = {self.p.features:#07b}: "
                               f"{built}); regenerate with '{feature}' in nonideal")

    # --- activity counters ------------------------------------------------------------

    def _require_counters(self, what: str) -> None:
        if not self.p.counters:
            raise FeatureError(f"{what} needs the activity counters, which this macro was "
                               f"generated without (FEATURES bit {COUNTERS_FEATURE_BIT} is 0); "
                               f"regenerate with --counters")

    async def read_counters(self) -> dict:
        """The activity counters (CSRs 23..26) under the energy model's event names
        (``models.energy.RTL_COUNTERS``). BUS_ACCESSES is read last, so its count
        includes the three counter reads before it but not its own."""
        self._require_counters("read_counters")
        return {name: await self.read_csr(csr) for name, csr in _COUNTER_CSRS}

    async def clear_counters(self) -> None:
        """Zero the four activity counters (a STATUS write with bit CLEAR_COUNTERS; the
        write itself is not counted)."""
        self._require_counters("clear_counters")
        await self.write_csr("STATUS", 1 << Status.CLEAR_COUNTERS)

    # --- weights, compensation, thresholds ------------------------------------------

    def _weight_words(self, bits: np.ndarray) -> np.ndarray:
        """(R, C) 0/1 -> (C, chunks) words in address order of column_chunk_addrs."""
        return _pack_bits(bits, BUS_DATA_BITS).T

    def _weight_bits(self, words: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_weight_words`."""
        return _unpack_bits(words.T, BUS_DATA_BITS, self.p.rows)

    async def write_weights(self, w, columns=None) -> None:
        """Store an (R, C) weight matrix of 0/1 or -1/+1 values (1 and +1 store +1).

        With ``columns`` (distinct column indices, a range or a slice) ``w`` is
        ``(R, len(columns))`` and only those columns are written; the others keep their
        weights.
        """
        cols = _column_list(self.p, columns)
        shape = (self.p.rows, self.p.cols if cols is None else cols.size)
        bits = _bit_array("weights", w, shape)
        addrs = self.map.column_chunk_addrs("WEIGHT")
        if cols is not None:
            addrs = addrs[cols]
        await self._write_words(addrs, self._weight_words(bits), "write_weights")

    async def read_weights(self) -> np.ndarray:
        """The stored weights as an (R, C) uint8 array, 1 = +1, 0 = -1."""
        return self._weight_bits(await self._read_words(self.map.column_chunk_addrs("WEIGHT")))

    async def write_comp(self, bits) -> None:
        """Store compensation cells: (C,) K-bit words (bit k = cell k) or a (K, C) 0/1 array."""
        p = self.p
        a = np.asarray(bits)
        if a.ndim == 2:
            cells = _int_array("comp", a, (p.comp_rows, p.cols), 0, 1, "a compensation cell")
            words = _pack_bits(cells, p.comp_rows)[0]
        else:
            words = _int_array("comp", a, (p.cols,), 0, (1 << p.comp_rows) - 1,
                               f"a COMP word of K={p.comp_rows} cells")
        await self._write_words(self.map.column_addrs("COMP"), words, "write_comp")

    async def read_comp(self, packed: bool = False) -> np.ndarray:
        """Compensation cells as a (K, C) 0/1 array, or (C,) K-bit words when ``packed``."""
        words = await self._read_words(self.map.column_addrs("COMP"))
        if packed:
            return words
        return _unpack_bits(words[None, :], self.p.comp_rows, self.p.comp_rows)

    def _signed_range(self, bits: int) -> tuple[int, int]:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def _decode_signed(self, words: np.ndarray, bits: int, region: str) -> np.ndarray:
        """Signed values of sign-extended words; a word that is no sign extension is a fault."""
        values = _to_signed(words, BUS_DATA_BITS)
        lo, hi = self._signed_range(bits)
        bad = (values < lo) | (values > hi)
        if np.any(bad):
            i = int(np.argwhere(bad)[0][0])
            raise ProtocolError(f"{region} word {i} reads {int(words.ravel()[i]):#010x}, which is "
                                f"not the sign extension of a {bits}-bit value")
        return values.astype(np.int64)

    async def write_thresholds(self, theta, flip=None) -> None:
        """Store per-column thresholds (signed A bits) and flips (0/1; default all 0)."""
        p = self.p
        lo, hi = self._signed_range(p.acc_bits)
        theta = _int_array("theta", theta, (p.cols,), lo, hi, f"THRESH (signed {p.acc_bits} bits)")
        flip = np.zeros(p.cols, np.int64) if flip is None else \
            _int_array("flip", flip, (p.cols,), 0, 1, "FLIP")
        addrs = np.concatenate([self.map.column_addrs("THRESH"), self.map.word_addrs("FLIP")])
        words = np.concatenate([theta, _pack_bits(flip[:, None], BUS_DATA_BITS)[:, 0]])
        await self._write_words(addrs, words, "write_thresholds")

    async def read_thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(theta, flip)``: (C,) int64 thresholds and (C,) uint8 flips."""
        theta = await self._read_words(self.map.column_addrs("THRESH"))
        flip = await self._read_words(self.map.word_addrs("FLIP"))
        return (self._decode_signed(theta, self.p.acc_bits, "THRESH"),
                _unpack_bits(flip[:, None], BUS_DATA_BITS, self.p.cols)[:, 0])

    # --- input ----------------------------------------------------------------------

    def _planes(self, planes) -> int:
        if planes is None:
            return self.p.input_bits
        return _check_int("planes", planes, 1, self.p.input_bits)

    async def write_input(self, x, planes: int | None = None) -> None:
        """Load an (R,) input of unsigned ``planes``-bit integers (default B bits).

        Bit b of ``x[r]`` goes to INPUT plane b; only planes 0..planes-1 are written (a
        RUN with NPLANES = planes reads no other).
        """
        p = self.p
        planes = self._planes(planes)
        x = _int_array("x", x, (p.rows,), 0, (1 << planes) - 1, f"a {planes}-bit input")
        b = np.arange(planes, dtype=np.int64)[:, None]
        addrs = self.map.input_addrs(planes)
        plane_bits = (x[None, :] >> b) & 1                       # (planes, R)
        words = _pack_bits(plane_bits.T, BUS_DATA_BITS).T
        await self._write_words(addrs, words, "write_input")

    async def write_input_bits(self, y) -> None:
        """Load a binary (R,) 0/1 vector into INPUT plane 0 (run it with ``planes=1``)."""
        await self.write_input(_int_array("y", y, (self.p.rows,), 0, 1, "a binary input"), planes=1)

    async def read_input(self) -> np.ndarray:
        """The (R,) input held in all B planes, as unsigned integers."""
        p = self.p
        b = np.arange(p.input_bits, dtype=np.int64)[:, None]
        j = np.arange(p.chunks, dtype=np.int64)[None, :]
        words = await self._read_words(self.map.addr("INPUT", plane=b, chunk=j))
        bits = _unpack_bits(words.T, BUS_DATA_BITS, p.rows).astype(np.int64)  # (R, B)
        return (bits << np.arange(p.input_bits, dtype=np.int64)[None, :]).sum(axis=1)

    # --- non-idealities -------------------------------------------------------------

    async def write_offsets(self, offsets) -> None:
        """Per-column offsets, (C,) signed W-bit integers (needs ``offset``)."""
        self._require("offset", "write_offsets")
        lo, hi = self._signed_range(self.p.offset_bits)
        o = _int_array("offsets", offsets, (self.p.cols,), lo, hi,
                       f"OFFSET (signed {self.p.offset_bits} bits)")
        await self._write_words(self.map.column_addrs("OFFSET"), o, "write_offsets")

    async def read_offsets(self) -> np.ndarray:
        self._require("offset", "read_offsets")
        words = await self._read_words(self.map.column_addrs("OFFSET"))
        return self._decode_signed(words, self.p.offset_bits, "OFFSET")

    async def write_gains(self, gains) -> None:
        """Per-column gains, (C,) unsigned 8-bit integers, 64 = 1.0 (needs ``gain``)."""
        self._require("gain", "write_gains")
        g = _int_array("gains", gains, (self.p.cols,), 0, (1 << GAIN_BITS) - 1,
                       f"GAIN (unsigned {GAIN_BITS} bits, 64 = 1.0)")
        await self._write_words(self.map.column_addrs("GAIN"), g, "write_gains")

    async def read_gains(self) -> np.ndarray:
        self._require("gain", "read_gains")
        words = await self._read_words(self.map.column_addrs("GAIN"))
        if np.any(words >> GAIN_BITS):
            raise ProtocolError(f"GAIN reads {int(words.max()):#x}, wider than {GAIN_BITS} bits")
        return words

    async def write_table(self, table) -> None:
        """The transfer curve, (2^W,) signed W-bit entries; entry (k mod 2^W) maps k (needs ``table``)."""
        self._require("table", "write_table")
        p = self.p
        lo, hi = self._signed_range(p.readout_bits)
        t = _int_array("table", table, (1 << p.readout_bits,), lo, hi,
                       f"TABLE (signed {p.readout_bits} bits)")
        addrs = self.map.addr("TABLE", index=np.arange(1 << p.readout_bits, dtype=np.int64))
        await self._write_words(addrs, t, "write_table")

    async def read_table(self) -> np.ndarray:
        self._require("table", "read_table")
        p = self.p
        words = await self._read_words(
            self.map.addr("TABLE", index=np.arange(1 << p.readout_bits, dtype=np.int64)))
        return self._decode_signed(words, p.readout_bits, "TABLE")

    async def write_stuck(self, mask, value) -> None:
        """Stuck-at cells: (R, C) 0/1 ``mask``; (R, C) 0/1 or -1/+1 ``value`` (needs ``stuck``)."""
        self._require("stuck", "write_stuck")
        shape = (self.p.rows, self.p.cols)
        m = _int_array("mask", mask, shape, 0, 1, "STUCK_MASK")
        v = _bit_array("value", value, shape)
        addrs = np.concatenate([self.map.column_chunk_addrs("STUCK_MASK").ravel(),
                                self.map.column_chunk_addrs("STUCK_VALUE").ravel()])
        words = np.concatenate([self._weight_words(m).ravel(), self._weight_words(v).ravel()])
        await self._write_words(addrs, words, "write_stuck")

    async def read_stuck(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, value)`` as (R, C) uint8 arrays."""
        self._require("stuck", "read_stuck")
        mask = await self._read_words(self.map.column_chunk_addrs("STUCK_MASK"))
        value = await self._read_words(self.map.column_chunk_addrs("STUCK_VALUE"))
        return self._weight_bits(mask), self._weight_bits(value)

    async def set_readout(self, sat: int | None = None, qshift: int | None = None) -> None:
        """Readout saturation limit SAT (0..M) and quantisation QSHIFT (0..15) (needs ``readout``).

        ``None`` leaves a register as it is.
        """
        self._require("readout", "set_readout")
        pairs = []
        if sat is not None:
            sat = _int_array("sat", sat, (), 0, self.p.readout_max,
                             f"SAT (readout_max M = {self.p.readout_max})")
            pairs.append((self.map.csr("SAT"), int(sat)))
        if qshift is not None:
            qshift = _int_array("qshift", qshift, (), 0, (1 << QSHIFT_BITS) - 1,
                                f"QSHIFT ({QSHIFT_BITS} bits)")
            pairs.append((self.map.csr("QSHIFT"), int(qshift)))
        if pairs:
            await self._write_words([a for a, _ in pairs], [v for _, v in pairs], "set_readout")

    async def write_nonidealities(self, offset=None, gain=None, table=None, stuck_mask=None,
                                  stuck_value=None, sat=None, qshift=None) -> None:
        """Load a chip instance's registers: the keyword arguments of
        ``models.macro.readout`` (as ``models.chip.chip_to_rtl`` returns them).

        ``None`` leaves a register as it is; a value for a non-ideality the macro does not
        build raises ``FeatureError`` (as the single writers do), before any write.
        """
        given = dict(offset=offset, gain=gain, table=table, stuck=stuck_mask,
                     readout=sat if sat is not None else qshift)
        for feature, value in given.items():
            if value is not None:
                self._require(feature, "write_nonidealities")
        if (stuck_mask is None) != (stuck_value is None):
            raise ValueError("stuck_mask and stuck_value must be given together")
        if offset is not None:
            await self.write_offsets(offset)
        if gain is not None:
            await self.write_gains(gain)
        if table is not None:
            await self.write_table(table)
        if stuck_mask is not None:
            await self.write_stuck(stuck_mask, stuck_value)
        if sat is not None or qshift is not None:
            await self.set_readout(sat=sat, qshift=qshift)

    async def read_readout(self) -> dict:
        """``{"sat": SAT, "qshift": QSHIFT}``."""
        self._require("readout", "read_readout")
        return dict(sat=await self.read_csr("SAT"), qshift=await self.read_csr("QSHIFT"))

    # --- commands -------------------------------------------------------------------

    async def _command(self, cmd: int, operation: str, cycles: int, how: str) -> int:
        await self.write_csr("CMD", cmd)
        limit = cycles + self.poll_slack
        for _ in range(limit):
            word = await self.read_csr("STATUS")
            if not word >> Status.BUSY & 1:
                break
        else:
            raise TimeoutError(f"{operation} still BUSY after {limit} STATUS polls; the contract "
                               f"says it takes {cycles} cycles ({how})")
        if word >> Status.ERROR & 1:
            await self._raise_error(operation)
        self.last_cycles = await self.read_csr("CYCLES")
        return self.last_cycles

    async def run(self, planes: int | None = None, accumulate: bool = False) -> int:
        """RUN over bit-planes ``planes``-1..0 (default all B); returns CYCLES.

        With ``accumulate`` the tile adds to ACC (the next row tile of a layer).
        """
        planes = self._planes(planes)
        if not isinstance(accumulate, (bool, np.bool_)):
            raise TypeError(f"accumulate must be a bool, not {accumulate!r}")
        cmd = Op.RUN | int(accumulate) << 4 | planes << 8
        return await self._command(
            cmd, f"RUN (planes={planes}, accumulate={bool(accumulate)})", self.p.run_cycles(planes),
            f"G·(p+2) with G={self.p.groups}, p={planes}")

    async def calibrate(self) -> int:
        """CALIBRATE every column (sets COMP and CALFLAG); returns CYCLES."""
        return await self._command(Op.CALIBRATE, "CALIBRATE", self.p.calibrate_cycles(),
                                   f"G·(S+3) with G={self.p.groups}, S={self.p.comp_steps}")

    async def clear(self) -> int:
        """CLEAR: ACC and OUT of every column to 0; returns CYCLES."""
        return await self._command(Op.CLEAR, "CLEAR", self.p.clear_cycles(), f"G={self.p.groups}")

    # --- results --------------------------------------------------------------------

    async def read_acc(self, columns=None) -> np.ndarray:
        """The (C,) accumulators as int64; with ``columns`` (distinct column indices, a
        range or a slice) only those, in that order."""
        cols = _column_list(self.p, columns)
        addrs = self.map.column_addrs("ACC")
        words = await self._read_words(addrs if cols is None else addrs[cols])
        return self._decode_signed(words, self.p.acc_bits, "ACC")

    async def _read_packed(self, region: str) -> np.ndarray:
        words = await self._read_words(self.map.word_addrs(region))
        return _unpack_bits(words[:, None], BUS_DATA_BITS, self.p.cols)[:, 0]

    async def read_out(self) -> np.ndarray:
        """The (C,) binarized outputs as uint8."""
        return await self._read_packed("OUT")

    async def read_calflags(self) -> np.ndarray:
        """The (C,) calibration out-of-range flags as uint8."""
        return await self._read_packed("CALFLAG")

    # --- one-vector helpers ---------------------------------------------------------

    async def matvec(self, x, planes: int | None = None, accumulate: bool = False) -> np.ndarray:
        """Load ``x`` (R,) unsigned ``planes``-bit integers, RUN, return ACC."""
        planes = self._planes(planes)
        await self.write_input(x, planes)
        await self.run(planes, accumulate)
        return await self.read_acc()

    async def matvec_bits(self, y, accumulate: bool = False) -> np.ndarray:
        """Load a binary (R,) vector into plane 0, RUN one plane, return ACC."""
        await self.write_input_bits(y)
        await self.run(1, accumulate)
        return await self.read_acc()

    def __repr__(self):
        p = self.p
        return (f"MacroDriver({p.rows}x{p.cols}, B={p.input_bits}, K={p.comp_rows}, "
                f"P={p.cols_per_cycle}, nonideal={sorted(p.nonideal)}, via {self.transport!r})")
