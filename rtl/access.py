"""The decoded bus access that the bus front end hands to the rest of the macro.

An :func:`access_layout` record holds one access as decoded by
:class:`~rtl.bus_front_end.BusFrontEnd`: whether it was accepted (passed every check of
``docs/ARCHITECTURE.md`` section 6), its direction and data, its region offset, and one
bit per region and per CSR that it hits. Components take the fields of a region's offset
with :func:`offset_fields`.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

from models.params import BUS_DATA_BITS, CSR, Region

__all__ = ["access_layout", "offset_fields", "REGION_COUNT"]

#: One bit per region number of the region field.
REGION_COUNT = 1 << Region.BITS


def access_layout(p):
    """The record of one access of a macro with parameters ``p``.

    Members
    -------
    valid : 1
        The access passed every check and acts (in the cycle the record is for).
    we : 1
        A write.
    data : 32
        The written word.
    offset : ``p.region_shift``
        The word address below the region field.
    regions : 16
        Bit ``n``: the access hits a word of region ``n`` (a built region, every field
        within its size; for the CSR region, a register that exists).
    regs : 32
        Bit ``n``: the register field (the low 5 offset bits) is ``n``.
    """
    return data.StructLayout({
        "valid": unsigned(1),
        "we": unsigned(1),
        "data": unsigned(BUS_DATA_BITS),
        "offset": unsigned(p.region_shift),
        "regions": unsigned(REGION_COUNT),
        "regs": unsigned(1 << CSR.REG_BITS),
    })


def offset_fields(p, region, offset):
    """The address fields of ``region`` (a region number) in ``offset``, by name, as
    slices (LSB field last in ``p.regions()``' layout)."""
    for r in p.regions():
        if r["region"] == region:
            fields, pos = {}, 0
            for name, width in reversed(r["fields"]):
                fields[name] = offset[pos:pos + width]
                pos += width
            return fields
    raise ValueError(f"region {region} is not built")
