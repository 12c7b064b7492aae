"""The bus timing and the access records of ``docs/ARCHITECTURE.md`` sections 6 and 7,
written out from the text, for the tests of the components behind the bus front end.

The tables below are the contract's numbers for each readout pipeline L, not
``rtl/pipeline_timing.py``'s (``tests/test_pipeline_timing.py`` checks that the two
agree). The decode of a word address comes from the test oracle ``verif/address_space.py``
and the register table of section 6, never from the RTL's decoder.
"""

from models.params import BUS_DATA_BITS, CSR, ErrCode, Region
from verif.address_space import command_ok, region_words

#: Cycles from an access to its ack (section 6).
BUS_LATENCY = {0: 1, 1: 2, 2: 2, 3: 2, 4: 5}
#: Cycles from an access to the cycle the macro acts on it (section 6: "acts on the
#: access two cycles after it" at L = 4).
ACTS_AFTER = {0: 0, 1: 0, 2: 0, 3: 0, 4: 2}
#: Cycles from the acting cycle to a bus write landing in a column memory (section 7:
#: "memory writes land where the access acts (L = 0), a cycle later (L = 1..3) or two
#: (L = 4)").
MEMORY_WRITE_DELAY = {0: 0, 1: 1, 2: 1, 3: 1, 4: 2}
#: Cycles from an access to its fault showing in the error registers (the fault is
#: recorded at the clock edge ending the access cycle, or a cycle later at L = 4).
ERROR_VISIBLE_AFTER = {0: 1, 1: 1, 2: 1, 3: 1, 4: 2}
PIPELINES = tuple(sorted(BUS_LATENCY))

#: Section 6, "CSRs": the read-only registers, and the read-write ones (SAT and QSHIFT
#: only when ``readout`` is built); the activity counters (read-only, only when
#: ``counters`` is built: docs/ENERGY.md, ``MacroParams.csrs``).
READ_ONLY_CSRS = frozenset(range(13)) | {CSR.ERRCODE, CSR.ERRADDR, CSR.CYCLES}
READOUT_CSRS = frozenset({CSR.SAT, CSR.QSHIFT})
COUNTER_CSRS = (CSR.PLANE_OPS, CSR.CONVERSIONS, CSR.CAL_READS, CSR.BUS_ACCESSES)
READ_ONLY_REGIONS = frozenset({Region.ACC, Region.OUT, Region.CALFLAG})
WORD = (1 << BUS_DATA_BITS) - 1


def csr_offsets(p):
    """The offsets of the CSRs that exist in macro ``p``."""
    rw = {CSR.CMD, CSR.STATUS} | (READOUT_CSRS if p.has("readout") else set())
    return READ_ONLY_CSRS | rw | (set(COUNTER_CSRS) if p.counters else set())


def address_map(p):
    """``{word address: region number}`` of every mapped word of macro ``p``."""
    mapped = {(Region.CSR << p.region_shift) | reg: Region.CSR for reg in csr_offsets(p)}
    for r in p.regions():
        if r["region"] != Region.CSR:
            mapped.update(dict.fromkeys(region_words(p, r), r["region"]))
    return mapped


def region_of(p, name):
    """The ``p.regions()`` entry named ``name``."""
    return next(r for r in p.regions() if r["name"] == name)


def record(p, addr, *, valid=True, we=False, data=0, mapped=None):
    """The access record (``rtl/access.py``) of an access to ``addr``, as a dict for
    ``ctx.set``: ``regions`` has the bit of the region ``addr`` is a word of (none when
    unmapped), ``regs`` the bit of the low five offset bits."""
    if mapped is None:
        mapped = address_map(p)
    offset = addr & ((1 << p.region_shift) - 1)
    region = mapped.get(addr)
    return dict(valid=int(valid), we=int(we), data=data, offset=offset,
                regions=0 if region is None else 1 << region,
                regs=1 << (offset & ((1 << CSR.REG_BITS) - 1)))


IDLE_RECORD = dict(valid=0, we=0, data=0, offset=0, regions=0, regs=0)


def _sign_extends(data, width):
    top = data >> (width - 1)
    return top in (0, (1 << (BUS_DATA_BITS + 1 - width)) - 1)


def expected_errcode(p, addr, *, we, data=0, sel=0xF, busy=False, mapped=None):
    """ERRCODE of an access by the error rules of section 6 in their check order
    (0: accepted)."""
    if mapped is None:
        mapped = address_map(p)
    region = mapped.get(addr)
    reg = addr & ((1 << CSR.REG_BITS) - 1)
    if we and sel != 0xF:
        return ErrCode.BAD_SEL
    if region is None:
        return ErrCode.BAD_ADDRESS
    csr = region == Region.CSR
    if we and (region in READ_ONLY_REGIONS
               or (csr and (reg in READ_ONLY_CSRS or reg in COUNTER_CSRS))):
        return ErrCode.READ_ONLY
    if busy and (not csr or (we and reg in {CSR.CMD} | READOUT_CSRS)):
        return ErrCode.BUSY
    if we and csr and reg == CSR.CMD and not command_ok(p, data):
        return ErrCode.BAD_COMMAND
    if we and not _value_ok(p, region, reg, data):
        return ErrCode.BAD_VALUE
    return 0


def _value_ok(p, region, reg, data):
    """Section 6, BAD_VALUE: signed fields are sign extensions, unsigned ones at most
    their maximum."""
    W, A = p.readout_bits, p.acc_bits
    if region == Region.THRESH:
        return A >= BUS_DATA_BITS or _sign_extends(data, A)
    if region in (Region.OFFSET, Region.TABLE):
        return _sign_extends(data, W)
    if region == Region.GAIN:
        return data <= 255
    if region == Region.CSR and reg == CSR.SAT:
        return data <= p.readout_max
    if region == Region.CSR and reg == CSR.QSHIFT:
        return data <= 15
    return True
