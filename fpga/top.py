"""What a board carries besides clock and pins: UART, UARTBone bridge, bus, chip image, macro.

:class:`BoardCore` is the part of every board top that does not depend on the board
(the same design is simulated in cocotb by ``tests/test_fpga_host.py``):

```
 rx --> UARTReceiver --> UARTBone --+--> BusDecoder --+--> [2 x WishboneSlice] --> CimMacro
 tx <-- UARTTransmitter <--/           (word addresses |     (L = 4 macros only)
                                        < 2**addr_bits; |
                                        others read 0)  |
          ChipImageWriter ------------------------------+   (after reset, writes the
                                                            baked chip instance, then
                                                            hands the bus to the bridge)
```

A *chip image* is a list of bus writes that the core replays after every reset, before
the host gets the bus: the injected non-idealities of one sampled chip instance
(:func:`chip_image`), so that the board behaves like one imperfect chip and calibration
has something to cancel. It is an image of the reset state rather than the macro's own
reset values because the macro keeps those in its column memories' initial contents,
which the contract fixes (docs/ARCHITECTURE.md section 6, "Reset values").
"""

from __future__ import annotations

import asyncio

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from models.params import MacroParams
from rtl import wishbone
from rtl.cim_macro import CimMacro

from .bus_slice import WishboneSlice
from .uart import UARTReceiver, UARTTransmitter
from .uartbone import UARTBone

__all__ = ["StatusLeds", "BusDecoder", "ChipImageWriter", "BoardCore", "chip_image",
           "board_bus_latency", "board_bus_slices"]

#: What the status LEDs show, in the order boards assign them to LEDs.
StatusLeds = data.StructLayout({
    "error": 1,      # STATUS.error: a faulty access since the error was last cleared
    "busy": 1,       # a command is running
    "done": 1,       # a command has finished since DONE was last cleared
    "link": 1,       # UART traffic (stretched so that it is visible)
    "ready": 1,      # the chip image is written; the bridge owns the bus
    "timeout": 1,    # the bridge dropped an unfinished frame (stretched)
})


class BusDecoder(wiring.Component):
    """A 32-bit word-address Wishbone master onto a macro with ``addr_bits`` address bits.

    Addresses below ``2**addr_bits`` go to the macro; any other access is acknowledged
    one cycle later by the decoder itself, reads give 0 and writes are dropped (there is
    nothing there, and a master must never hang on an address).

    Parameters
    ----------
    addr_bits : int

    Members
    -------
    bus : In(wishbone.Signature(32))
        From the master.
    macro : Out(wishbone.Signature(addr_bits))
        To the macro.
    """

    def __init__(self, addr_bits):
        if isinstance(addr_bits, bool) or not isinstance(addr_bits, int):
            raise TypeError(f"addr_bits must be an integer, not {addr_bits!r}")
        if not 1 <= addr_bits <= 32:
            raise ValueError(f"addr_bits must be in [1, 32], not {addr_bits}")
        self._addr_bits = addr_bits
        super().__init__({"bus": In(wishbone.Signature(32)),
                          "macro": Out(wishbone.Signature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        bus, macro, n = self.bus, self.macro, self._addr_bits
        inside = Signal()
        m.d.comb += inside.eq(~bus.adr[n:].any() if n < 32 else 1)
        m.d.comb += [macro.adr.eq(bus.adr[:n]), macro.dat_w.eq(bus.dat_w),
                     macro.sel.eq(bus.sel), macro.we.eq(bus.we),
                     macro.cyc.eq(bus.cyc & inside), macro.stb.eq(bus.stb & inside)]
        outside_ack = Signal()
        m.d.sync += outside_ack.eq(bus.cyc & bus.stb & ~inside & ~outside_ack)
        m.d.comb += [bus.ack.eq(macro.ack | outside_ack),
                     bus.dat_r.eq(macro.dat_r & (~outside_ack).replicate(32))]
        return m


class ChipImageWriter(wiring.Component):
    """After reset, writes ``image`` (word address, data) pairs to the bus, then stops.

    While it writes it owns the bus (:class:`BoardCore` holds the bridge off); ``done``
    rises when the last write is acknowledged and stays high until the next reset. The
    pairs live in a ROM that synthesis maps to block RAM when it is large.

    Parameters
    ----------
    image : list of (int, int)
        Word addresses (below ``2**addr_bits``) and 32-bit data, written in order.
    addr_bits : int

    Members
    -------
    bus : Out(wishbone.Signature(addr_bits))
    done : Out(1)
    """

    def __init__(self, image, addr_bits):
        image = [(int(a), int(d)) for a, d in image]
        for a, d in image:
            if not 0 <= a < 1 << addr_bits or not 0 <= d < 1 << 32:
                raise ValueError(f"image entry ({a:#x}, {d:#x}) does not fit {addr_bits} "
                                 f"address bits and 32 data bits")
        self._image = image
        self._addr_bits = addr_bits
        super().__init__({"bus": Out(wishbone.Signature(addr_bits)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n = len(self._image)
        if n == 0:
            m.d.comb += self.done.eq(1)
            return m
        width = self._addr_bits + 32
        m.submodules.rom = rom = Memory(shape=width, depth=n,
                                        init=[a << 32 | d for a, d in self._image])
        read = rom.read_port()
        index = Signal(range(n + 1))
        loaded = Signal()           # the ROM word of ``index`` is on the read port
        done = Signal()
        m.d.comb += [read.addr.eq(index), self.done.eq(done),
                     self.bus.adr.eq(read.data[32:]), self.bus.dat_w.eq(read.data[:32]),
                     self.bus.sel.eq(Const(0b1111, 4)), self.bus.we.eq(1)]
        with m.If(~done):
            with m.If(~loaded):
                m.d.sync += loaded.eq(1)
            with m.Else():
                m.d.comb += [self.bus.cyc.eq(1), self.bus.stb.eq(1)]
                with m.If(self.bus.ack):
                    m.d.sync += [index.eq(index + 1), loaded.eq(0)]
                    with m.If(index == n - 1):
                        m.d.sync += done.eq(1)
        return m


def board_bus_slices(p) -> int:
    """Register slices between the board's masters and its slave: two for the designs
    built for the ECP5 at speed (an L = 4 macro, an L = 3 network engine), whose bus
    registers spread over the die, else none. ``p`` is a MacroParams or an EngineParams."""
    at_speed = 4 if isinstance(p, MacroParams) else 3
    return 2 if _macro_of(p).pipeline >= at_speed else 0


def board_bus_latency(p) -> int:
    """Cycles from an access on the board's bus to its ack: the slave's ``bus_latency``,
    plus two for each register slice in front of it (:func:`board_bus_slices`).
    ``p`` is a MacroParams or an EngineParams."""
    return p.bus_latency + 2 * board_bus_slices(p)


def _macro_of(p) -> MacroParams:
    return p if isinstance(p, MacroParams) else p.macro


def _bus_slave(p):
    """The board's bus slave: the macro, or the network engine for an EngineParams. Every
    master of the board (the UART bridge through the decoder, the chip image writer, the
    register slices) holds its request until the ack and never abandons an access, so
    the engine acts on the request as presented (``held_until_ack``) and keeps its weight
    banks in block RAM (``weights_in_block_ram``)."""
    if isinstance(p, MacroParams):
        return CimMacro(p)
    from rtl.engine import CimEngine
    return CimEngine(p, held_until_ack=True, weights_in_block_ram=True)


class BoardCore(wiring.Component):
    """UART, UARTBone bridge, chip image and macro: a board top without clock and pins.

    Parameters
    ----------
    p : MacroParams or EngineParams
        The macro, or a network engine around one (docs/ENGINE.md; the same bus, the
        engine's wider address).
    divisor : int
        Clock cycles per UART bit (:func:`fpga.uart.uart_divisor`).
    timeout_cycles : int
        The bridge's silence timeout in clock cycles.
    image : list of (int, int)
        Bus writes replayed after reset (:func:`chip_image`); empty for an ideal chip.
    stretch_cycles : int
        How long a UART byte or a bridge timeout lights its LED.

    Members
    -------
    rx : In(1)
        UART line from the host (idles at 1).
    tx : Out(1)
        UART line to the host.
    leds : Out(StatusLeds)
    """

    def __init__(self, p, *, divisor, timeout_cycles, image=(), stretch_cycles=1 << 20):
        from models.engine import EngineParams
        if not isinstance(p, (MacroParams, EngineParams)):
            raise TypeError(f"p must be a MacroParams or an EngineParams, not {p!r}")
        if isinstance(stretch_cycles, bool) or not isinstance(stretch_cycles, int) \
                or stretch_cycles < 1:
            raise ValueError(f"stretch_cycles must be a positive integer, not {stretch_cycles!r}")
        self._p = p
        self._divisor = divisor
        self._timeout_cycles = timeout_cycles
        self._image = list(image)
        self._stretch = stretch_cycles
        # Build the parts here so that bad divisors or images fail at construction.
        self._parts = (UARTReceiver(divisor), UARTTransmitter(divisor), UARTBone(timeout_cycles),
                       ChipImageWriter(self._image, p.addr_bits))
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(StatusLeds)})

    @property
    def params(self):
        return self._p

    def elaborate(self, platform):
        m = Module()
        p = self._p
        rx, tx, bridge, writer = self._parts
        m.submodules.uart_rx = rx
        m.submodules.uart_tx = tx
        m.submodules.bridge = bridge
        m.submodules.image = writer
        m.submodules.decoder = decoder = BusDecoder(p.addr_bits)
        m.submodules.macro = macro = _bus_slave(p)

        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        connect(m, rx.stream, bridge.sink)
        connect(m, bridge.source, tx.stream)
        connect(m, bridge.bus, decoder.bus)

        # The macro's bus: the image writer until it is done, then the decoder. The
        # FPGA-clock designs (board_bus_slices) sit behind two register slices in a row,
        # one placed with the masters and one with the slave, whose bus registers are
        # spread over the die: the wire between them runs from register to register.
        if board_bus_slices(p):
            m.submodules.bus_slice_near = near = WishboneSlice(p.addr_bits)
            m.submodules.bus_slice_far = far = WishboneSlice(p.addr_bits)
            connect(m, near.down, far.up)
            connect(m, far.down, macro.wb)
            slave = near.up
        else:
            slave = macro.wb

        def driven_by(master):
            return [slave.adr.eq(master.adr), slave.dat_w.eq(master.dat_w),
                    slave.sel.eq(master.sel), slave.we.eq(master.we),
                    slave.cyc.eq(master.cyc), slave.stb.eq(master.stb),
                    master.ack.eq(slave.ack), master.dat_r.eq(slave.dat_r)]

        with m.If(writer.done):
            m.d.comb += driven_by(decoder.macro)
        with m.Else():
            m.d.comb += driven_by(writer.bus)

        def stretched(pulse, name):
            # The pulse (through two registers) and the lit flag go through registers of
            # their own: the LED pins, the UART and the bridge can be far apart on a
            # large die.
            pulse_d = Signal(name=f"{name}_pulse_d")
            pulse_q = Signal(name=f"{name}_pulse")
            lit = Signal(name=f"{name}_lit")
            m.d.sync += [pulse_d.eq(pulse), pulse_q.eq(pulse_d)]
            count = Signal(range(self._stretch + 1), name=name)
            with m.If(pulse_q):
                m.d.sync += count.eq(self._stretch)
            with m.Elif(count != 0):
                m.d.sync += count.eq(count - 1)
            m.d.sync += lit.eq(count != 0)
            return lit

        traffic = (rx.stream.valid & rx.stream.ready) | (tx.stream.valid & tx.stream.ready)
        m.d.comb += [
            self.leds.error.eq(macro.error),
            self.leds.busy.eq(macro.busy),
            self.leds.done.eq(macro.done),
            self.leds.link.eq(stretched(traffic, "link_stretch")),
            self.leds.ready.eq(writer.done),
            self.leds.timeout.eq(stretched(bridge.timeout, "timeout_stretch")),
        ]
        return m


def chip_image(p, seed: int, config=None) -> tuple[list[tuple[int, int]], dict]:
    """Bus writes that give a macro (``p`` a MacroParams) or the macro inside a network
    engine (``p`` an EngineParams, the engine's map) the non-idealities of one sampled
    SRAM chip instance.

    The instance is ``models.chip.sample_chip(config, seed, R, C, K)`` (default config
    ``ChipConfig.typical("sram")``), mapped by ``models.chip.chip_to_rtl``; effects the
    macro does not build are dropped (listed in the summary). The writes are exactly the
    ones :class:`host.driver.MacroDriver` makes for them (``write_offsets``,
    ``write_gains``, ``write_table``, ``write_stuck``, ``set_readout``), recorded on the
    golden model, so the one encoding of the register map is the driver's.

    Returns
    -------
    image : list of (addr, data)
    summary : dict
        ``seed``, ``config`` (the ChipConfig fields), ``baked`` and ``dropped`` effect
        names, ``writes``.
    """
    import dataclasses

    from models.chip import ChipConfig, chip_to_rtl, sample_chip
    from models.macro import MacroModel
    from host.driver import MacroDriver
    from host.transport import CountingTransport, ModelTransport

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"chip seed must be a non-negative integer, not {seed!r}")
    config = ChipConfig.typical("sram") if config is None else config
    if isinstance(p, MacroParams):
        recorder = CountingTransport(ModelTransport(MacroModel(p)), log=True)
        driver = MacroDriver(recorder, p)
    else:
        from host.engine import EngineDriver
        from models.engine_bus import EngineBusModel

        recorder = CountingTransport(ModelTransport(EngineBusModel(p)), log=True)
        driver = EngineDriver(recorder, p).macro
        p = p.macro
    chip = sample_chip(config, seed, p.rows, p.cols, p.comp_rows)
    full = chip_to_rtl(chip, p, strict=False)
    driver.check_errors = False
    baked = []

    async def record():
        if full["offset"] is not None:
            await driver.write_offsets(full["offset"])
            baked.append("offset")
        if full["gain"] is not None:
            await driver.write_gains(full["gain"])
            baked.append("gain")
        if full["table"] is not None:
            await driver.write_table(full["table"])
            baked.append("table")
        if full["stuck_mask"] is not None:
            await driver.write_stuck(full["stuck_mask"], full["stuck_value"])
            baked.append("stuck")
        if full["sat"] is not None and (full["sat"] != p.readout_max or full["qshift"]):
            await driver.set_readout(sat=full["sat"], qshift=full["qshift"])
            baked.append("readout")

    asyncio.run(record())
    image = [(a[1], a[2]) for a in recorder.accesses if a[0] == "w"]
    possible = {"offset": config.offset_sigma or config.offset_mean,
                "gain": config.gain_sigma or config.cell_sigma,
                "table": config.bl_vmax != float("inf"),
                "stuck": config.stuck_prob,
                "readout": config.sat is not None or config.qshift}
    dropped = sorted(k for k, v in possible.items() if v and k not in baked)
    summary = dict(seed=seed, config=dataclasses.asdict(config), baked=baked, dropped=dropped,
                   writes=len(image))
    return image, summary
