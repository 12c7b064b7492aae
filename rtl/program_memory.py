"""The layer program of the network engine (docs/ENGINE.md, "Program memory"): the
PROGRAM words of every layer, their read-back, the entry of the sequencer's layer, and
CLASSIFY's program check (BAD_PROGRAM).

The words are registers (the check looks at every entry at once): each keeps only the
fields of its part, since a write with any other bit set is refused (BAD_VALUE) by the
front end.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.engine_params import PROGRAM_WORDS, EngineRegion, ProgramWord

from .engine_front_end import COUNT_BITS, engine_access_layout, engine_fields
from .logic import clog2, eq_const, lt_const, onehot, register, select, ule, ult
from .pipeline_timing import PipelineTiming

__all__ = ["ProgramMemory", "entry_fields", "presented", "presented_bits", "check_stages",
           "layer_terms", "last_layer", "tiles_match", "TABLE_BITS"]

W = ProgramWord


def entry_fields(ep):
    """Name and width of each field of one program entry."""
    return {"inputs": COUNT_BITS, "outputs": COUNT_BITS, "row_tiles": W.TILE_BITS,
            "col_tiles": W.TILE_BITS, "first_bank": W.FIRST_BANK_BITS,
            "planes": W.PLANES_BITS, "source": 1, "binary": 1}


def presented_bits(ep):
    """Bits of each entry field the sequencer sees: as many as a program that passes
    CLASSIFY's check can set (n_in, n_out <= max_width, T <= ceil(max_width / R), ...);
    the bits above are presented as 0, so the sequencer's copies of them are constants."""
    p = ep.macro
    counts = {"inputs": ep.max_width, "outputs": ep.max_width,
              "row_tiles": -(-ep.max_width // p.rows), "col_tiles": -(-ep.max_width // p.cols),
              "first_bank": ep.weight_banks - 1, "planes": p.input_bits, "source": 1,
              "binary": 1}
    return {name: min(width, counts[name].bit_length())
            for name, width in entry_fields(ep).items()}


def presented(ep, name, stored):
    """The value of field ``name`` the sequencer sees for the stored register ``stored``."""
    width, bits = entry_fields(ep)[name], presented_bits(ep)[name]
    return Cat(stored[:bits], Const(0, width - bits))


def check_stages(ep):
    """Register stages of CLASSIFY's program check: the macro's bus latency (1, or 2 at
    L = 1..3).

    A PROGRAM write acts in cycle t and the next access acts at t + 1 +
    ``ep.bus_latency`` (1 or 3) at the earliest: the entries hold the new word from
    t + 1, and after these register stages ``program_ok`` and ``classes`` hold the check
    of the program as written when a CLASSIFY can act.
    """
    return PipelineTiming.of(ep.macro.pipeline).bus_latency


#: Weight banks up to 2**TABLE_BITS - 1: the check takes products of tile counts from
#: tables (a LUT level or a few, where a multiplier block and its routing take ~9 ns).
TABLE_BITS = 4


def table(m, index, values, width, name):
    """``values[index]`` (integers) as a multiplexer of ``width``-bit constants."""
    return select(m, index, [Const(v, width) for v in values], width, name)


def tiles_match(m, count, tiles, size, low=None, n=None, name=None):
    """``tiles == ceil(count / size)`` and ``tiles >= 1``, i.e. ``(tiles - 1) size < count
    <= tiles size``.

    For ``size`` a power of two, ``tiles`` is compared with ``count >> log2 size`` plus
    one where bits below it are set (an incrementer and an equality); otherwise
    ``tiles size`` and ``(tiles - 1) size`` come from tables of ``low`` (the low bits of
    ``tiles``, ``n`` values: the caller checks the bits above) when given, else from
    multipliers by the constant.
    """
    if size & (size - 1) == 0:
        # Operands of equal widths for lint: a one-bit increment, not a wide constant,
        # and the equality at the tiles' width with the bits above tested apart.
        shift = size.bit_length() - 1
        t = len(tiles)
        ceil = Signal(max(len(count) - shift + 1, t + 1))
        m.d.comb += ceil.eq(count[shift:] + count[:shift].any())
        return tiles.any() & (ceil[:t] == tiles) & ~ceil[t:].any()
    w = COUNT_BITS + 1
    if low is not None:
        upper = table(m, low, [t * size for t in range(n)], w, f"{name}_upper")
        lower = table(m, low, [max(t - 1, 0) * size for t in range(n)], w, f"{name}_lower")
    else:
        upper, lower = tiles * size, (tiles - 1)[:len(tiles)] * size
    return tiles.any() & ule(count, upper) & ult(lower, count)


def layer_terms(m, ep, e, prev, name):
    """The rules of one program entry ``e`` (``prev``: the entry before, None for layer
    0): ``{"ok": entry passes}``, the value the check registers between its stages.

    The tile counts by :func:`tiles_match`. With at most 2**TABLE_BITS - 1 weight banks,
    the bank count k bits wide: T, J and the first bank fit k bits (else the entry
    fails), and T J, WEIGHT_BANKS - first bank (and T R ... where R or C is not a power
    of two) come from tables of the low k bits.
    """
    R, C, B, banks = ep.macro.rows, ep.macro.cols, ep.macro.input_bits, ep.weight_banks
    T, J, first = e["row_tiles"], e["col_tiles"], e["first_bank"]
    sizes = (e["inputs"].any() & e["outputs"].any()
             & lt_const(e["inputs"], ep.max_width + 1)
             & lt_const(e["outputs"], ep.max_width + 1))
    k = banks.bit_length()
    if k <= TABLE_BITS:
        n, w = 1 << k, COUNT_BITS + 1
        Tk, Jk, fk = T[:k], J[:k], first[:k]
        tiles = (~T[k:].any() & ~J[k:].any()
                 & tiles_match(m, e["inputs"], T, R, Tk, n, f"{name}_row")
                 & tiles_match(m, e["outputs"], J, C, Jk, n, f"{name}_col"))
        product = table(m, Cat(Jk, Tk), [t * j for t in range(n) for j in range(n)], 2 * k,
                        f"{name}_tj")
        room = table(m, fk, [max(banks - f, 0) for f in range(n)], k, f"{name}_room")
        in_banks = ~first[k:].any() & lt_const(fk, banks + 1) & ule(product, room)
    else:
        tiles = (tiles_match(m, e["inputs"], T, R, name=f"{name}_row")
                 & tiles_match(m, e["outputs"], J, C, name=f"{name}_col"))
        # The first bank register is as wide as T x J: an adder of equal widths.
        in_banks = lt_const((first + T * J)[:2 * W.TILE_BITS], banks + 1)
    if prev is None:
        chain = ~e["source"] & e["planes"].any() & lt_const(e["planes"], B + 1)
    else:
        chain = e["source"] & eq_const(e["planes"], 1) & (e["inputs"] == prev["outputs"])
    return {"ok": sizes & tiles & in_banks & chain}


def last_layer(ep, entries, terms):
    """The end of the check from each layer's :func:`layer_terms`: ``(ok, classes)``, ok
    when every entry up to the first last layer (BINARY = 0) passes and there is one,
    classes the outputs of that layer."""
    ok, last_here, classes = Const(1, 1), [], Const(0, COUNT_BITS)
    all_binary = Const(1, 1)
    for e, t in zip(entries, terms):
        ok = ok & t["ok"]
        here = ~e["binary"] & all_binary & ok
        last_here.append(here)
        classes = Mux(here, presented(ep, "outputs", e["outputs"]), classes)
        all_binary = all_binary & e["binary"]
    return Cat(*last_here).any(), classes


class ProgramMemory(wiring.Component):
    """The layer program: ``layers`` entries of PROGRAM_WORDS words.

    Parameters
    ----------
    ep : EngineParams

    Members
    -------
    access : In(engine_access_layout(ep))
        The bus access in the cycle it acts in.
    layer : In(max(1, ceil(log2 layers)))
        The layer whose entry the fields below show (combinationally): the engine's
        sequencer asks for the layer after its current one.
    inputs, outputs, row_tiles, col_tiles, first_bank, planes, source, binary : Out
        The fields of entry ``layer``, the bits above :func:`presented_bits` as 0 (a
        CLASSIFY runs only a program that passes the check, whose fields fit them).
    program_ok : Out(1)
        Every entry up to the first last layer (BINARY = 0) passes the rules of
        "Program memory", and there is one: the check of the entries
        :func:`check_stages` cycles before (a register after each stage).
    classes : Out(17)
        The outputs of that last layer, with ``program_ok``.
    answer : Out(32)
        The word a PROGRAM read returns, in the ack's cycle (0 for other accesses).
    entries : list of dict
        After ``elaborate``: each layer's field registers by name, for formal harnesses;
        also ``check`` (what ``program_ok`` takes next) and ``stage_registers`` (the
        first stage's registers, each with the value it follows).
    """

    def __init__(self, ep):
        self._ep = ep
        fields = {name: Out(width) for name, width in entry_fields(ep).items()}
        super().__init__({
            "access": In(engine_access_layout(ep)),
            "layer": In(max(1, clog2(ep.layers))),
            **fields,
            "program_ok": Out(1),
            "classes": Out(COUNT_BITS),
            "answer": Out(32),
        })

    def elaborate(self, platform):
        ep, p = self._ep, self._ep.macro
        m = Module()
        access = self.access
        fields = engine_fields(ep, EngineRegion.PROGRAM, access.offset)
        layer_hit = onehot(m, fields["layer"], ep.layers, "program_layer_hit")
        part_hit = onehot(m, fields["part"], PROGRAM_WORDS, "program_part_hit")
        write = access.valid & access.we & access.regions[EngineRegion.PROGRAM]
        dat_w = access.data
        names = list(entry_fields(ep))
        entries = []
        # The first bank as wide as T x J: the check may add them at equal widths.
        widths = dict(entry_fields(ep), first_bank=2 * W.TILE_BITS)
        for l in range(ep.layers):
            e = {name: Signal(width, name=f"layer{l}_{name}") for name, width in widths.items()}
            entries.append(e)
            parts = {
                W.INPUTS: [(e["inputs"], dat_w[:COUNT_BITS])],
                W.OUTPUTS: [(e["outputs"], dat_w[:COUNT_BITS])],
                W.TILES: [(e["row_tiles"], dat_w[:W.TILE_BITS]),
                          (e["col_tiles"], dat_w[W.COL_TILES_SHIFT:W.COL_TILES_SHIFT + W.TILE_BITS])],
                W.MODE: [(e["first_bank"], dat_w[:W.FIRST_BANK_BITS]),
                         (e["planes"], dat_w[W.PLANES_SHIFT:W.PLANES_SHIFT + W.PLANES_BITS]),
                         (e["source"], dat_w[W.SOURCE_BIT]), (e["binary"], dat_w[W.BINARY_BIT])],
            }
            for part, assigns in parts.items():
                with m.If(write & layer_hit[l] & part_hit[part]):
                    m.d.sync += [reg.eq(value) for reg, value in assigns]

        # The entry of the layer the sequencer asks for (the bits a passing program sets).
        for name in names:
            width = entry_fields(ep)[name]
            m.d.comb += getattr(self, name).eq(select(
                m, self.layer[:clog2(ep.layers)],
                [presented(ep, name, e[name]) for e in entries], width, f"entry_{name}"))

        # CLASSIFY's check, in ``bus_latency`` register stages (see ``check_stages``).
        self.entries = entries
        self.stage_registers = []
        terms = [layer_terms(m, ep, e, entries[l - 1] if l else None, f"layer{l}")
                 for l, e in enumerate(entries)]
        if check_stages(ep) == 2:
            terms = [{name: self._stage(m, value, f"layer{l}_{name}_q")
                      for name, value in t.items()} for l, t in enumerate(terms)]
        ok, classes = last_layer(ep, entries, terms)
        self.check = Signal(name="program_check")
        m.d.comb += self.check.eq(ok)
        m.d.sync += [self.program_ok.eq(self.check), self.classes.eq(classes)]

        # Read-back: the word as written.
        words = {}
        for l, e in enumerate(entries):
            words[l << 2 | W.INPUTS] = e["inputs"]
            words[l << 2 | W.OUTPUTS] = e["outputs"]
            words[l << 2 | W.TILES] = Cat(e["row_tiles"], Const(0, W.COL_TILES_SHIFT - W.TILE_BITS),
                                          e["col_tiles"])
            words[l << 2 | W.MODE] = Cat(e["first_bank"][:W.FIRST_BANK_BITS],
                                         Const(0, W.PLANES_SHIFT - W.FIRST_BANK_BITS),
                                         e["planes"],
                                         Const(0, W.SOURCE_BIT - W.PLANES_SHIFT - W.PLANES_BITS),
                                         e["source"], e["binary"])
        index = Cat(fields["part"], fields["layer"])
        chosen = select(m, index, words, 32, "program_word")
        answer = Signal(32, name="program_answer")
        m.d.sync += answer.eq(Mux(access.valid & ~access.we
                                  & access.regions[EngineRegion.PROGRAM], chosen, 0))
        m.d.comb += self.answer.eq(answer)
        return m

    def _stage(self, m, value, name):
        """``value`` through a register of the check's first stage (kept, with the value
        it follows, in ``stage_registers``)."""
        reg = register(m, value, name)
        self.stage_registers.append((reg, value))
        return reg
