"""The timing decisions of a macro, named once and derived from its readout pipeline L.

``pipeline`` (L = 0..4) is the only timing knob a user sets. L = 0 is the plain design
(ack a cycle after each access, combinational readout); L = 1..3 register the readout
path and split the bus's read and write paths by a register, for FPGA clocks; L = 4 is
the fully parallel ECP5 build at 100 MHz, which also registers the bus decode and copies
every lane-wide control through trees of registers. Every component of the macro asks
:class:`PipelineTiming` by name instead of testing L.
"""

import dataclasses

__all__ = ["PipelineTiming"]


@dataclasses.dataclass(frozen=True)
class PipelineTiming:
    """How a macro with readout pipeline ``stages`` times its bus and its lanes.

    Build it with :meth:`of`.

    Members
    -------
    stages : int
        L: register stages in the readout path (``docs/ARCHITECTURE.md`` section 1).
    bus_latency : int
        Cycles from an access to its ack: 1, 2 (L = 1..3) or 5 (L = 4).
    registered_checks : bool
        The outcome of each check of section 6 is registered in the access cycle and the
        fault recorded in the error registers a cycle later.
    acts_after : int
        Cycles from the access to the cycle in which the macro acts on it (register and
        TABLE writes, commands): 0, or 2 from a decode registered twice. When it is 2,
        the first registered decode (the *early* access record, a cycle after the
        access) presents memory read addresses and loads registers and copy trees that
        must be ready when the access acts.
    memory_write_delay : int
        Cycles from the acting cycle to a bus write landing in a column memory: 0, 1
        (from registered enables and data) or 2 (through two levels of copies).
    early_write_enables : bool
        Register and memory write enables are decoded from the early record and
        registered, so that each is a flip-flop of its own when the access acts.
    copy_trees : bool
        Lane-wide controls reach their blocks of lanes through two levels of copies
        (``rtl/replicas.py``, ``tree=True``) loaded from the early record.
    reset_less_copies : bool
        Pipeline registers and copies that follow a reset value every cycle have no
        reset of their own (the reset net's fanout otherwise reaches every lane).
    lane_read_stages : int
        Register stages of the bus's lane read multiplexer: 1 (one multiplexer over the
        lanes, the word of cycle t+1), 2 (blocks of 8 lanes into registers, then the
        blocks) or 3 (a lane per block, a block per group of blocks, the group).
    registered_answer : bool
        The read answer is one OR of words gated by read flags, registered on its way
        out (instead of a multiplexer in front of ``dat_r``).
    """

    stages: int
    bus_latency: int
    registered_checks: bool
    acts_after: int
    memory_write_delay: int
    early_write_enables: bool
    copy_trees: bool
    reset_less_copies: bool
    lane_read_stages: int
    registered_answer: bool

    @classmethod
    def of(cls, pipeline):
        """The timing of a macro built with readout pipeline ``pipeline`` (0..4)."""
        if isinstance(pipeline, bool) or not isinstance(pipeline, int):
            raise TypeError(f"pipeline must be an integer, not {pipeline!r}")
        if not 0 <= pipeline <= 4:
            raise ValueError(f"pipeline must be in 0..4, not {pipeline}")
        deep = pipeline == 4
        return cls(
            stages=pipeline,
            bus_latency=5 if deep else 2 if pipeline else 1,
            registered_checks=deep,
            acts_after=2 if deep else 0,
            memory_write_delay=2 if deep else 1 if pipeline else 0,
            early_write_enables=deep,
            copy_trees=deep,
            reset_less_copies=deep,
            lane_read_stages=3 if deep else 2 if pipeline else 1,
            registered_answer=deep,
        )

    @property
    def pipelined(self) -> bool:
        """The readout path has registers (L > 0)."""
        return self.stages > 0
