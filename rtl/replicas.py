"""Registers copied once per block of lanes, so that no net fans out to every lane.

A signal that every lane uses (the input plane, the clamp limits, a write enable) is one
net with a sink in each lane. On an FPGA the lanes of a wide macro spread over much of
the die, and such a net was the longest wire of most critical paths of the fully
parallel ECP5 builds (``docs/FPGA.md``). Where the signal comes from a register anyway,
that register is built once per block of :data:`LANE_BLOCK` lanes instead: each copy
drives its own block, and the placer can put it next to them. The copies hold the same
value in every cycle, so nothing but the netlist changes.

Synthesis would merge the copies back into one flip-flop (Yosys ``opt_merge`` merges
cells with equal inputs), so each copy's signal carries the attribute
:data:`REPLICA_ATTR`; ``fpga/build.py`` marks the flip-flops driving such signals
``keep`` before synthesis (:data:`KEEP_REPLICAS_SCRIPT`).
"""

from amaranth.hdl import Cat, Signal, Value

__all__ = ["LANE_BLOCK", "TREE_FANOUT", "REPLICA_ATTR", "KEEP_REPLICAS_SCRIPT", "lane_blocks",
           "block_copies", "replicated"]

#: Lanes served by one copy.
LANE_BLOCK = 8
#: Blocks served by one first-level copy of a two-level tree (``tree=True``).
TREE_FANOUT = 4
#: Attribute of every copy's signal in the emitted RTLIL.
REPLICA_ATTR = "cim_replica"
#: Yosys commands (run right after reading the design) that keep the copies apart.
KEEP_REPLICAS_SCRIPT = ("proc\n"
                        f"setattr -set keep 1 a:{REPLICA_ATTR} %ci1:+$dff[Q] a:{REPLICA_ATTR} %d")


def lane_blocks(lanes):
    """Number of copies for ``lanes`` lanes."""
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return -(-lanes // LANE_BLOCK)


def block_copies(m, value, lanes, name, *, suffix="", enable=None, init=0, domain="sync",
                 tree=False, reset_less=False):
    """``value`` registered once per block of lanes: the copies, block-major.

    As :func:`replicated`, but returns ``lane_blocks(lanes) * w`` bits, copy ``k`` at bits
    ``[k * w, (k + 1) * w)``, for a consumer that takes one copy per block.
    """
    value = Value.cast(value)
    blocks = lane_blocks(lanes)

    def register(source, name, enable):
        reg = Signal(len(value), name=name, attrs={REPLICA_ATTR: 1} if blocks > 1 else {},
                     init=init, reset_less=reset_less)
        if enable is None:
            m.d[domain] += reg.eq(source)
        else:
            with m.If(enable):
                m.d[domain] += reg.eq(source)
        return reg

    sources = [value] * blocks
    if tree:
        # First level: one copy per TREE_FANOUT blocks, each block copies its group's.
        # The enable applies at the first level only: the second copies every cycle.
        firsts = [register(value, f"{name}_t{j}{suffix}", enable)
                  for j in range(-(-blocks // TREE_FANOUT))]
        sources = [firsts[k // TREE_FANOUT] for k in range(blocks)]
        enable = None
    copies = [register(sources[k], f"{name}{suffix}" if blocks == 1 else f"{name}_b{k}{suffix}",
                       enable)
              for k in range(blocks)]
    # A signal rather than the Cat: consumers slice it per block, and a slice of an
    # expression costs the simulator the whole expression at each use.
    result = Signal(blocks * len(value), name=f"{name}{suffix}_blocks")
    m.d.comb += result.eq(Cat(*copies))
    return result


def replicated(m, value, lanes, name, *, suffix="", enable=None, init=0, domain="sync",
               tree=False, reset_less=False):
    """``value`` registered once per block of lanes, expanded lane-major.

    Parameters
    ----------
    m : Module
    value : value-like
        What each copy registers (``w`` bits).
    lanes : int
        Lanes that use it.
    name, suffix : str
        The copies are named ``{name}_b{k}{suffix}`` (``{name}{suffix}`` for a single
        block).
    enable : value-like or None
        The copies load ``value`` only in cycles where it is high (default: every cycle).
    init : int
        Reset value of each copy.
    domain : str
        Clock domain of the copies.
    tree : bool
        Two levels of copies: one per :data:`TREE_FANOUT` blocks (loaded with
        ``enable``), and one per block copying its group's every cycle. The copies then
        follow ``value`` two cycles later (also for a single block), and no wire runs from
        the source to every block: a net across the whole die of the fully parallel
        ECP5 build took 10-11 ns on its own.
    reset_less : bool
        The copies have no reset (they take ``init`` at power-on and the value a
        cycle later): for copies of a value that is itself reset, this keeps them off
        the reset net, whose fanout otherwise reaches every lane.

    Returns
    -------
    Value
        ``lanes * w`` bits: lane ``i`` (bits ``[i * w, (i + 1) * w)``) is the copy of
        block ``i // LANE_BLOCK``.
    """
    width = len(Value.cast(value))
    copies = block_copies(m, value, lanes, name, suffix=suffix, enable=enable, init=init,
                          domain=domain, tree=tree, reset_less=reset_less)
    result = Signal(lanes * width, name=f"{name}{suffix}_lanes")
    m.d.comb += result.eq(Cat(*(copies[(i // LANE_BLOCK) * width:(i // LANE_BLOCK + 1) * width]
                                for i in range(lanes))))
    return result
