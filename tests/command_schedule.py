"""The cycle schedule of one command (``docs/ARCHITECTURE.md`` section 5, and the
strobes of the sequencer's port row in section 7), for the tests of the sequencer and of
the lane datapath it drives.
"""

from models.params import Op
from rtl.sequencer import Phase
from verif.address_space import ACCUMULATE, NPLANES_SHIFT, command_cycles

__all__ = ["STROBES", "schedule"]

STROBES = ("calibrating", "tile_clear", "step", "accumulate", "store", "store_result",
           "comp_store", "margin_capture", "margin_capture_late")


def schedule(p, cmd, accepted):
    """What each cycle of a command accepted (acting) in cycle ``accepted`` must show.

    Returns
    -------
    dict
        ``phases``: cycle -> (Phase, group); ``planes``: plane cycle -> plane;
        ``high``: strobe name (and ``calibration_start``, ``calibrated``,
        ``calflag_groups``, ``calibration_read``: the last cycle of each search or
        verification read) -> the cycles in which it is high; ``busy``: the busy
        cycles; ``last``: the last busy cycle.
    """
    L, G = p.pipeline, p.groups
    op = cmd & 7
    phases, planes = {}, {}
    high = {name: set() for name in (*STROBES, "calibration_start", "calibrated",
                                     "calflag_groups", "calibration_read")}
    c = accepted + 1
    for g in range(G):
        if op == Op.RUN:
            n = (cmd >> NPLANES_SHIFT & 0xF) or p.input_bits
            phases[c] = (Phase.READ, g)
            high["tile_clear"].add(c + (1 if L else 0))
            for j in range(n):
                planes[c + 1 + j] = n - 1 - j             # most significant first
                phases[c + 1 + j] = (Phase.PLANES, g)
                high["step"].add(c + 1 + j + L)
                high["margin_capture"].add(c + 1 + j + 1)
                high["margin_capture_late"].add(c + 1 + j + 2)
            for j in range(L):
                phases[c + 1 + n + j] = (Phase.DRAIN, g)
            write = c + 1 + n + L
            phases[write] = (Phase.WRITE, g)
            high["store"].add(write)
            high["store_result"].add(write)
            c = write + 1
        elif op == Op.CALIBRATE:
            phases[c] = (Phase.READ, g)
            high["calibration_start"].add(c)
            reads = (p.comp_steps + 1) * (L + 1)
            for j in range(reads):
                phases[c + 1 + j] = (Phase.SEARCH, g)
            # S search reads and the verification read, L + 1 cycles each.
            high["calibration_read"] |= {c + (j + 1) * (L + 1) for j in range(p.comp_steps + 1)}
            done = c + reads                              # the verification read's last cycle
            high["calibrated"].add(done)
            write = done + 1
            phases[write] = (Phase.WRITE, g)
            high["comp_store"].add(write if L else done)
            high["calflag_groups"].add(write if L else done)
            c = write + 1
        else:
            phases[c] = (Phase.CLEAR, g)
            high["store"].add(c)
            c += 1
    busy = set(phases)
    if op == Op.CALIBRATE:
        high["calibrating"] = busy
    if op == Op.RUN and cmd & ACCUMULATE:
        high["accumulate"] = busy
    assert len(busy) == command_cycles(p, cmd) == max(busy) - accepted
    return dict(phases=phases, planes=planes, high=high, busy=busy, last=max(busy))
