"""The macro's address space and command rules, enumerated from ``MacroParams`` alone.

The testbenches (Amaranth, cocotb, formal) use these as an oracle independent of both
the RTL's decoder and the golden model's: every word address of a region comes from
the field layout of ``MacroParams.regions()`` and the sizes of section 6, and the CMD
rules are written out from section 6's "CMD format".
"""

from __future__ import annotations

from models.params import Op, Region

__all__ = ["ACCUMULATE", "NPLANES_SHIFT", "field_sizes", "region_words",
           "readback_addresses", "command_ok", "command_cycles"]

#: CMD bit 4 and the NPLANES field at bits 11:8 (ARCHITECTURE.md section 6).
ACCUMULATE = 1 << 4
NPLANES_SHIFT = 8


def field_sizes(p):
    """Number of valid values of each address field."""
    return dict(reg=32, group=p.groups, slot=p.cols_per_cycle, chunk=p.chunks,
                plane=p.input_bits, word=p.packed_words, index=1 << p.readout_bits)


def region_words(p, region):
    """Every word address of a built region (every valid field combination)."""
    sizes = field_sizes(p)
    offsets = [0]
    for name, width in region["fields"]:
        offsets = [(o << width) | v for o in offsets for v in range(sizes[name])]
    return [(region["region"] << p.region_shift) | o for o in offsets]


def readback_addresses(p):
    """Every CSR and every word of every memory region."""
    addrs = [(Region.CSR << p.region_shift) | c["offset"] for c in p.csrs()]
    for r in p.regions():
        if r["region"] != Region.CSR:
            addrs += region_words(p, r)
    return addrs


def command_ok(p, cmd):
    """The CMD rules of section 6, written out independently of the model."""
    op, planes = cmd & 7, cmd >> NPLANES_SHIFT & 0xF
    if op not in Op.ALL or cmd & ~(0x7 | ACCUMULATE | 0xF << NPLANES_SHIFT):
        return False
    if op == Op.RUN:
        return planes <= p.input_bits
    return not cmd & (ACCUMULATE | 0xF << NPLANES_SHIFT)


def command_cycles(p, cmd):
    """Cycles an accepted ``cmd`` keeps BUSY high (section 5)."""
    op = cmd & 7
    if op == Op.RUN:
        return p.run_cycles((cmd >> NPLANES_SHIFT & 0xF) or p.input_bits)
    if op == Op.CALIBRATE:
        return p.calibrate_cycles()
    return p.clear_cycles()
