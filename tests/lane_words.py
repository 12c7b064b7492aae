"""Lane values packed into one integer, as the blocks' lane-major ports hold them."""


def pack(values, width):
    """Lane values (two's complement for negatives) packed into one integer, lane 0 low."""
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (i * width) for i, v in enumerate(values))


def unpack_signed(word, width, count):
    """The ``count`` signed ``width``-bit lane values of ``word``, lane 0 first."""
    values = []
    for i in range(count):
        v = (word >> (i * width)) & ((1 << width) - 1)
        values.append(v - (1 << width) if v >> (width - 1) else v)
    return values
