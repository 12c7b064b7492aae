"""Small logic helpers shared by the macro's components.

Verilator ``-Wall`` cleanliness
    Amaranth's RTLIL backend trims zero and sign extensions off arithmetic and comparison
    operands, which Verilator reports as WIDTH warnings. So the components compare with
    constants only through bitwise logic (:func:`eq_const`, :func:`lt_const`), add only
    equal-width operands or 1-bit ones, and select words with ``Switch`` tables that
    always have a ``Default`` (a ``case`` without one is CASEINCOMPLETE, :func:`select`)
    or with trees of equal-width multiplexers (:func:`select_packed`).

Generation speed
    Amaranth's conversion time grows with the signals, assignments, cells and bits it
    handles, and it copies an unnamed expression at each use. So logic repeated per lane
    or per memory slot is built from wide cells and one assignment for all lanes, and an
    expression used more than once is a signal.
"""

from amaranth.hdl import Cat, Const, Mux, Signal, Value

from models.params import Region

from .replicas import LANE_BLOCK

__all__ = ["clog2", "eq_const", "lt_const", "register", "any_per_block", "onehot", "select",
           "select_packed", "or_words", "region_name", "ult", "ule"]


def clog2(n):
    """Bits of an index of ``n`` items (0 for one item)."""
    return max(0, (n - 1).bit_length())


def eq_const(value, const):
    """``value == const`` as bitwise logic (no width-mismatched comparison operands); a
    zero-width ``value`` is 0, equal to ``const`` 0 only."""
    if const >> len(value):
        return Const(0, 1)
    if len(value) == 0:
        return Const(1, 1)
    return ~(value ^ Const(const, len(value))).any()


def lt_const(value, bound):
    """``value < bound`` for an unsigned ``value`` and a constant ``bound``, bitwise.

    ``value < bound`` exactly when, at some bit i where ``bound`` has a 1, ``value`` has a
    0 and agrees with ``bound`` on every bit above i.
    """
    width = len(value)
    if bound >= 1 << width:
        return Const(1, 1)
    terms = [~value[i] & eq_const(value[i + 1:], bound >> (i + 1))
             for i in range(width) if bound >> i & 1]
    return Cat(*terms).any() if terms else Const(0, 1)


def register(m, value, name):
    """``value`` one cycle later, from a register named ``name``."""
    value = Value.cast(value)
    reg = Signal(len(value), name=name)
    m.d.sync += reg.eq(value)
    return reg


def any_per_block(bits):
    """One bit per block of LANE_BLOCK lanes: some lane of the block is set."""
    return Cat(*(bits[b:b + LANE_BLOCK].any() for b in range(0, len(bits), LANE_BLOCK)))


def onehot(m, value, count, name):
    """A ``count``-bit signal with bit ``value`` set (none when ``value >= count``)."""
    result = Signal(count, name=name)
    if len(value) == 0:
        m.d.comb += result.eq(Const(1, count))
    else:
        m.d.comb += result.eq((Const(1, 1) << value)[:count])
    return result


def select(m, index, items, width, name):
    """``items[index]`` (a dict or list of values of ``width`` bits), 0 for other indices.

    A ``Switch`` with a ``Default`` rather than a shift by ``index * width``: Verilator
    sees full-width constants and a complete ``case``, and the mux is what synthesis
    would build anyway.
    """
    if not isinstance(items, dict):
        items = dict(enumerate(items))
    result = Signal(width, name=name)
    if len(index) == 0:
        m.d.comb += result.eq(items.get(0, Const(0, width)))
        return result
    with m.Switch(index):
        for key, value in items.items():
            with m.Case(key):
                m.d.comb += result.eq(value)
        with m.Default():
            m.d.comb += result.eq(Const(0, width))
    return result


def select_packed(m, index, value, count, width, name):
    """Item ``index`` of ``count`` items of ``width`` bits packed in ``value`` (item i is
    bits ``[i * width, (i + 1) * width)``); 0 for ``index >= count``.

    A tree of multiplexers, one wide multiplexer per index bit from the most significant
    down, each choosing between the lower and the upper half of the remaining items
    (padded with zeros): a handful of cells where a ``case`` statement would have an arm,
    a comparison and an assignment per item.
    """
    for bit in reversed(range(len(index))):
        half = 1 << bit
        low_count, high_count = min(count, half), max(0, count - half)
        low = value[:low_count * width]
        if low_count < half:
            low = Cat(low, Const(0, (half - low_count) * width))
        if high_count:
            high = value[half * width:count * width]
            if high_count < half:
                high = Cat(high, Const(0, (half - high_count) * width))
        else:
            high = Const(0, half * width)
        level = Signal(half * width, name=f"{name}_{bit}" if bit else name)
        m.d.comb += level.eq(Mux(index[bit], high, low))
        value, count = level, half
    if count > 1 or not len(index):
        return value[:width]
    return value


def or_words(value, count, width):
    """Bitwise OR of the ``count`` words of ``width`` bits packed in ``value``."""
    result = value[:width]
    for j in range(1, count):
        result = result | value[j * width:(j + 1) * width]
    return result


def region_name(number):
    """Lower-case name of a region number, for signal names."""
    for name, value in vars(Region).items():
        if value == number and name.isupper() and name != "BITS":
            return name.lower()
    raise ValueError(f"no region numbered {number}")


def ult(a, b):
    """``a < b`` for unsigned values of any widths, compared at equal widths (the wider
    one's high bits decide first): no width-mismatched comparison operands."""
    a, b = Value.cast(a), Value.cast(b)
    w = min(len(a), len(b))
    if len(a) > w:
        return ~a[w:].any() & (a[:w] < b)
    if len(b) > w:
        return b[w:].any() | (a < b[:w])
    return a < b


def ule(a, b):
    """``a <= b`` for unsigned values of any widths (see :func:`ult`)."""
    return ~ult(b, a)
