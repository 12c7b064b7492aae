"""Driving a component's inputs in simulation: every input in one ``ctx.set`` a cycle,
and a component simulated with a testbench object of its test (:func:`run_bench`).

Each ``ctx.set`` of a testbench settles the whole design, which dominated the run time of
the component tests when each input was set on its own. :class:`Inputs` packs the values
of all of a component's inputs into one ``Cat`` and sets it once a cycle (not at all
when nothing changed). Access records (``rtl/access.py``) are packed by
:func:`pack_record`.
"""

from amaranth.hdl import Cat, Value
from amaranth.sim import Simulator

from rtl.access import access_layout

__all__ = ["Inputs", "pack_record", "random_bits", "random_record", "run_bench"]


def run_bench(component, bench, p, rng, scenario, **options):
    """Simulate ``component(p)`` with a clock, running
    ``scenario(bench(ctx, dut, p, rng, **options))`` as its testbench."""
    dut = component(p)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def testbench(ctx):
        await scenario(bench(ctx, dut, p, rng, **options))

    sim.add_testbench(testbench)
    sim.run()


def random_bits(rng, width):
    """A uniform random ``width``-bit integer (any width; numpy's stop at 64)."""
    return int.from_bytes(rng.bytes(-(-width // 8) or 1), "little") & ((1 << width) - 1)


def pack_record(p, record):
    """The integer of an access record given as a dict of its fields."""
    return sum((int(record[name]) & ((1 << field.width) - 1)) << field.offset
               for name, field in access_layout(p))


def random_record(p, rng):
    """A record with ``valid`` low and random fields: what a front end may show in a
    cycle in which no access acts."""
    return dict(valid=0, we=random_bits(rng, 1), data=random_bits(rng, 32),
                offset=random_bits(rng, p.region_shift), regions=random_bits(rng, 16),
                regs=random_bits(rng, 32))


class Inputs:
    """The inputs ``ports`` (a dict: name -> port, records as their view) of a component,
    set together.

    ``values`` holds the value of each input (an int; a record port also takes a dict of
    its fields); ``apply(ctx)`` sets them all at once.
    """

    def __init__(self, p, ports):
        self.p = p
        self.names = list(ports)
        self.ports = [Value.cast(port) for port in ports.values()]
        self._all = Cat(*self.ports)
        self.values = dict.fromkeys(self.names, 0)
        self._driven = None

    def apply(self, ctx):
        packed, pos = 0, 0
        for name, port in zip(self.names, self.ports):
            value = self.values[name]
            if isinstance(value, dict):
                value = pack_record(self.p, value)
            packed |= (int(value) & ((1 << len(port)) - 1)) << pos
            pos += len(port)
        if packed != self._driven:
            ctx.set(self._all, packed)
            self._driven = packed
