"""The host driver of a network engine (docs/ENGINE.md, docs/DRIVER.md "The network
engine"): load a network, classify a stream of images, read the scores and the
engine's own cycle count, over any :class:`host.transport.Transport`.

:class:`EngineDriver` talks to the engine only through its transport, as
:class:`host.driver.MacroDriver` does to a macro; on the golden model the transport is
``ModelTransport(EngineBusModel(params))``. The macro's registers stay reachable in the
engine's map at the macro's region numbers, so the chip's registers, CALIBRATE and the
trim go through a :class:`host.driver.MacroDriver` that shares the transport and uses
the engine's address map (:class:`EngineRegisterMap`).
"""

from __future__ import annotations

import os

import numpy as np

from models.engine import EngineParams, NetworkProgram, build_program, program_words
from models.engine_params import (ENGINE_ID_MAGIC, ENGINE_VERSION, PROGRAM_WORDS, EngineCSR,
                                  EngineStatus)
from models.export import FoldedNet, check_images, load_folded
from models.params import (BUS_DATA_BITS, COUNTERS_FEATURE_BIT, CSR, ID_MAGIC, NONIDEALITIES,
                           MacroParams, Region, Status)

from .driver import MacroDriver, MacroError, ProtocolError, RegisterMap, errcode_name
from .network import measure_residual
from .transport import read_burst, write_burst

__all__ = ["EngineDriver", "EngineRegisterMap", "EngineError", "engine_errcode_name",
           "program_words"]

_ENGINE_CSR_NAMES = {v: k for k, v in vars(EngineCSR).items() if k.isupper()}
#: The macro parameter CSRs the engine answers at the macro's offsets.
_PARAM_CSRS = dict(rows="ROWS", cols="COLS", input_bits="INPUT_BITS", comp_rows="COMP_ROWS",
                   cols_per_cycle="COLS_PER_CYCLE", readout_bits="READOUT_BITS",
                   acc_bits="ACC_BITS", pipeline="PIPELINE")
_CAPACITY_CSRS = dict(weight_banks="WEIGHT_BANKS", layers="LAYERS",
                      image_slots="IMAGE_SLOTS", max_width="MAX_WIDTH")


def engine_errcode_name(code: int) -> str:
    """Name of an engine ERRCODE value (``"NO_RESULT"``), or ``"UNKNOWN(n)"``:
    :func:`host.driver.errcode_name`, which knows the engine's codes."""
    return errcode_name(code)


class EngineError(MacroError):
    """The engine set STATUS.error during a driver operation (members as
    :class:`host.driver.MacroError`, with the engine's code names)."""

    def __init__(self, operation: str, code: int, addr: int, where: str):
        super().__init__(operation, code, addr, where)
        self.code_name = engine_errcode_name(code)
        self.args = (f"{operation}: the engine reports {self.code_name} (ERRCODE {code}) "
                     f"at word address {addr:#x} ({where})",)


class EngineRegisterMap(RegisterMap):
    """Word addresses of one engine: :class:`host.driver.RegisterMap` over the engine's
    regions (``EngineParams.regions()``) and CSRs.

    Parameters
    ----------
    params : EngineParams
    """

    def __init__(self, params: EngineParams):
        if not isinstance(params, EngineParams):
            raise TypeError(f"params must be an EngineParams, not {params!r}")
        super().__init__(params.macro)
        self.params = params
        self.region_shift = params.region_shift
        self.regions = {r["name"]: r for r in params.regions()}
        self._by_number = {r["region"]: r for r in self.regions.values()}
        self.field_sizes = params.field_sizes()

    def csr(self, name: str) -> int:
        """Word address of the macro's or the engine's CSR called ``name``."""
        addr = self._csr_addrs.get(name)
        if addr is None:
            reg = getattr(EngineCSR, name) if name in vars(EngineCSR) else getattr(CSR, name)
            addr = self._csr_addrs[name] = int(self.addr("CSR", reg=reg))
        return addr

    def describe(self, addr: int) -> str:
        reg = addr & ((1 << self.region_shift) - 1)
        if addr >> self.region_shift == Region.CSR and reg in _ENGINE_CSR_NAMES:
            return f"CSR {_ENGINE_CSR_NAMES[reg]}"
        return super().describe(addr)


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """(..., n) 0/1 -> (..., ceil(n / 32)) words, bit i of word j = element 32j+i."""
    n = bits.shape[-1]
    words = -(-n // BUS_DATA_BITS)
    padded = np.zeros(bits.shape[:-1] + (words * BUS_DATA_BITS,), np.int64)
    padded[..., :n] = bits
    shifts = np.arange(BUS_DATA_BITS, dtype=np.int64)
    return (padded.reshape(bits.shape[:-1] + (words, BUS_DATA_BITS)) << shifts).sum(axis=-1)


def _signed(words, bits: int) -> np.ndarray:
    words = np.asarray(words, np.int64) & ((1 << bits) - 1)
    return np.where(words >> (bits - 1), words - (1 << bits), words)


class EngineDriver:
    """Host driver of one network engine, over any transport.

    Build one with ``await EngineDriver.connect(transport)`` (reads the identity and the
    parameter and capacity CSRs), or ``EngineDriver(transport, params)``. Arguments are
    checked before the first bus access of a call; after every writing call the driver
    reads STATUS and raises :class:`EngineError` when the engine flagged a fault.

    Members
    -------
    transport : Transport
    params : EngineParams
    map : EngineRegisterMap
    macro : host.driver.MacroDriver
        The macro inside, through the engine's map: ``write_nonidealities``,
        ``calibrate``, ``read_calflags`` ... (not ``write_weights``/``write_thresholds``:
        WEIGHT, THRESH and FLIP are bank memories here).
    program : NetworkProgram or None
        The program :meth:`load_network` wrote.
    poll_slack : int
        STATUS polls beyond a CLASSIFY's cycle count before ``TimeoutError``.
    """

    def __init__(self, transport, params: EngineParams):
        if not isinstance(params, EngineParams):
            raise TypeError(f"params must be an EngineParams, not {params!r}")
        self.transport = transport
        self.params = params
        self.map = EngineRegisterMap(params)
        self.macro = MacroDriver(transport, params.macro)
        self.macro.map = self.map
        self.program: NetworkProgram | None = None
        self.poll_slack = 100

    @classmethod
    async def connect(cls, transport, name: str = "cim_macro") -> "EngineDriver":
        """Identify the engine behind ``transport`` and read its parameters. Raises
        :class:`host.driver.ProtocolError` (one line) for another ID, another major
        version, or CSRs that describe no valid engine. Only reads."""
        ident = int(await transport.read(CSR.ID))
        if ident != ENGINE_ID_MAGIC:
            what = "a bare macro (use host.driver.MacroDriver)" if ident == ID_MAGIC else \
                f"ID reads 0x{ident:08X}"
            raise ProtocolError(f"no network engine at this transport: {what}, expected "
                                f"0x{ENGINE_ID_MAGIC:08X}")
        version = int(await transport.read(CSR.VERSION))
        if version >> 16 != ENGINE_VERSION[0]:
            raise ProtocolError(f"the engine implements contract version {version >> 16}."
                                f"{version & 0xFFFF}, this driver {ENGINE_VERSION[0]}."
                                f"{ENGINE_VERSION[1]}: major versions differ")
        names = list(_PARAM_CSRS.values()) + ["FEATURES", "REGION_SHIFT"]
        regs = [getattr(CSR, n) for n in names] + \
            [getattr(EngineCSR, n) for n in _CAPACITY_CSRS.values()]
        values = dict(zip(names + list(_CAPACITY_CSRS.values()),
                          await read_burst(transport, regs)))
        features = values["FEATURES"]
        try:
            if features >> (COUNTERS_FEATURE_BIT + 1):
                raise ValueError(f"FEATURES {features:#x} has undefined bits")
            macro = MacroParams(
                **{k: values[v] for k, v in _PARAM_CSRS.items()}, name=name,
                nonideal={n for i, n in enumerate(NONIDEALITIES) if features >> i & 1},
                counters=bool(features >> COUNTERS_FEATURE_BIT & 1))
            params = EngineParams(macro, **{k: values[v] for k, v in _CAPACITY_CSRS.items()})
            if values["REGION_SHIFT"] != params.region_shift:
                raise ValueError(f"REGION_SHIFT reads {values['REGION_SHIFT']}, the "
                                 f"parameters give {params.region_shift}")
        except (TypeError, ValueError) as e:
            raise ProtocolError(f"the engine's CSRs describe no valid engine "
                                f"({', '.join(f'{n}={v}' for n, v in values.items())}): "
                                f"{e}") from None
        return cls(transport, params)

    # --- status ------------------------------------------------------------------------

    async def _check(self, operation: str) -> None:
        if await self.macro.read_csr("STATUS") >> Status.ERROR & 1:
            code = await self.macro.read_csr("ERRCODE")
            addr = await self.macro.read_csr("ERRADDR")
            await self.macro.write_csr("STATUS", 1 << Status.ERROR)
            raise EngineError(operation, code, addr, self.map.describe(addr))

    async def _write(self, addrs, words, operation: str) -> None:
        addrs = np.asarray(addrs, np.int64).ravel().tolist()
        words = (np.asarray(words, np.int64).ravel() & 0xFFFF_FFFF).tolist()
        await write_burst(self.transport, zip(addrs, words))
        await self._check(operation)

    async def _read(self, addrs) -> np.ndarray:
        addrs = np.asarray(addrs, np.int64)
        return np.array(await read_burst(self.transport, addrs.ravel().tolist()),
                        np.int64).reshape(addrs.shape)

    # --- the chip ----------------------------------------------------------------------

    async def write_chip(self, **registers) -> None:
        """A chip instance's non-ideality registers (``MacroDriver.write_nonidealities``)."""
        await self.macro.write_nonidealities(**registers)

    async def calibrate(self) -> np.ndarray:
        """CALIBRATE the macro's physical columns (one calibration serves every bank);
        returns CALFLAG (C,)."""
        await self.macro.calibrate()
        return await self.macro.read_calflags()

    async def measure_residual(self) -> np.ndarray:
        """The trim's residual ``r`` (C,): ``host.network.measure_residual`` through the
        engine's map (a RUN through CMD with every input 0)."""
        return await measure_residual(self.macro)

    # --- the network -------------------------------------------------------------------

    async def load_network(self, model, residual=None) -> NetworkProgram:
        """Write a network's banks and layer program.

        Parameters
        ----------
        model : NetworkProgram, FoldedNet, or a path ``models.export.load_folded`` reads
        residual : array_like (C,), optional
            The trim (:meth:`measure_residual` after :meth:`calibrate`), folded into the
            thresholds and the score correction (``models.engine.build_program``).

        Raises ``ValueError`` (one line, before any bus access) when the model does not
        fit the engine.
        """
        ep = self.params
        if isinstance(model, NetworkProgram):
            if residual is not None:
                raise ValueError("residual is folded when a program is built; a built "
                                 "program takes none")
            program = model
            if program.macro != ep.macro:
                raise ValueError("the program is built for another macro than the engine's")
        else:
            net = model if isinstance(model, FoldedNet) else load_folded(os.fspath(model))
            ep.check_fits(net)
            program = build_program(net, ep.macro, residual)
        widest = max(max(l.inputs, l.outputs) for l in program.layers)
        for name, need in (("weight_banks", program.banks), ("layers", len(program.layers)),
                           ("max_width", widest)):
            if need > getattr(ep, name):
                raise ValueError(f"the program needs {name} = {need}, the engine has "
                                 f"{getattr(ep, name)}")
        p, m = ep.macro, self.map
        k = np.arange(program.banks, dtype=np.int64)
        c = np.arange(p.cols, dtype=np.int64)
        g, s = c // p.cols_per_cycle, c % p.cols_per_cycle
        chunk = np.arange(p.chunks, dtype=np.int64)
        weight_addrs = m.addr("WEIGHT", bank=k[:, None, None], group=g[None, :, None],
                              slot=s[None, :, None], chunk=chunk[None, None, :])
        # (banks, R, C) -> (banks, C, chunks): the rows of a column packed per chunk.
        weight_words = _pack_rows(np.swapaxes(program.weights, 1, 2))
        thresh_addrs = m.addr("THRESH", bank=k[:, None], group=g[None, :], slot=s[None, :])
        flip_addrs = m.addr("FLIP", bank=k[:, None],
                            word=np.arange(p.packed_words, dtype=np.int64)[None, :])
        layers = np.arange(len(program.layers), dtype=np.int64)
        prog_addrs = m.addr("PROGRAM", layer=layers[:, None],
                            part=np.arange(PROGRAM_WORDS, dtype=np.int64)[None, :])
        addrs = [weight_addrs, thresh_addrs, flip_addrs, prog_addrs]
        words = [weight_words, program.thresh, _pack_rows(program.flip),
                 program_words(program)]
        await self._write(np.concatenate([a.ravel() for a in addrs]),
                          np.concatenate([w.ravel() for w in words]), "load_network")
        self.program = program
        return program

    def _check_images(self, images) -> np.ndarray:
        if self.program is None:
            raise ValueError("no network is loaded (EngineDriver.load_network)")
        return check_images(images, self.program.image_inputs, self.program.image_planes)

    async def write_images(self, images) -> None:
        """Write images (N <= image_slots, inputs) into slots 0..N-1: planes 0..p-1 of
        the first layer, the words that hold its inputs."""
        x = self._check_images(images)
        if len(x) > self.params.image_slots:
            raise ValueError(f"{len(x)} images do not fit the image buffer of "
                             f"{self.params.image_slots} slots")
        planes = self.program.image_planes
        bits = (x[:, None, :] >> np.arange(planes)[None, :, None]) & 1     # (N, p, n_in)
        words = _pack_rows(bits)                                           # (N, p, chunks)
        slot = np.arange(len(x), dtype=np.int64)[:, None, None]
        plane = np.arange(planes, dtype=np.int64)[None, :, None]
        chunk = np.arange(words.shape[2], dtype=np.int64)[None, None, :]
        await self._write(self.map.addr("IMAGE", image_slot=slot, plane=plane, image_chunk=chunk),
                          words, "write_images")

    async def run(self, count: int) -> np.ndarray:
        """CLASSIFY image slots 0..count-1, wait for the engine, read their classes."""
        await self.start(count)
        await self.wait(count)
        return await self.results(count)

    async def start(self, count: int) -> None:
        """Write CLASSIFY ``count``: the engine classifies slots 0..count-1 on its own."""
        await self.macro.write_csr("CLASSIFY", count)

    async def wait(self, count: int) -> None:
        """Poll STATUS until the CLASSIFY of ``count`` images has ended (at most the
        contract's cycles plus ``poll_slack`` polls), then check for a fault."""
        limit = count * self.program.image_cycles() + self.poll_slack
        for _ in range(limit):
            word = await self.macro.read_csr("STATUS")
            if not word >> Status.BUSY & 1:
                break
        else:
            raise TimeoutError(f"CLASSIFY {count} still BUSY after {limit} STATUS polls; "
                               f"the contract says {self.program.image_cycles()} cycles "
                               f"per image")
        await self._check(f"CLASSIFY {count}")

    async def results(self, count: int) -> np.ndarray:
        """The classes (count,) in RESULT slots 0..count-1."""
        return await self._read(self.map.addr("RESULT", image_slot=np.arange(count, dtype=np.int64)))

    async def classify(self, images) -> np.ndarray:
        """Classes (N,) of any number of images, streamed through the image buffer
        ``image_slots`` at a time; :meth:`cycles` then covers the last batch."""
        x = self._check_images(images)
        slots = self.params.image_slots
        classes = [np.zeros(0, np.int64)]
        for start in range(0, len(x), slots):
            batch = x[start:start + slots]
            await self.write_images(batch)
            classes.append(await self.run(len(batch)))
        return np.concatenate(classes)

    async def stop(self) -> None:
        """STOP the running CLASSIFY after the image in progress."""
        await self.macro.write_csr("STATUS", 1 << EngineStatus.STOP)

    async def _last(self, region: str, bits: int) -> np.ndarray:
        if self.program is None:
            raise ValueError("no network is loaded (EngineDriver.load_network)")
        words = await self._read(self.map.addr(
            region, neuron=np.arange(self.program.classes, dtype=np.int64)))
        await self._check(f"read {region}")
        return _signed(words, bits)

    async def last_scores(self) -> np.ndarray:
        """The last classified image's scores ACC + CORR (classes,) int64."""
        return await self._last("LAST_SCORE", min(self.params.macro.acc_bits + 1,
                                                  BUS_DATA_BITS))

    async def last_acc(self) -> np.ndarray:
        """The last classified image's last-layer ACC (classes,) int64."""
        return await self._last("LAST_ACC", self.params.macro.acc_bits)

    async def cycles(self) -> int:
        """ENGINE_CYCLES: the cycles the last CLASSIFY kept the engine busy."""
        return await self.macro.read_csr("ENGINE_CYCLES")

    async def results_count(self) -> int:
        """RESULTS: images the current or last CLASSIFY has classified."""
        return await self.macro.read_csr("RESULTS")

    def __repr__(self):
        ep = self.params
        return (f"EngineDriver({ep.macro.rows}x{ep.macro.cols}, banks={ep.weight_banks}, "
                f"layers={ep.layers}, slots={ep.image_slots}, via {self.transport!r})")
