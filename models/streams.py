"""The random streams of chip sampling, seeded in bulk.

Every kind of parameter of a chip instance has its own stream: numpy's
``Generator(PCG64(SeedSequence(entropy, spawn_key=(stream,))))``
(:mod:`models.chip`). Building one costs some 20 us, mostly ``SeedSequence``'s
conversions of its inputs, which is more than drawing a 32x96 array from it. A
:class:`StreamSet` computes the PCG64 states of many (entropy, stream) pairs at once,
with ``SeedSequence``'s mixing (O'Neill's ``seed_seq`` variant, numpy's
``bit_generator.pyx``) on arrays, and hands out one generator set to the state asked for:
the draws are those of the generator numpy would build (``tests/test_streams.py``
compares states and draws).
"""

from __future__ import annotations

import numpy as np

__all__ = ["StreamSet", "entropy_words", "pcg64_state"]

_MASK32 = 0xFFFFFFFF
_MASK128 = (1 << 128) - 1
_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
# PCG64's 128-bit LCG multiplier (numpy's pcg64.h, PCG_DEFAULT_MULTIPLIER_128).
_PCG_MULT = (2549297995355413924 << 64) | 4865540595714422341


def entropy_words(entropy, stream: int) -> tuple[int, ...]:
    """The uint32 words ``SeedSequence(entropy, spawn_key=(stream,))`` mixes: each
    non-negative integer of ``entropy`` (an int or a tuple of them) as base-2^32 digits,
    lowest first (0 as one word), padded with zeros to the pool size, then the stream's."""
    def words(n):
        n = int(n)
        if n < 0:
            raise ValueError(f"entropy must be non-negative, not {n}")
        out = [n & _MASK32] if n == 0 else []
        while n:
            out.append(n & _MASK32)
            n >>= 32
        return out
    values = entropy if isinstance(entropy, tuple) else (entropy,)
    if all(0 <= n <= _MASK32 for n in values) and 0 <= stream <= _MASK32:
        run, spawn = list(values), [stream]                 # one word each
    else:
        run = [w for n in values for w in words(n)]
        spawn = words(stream)
    run += [0] * max(0, _POOL - len(run))
    return tuple(run + spawn)


def _hash_constants(count: int, init: int, mult: int) -> list[int]:
    """The multipliers of ``count`` successive hashes (the same for every input)."""
    out, h = [], init
    for _ in range(count):
        out.append(h)
        h = (h * mult) & _MASK32
    return out


def _hashmix(value, constant, mult):
    value = value ^ np.uint64(constant)
    value = (value * np.uint64((constant * mult) & _MASK32)) & np.uint64(_MASK32)
    return value ^ (value >> np.uint64(16))


def _mix(x, y):
    r = (np.uint64(_MIX_L) * x - np.uint64(_MIX_R) * y) & np.uint64(_MASK32)
    return r ^ (r >> np.uint64(16))


def _pools(words: np.ndarray) -> np.ndarray:
    """SeedSequence's pools (n, 4) of entropy word arrays (n, L), L >= 4, as uint64."""
    n, length = words.shape
    hashes = _POOL + _POOL * (_POOL - 1) + (length - _POOL) * _POOL
    constants = iter(_hash_constants(hashes, _INIT_A, _MULT_A))
    pool = [_hashmix(words[:, i], next(constants), _MULT_A) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = _mix(pool[dst], _hashmix(pool[src], next(constants), _MULT_A))
    for src in range(_POOL, length):
        for dst in range(_POOL):
            pool[dst] = _mix(pool[dst], _hashmix(words[:, src], next(constants), _MULT_A))
    return np.stack(pool, axis=1)


def _seeds(pools: np.ndarray) -> np.ndarray:
    """``generate_state(4, uint64)`` of each pool: (n, 8) uint32 words as uint64."""
    constants = _hash_constants(2 * _POOL, _INIT_B, _MULT_B)
    return np.stack([_hashmix(pools[:, i % _POOL], c, _MULT_B) for i, c in enumerate(constants)],
                    axis=1)


def _uint64_words(words32: np.ndarray) -> list:
    """``generate_state(4, uint64)`` of (n, 8) 32-bit words: n lists of four Python ints
    (word ``2k`` the low half of ``k``)."""
    w = words32.astype(np.uint64)
    return (w[:, 0::2] | (w[:, 1::2] << np.uint64(32))).tolist()


def pcg64_state(val) -> tuple[int, int]:
    """PCG64's ``(state, inc)`` seeded by the four 64-bit words of
    ``generate_state(4, uint64)`` (numpy's ``pcg64_set_seed``: two LCG steps)."""
    seed = (val[0] << 64) | val[1]
    inc = (((val[2] << 64) | val[3]) << 1 | 1) & _MASK128
    state = inc                                     # 0 * MULT + inc
    state = (state + seed) & _MASK128
    state = (state * _PCG_MULT + inc) & _MASK128
    return state, inc


class StreamSet:
    """The generators of every (seed, stream) pair of a set of chip seeds.

    Parameters
    ----------
    seeds : sequence of int or tuple of int
        Entropy of each instance (as ``SeedSequence`` takes it; non-negative).
    streams : sequence of int
        The stream numbers that will be asked for.

    :meth:`generator` returns one shared ``numpy.random.Generator`` set to the start of
    the pair's stream: draw from it before asking for the next pair.
    """

    def __init__(self, seeds, streams):
        pairs = [(seed, int(stream)) for seed in seeds for stream in streams]
        self._states: dict = {}
        by_length: dict = {}
        for pair in pairs:
            words = entropy_words(*pair)
            by_length.setdefault(len(words), []).append((pair, words))
        for group in by_length.values():
            words = np.array([w for _, w in group], np.uint64)
            for (pair, _), val in zip(group, _uint64_words(_seeds(_pools(words)))):
                self._states[pair] = pcg64_state(val)
        self._bits = np.random.PCG64(0)
        self._generator = np.random.Generator(self._bits)

    def generator(self, seed, stream: int) -> np.random.Generator:
        """The generator at the start of ``stream`` of ``seed`` (one shared object)."""
        state, inc = self._states[(seed, int(stream))]
        self._bits.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": inc},
                            "has_uint32": 0, "uinteger": 0}
        return self._generator
