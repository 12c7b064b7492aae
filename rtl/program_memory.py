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
from .logic import clog2, eq_const, lt_const, onehot, select, ule, ult

__all__ = ["ProgramMemory", "entry_fields"]

W = ProgramWord


def entry_fields(ep):
    """Name and width of each field of one program entry."""
    return {"inputs": COUNT_BITS, "outputs": COUNT_BITS, "row_tiles": W.TILE_BITS,
            "col_tiles": W.TILE_BITS, "first_bank": W.FIRST_BANK_BITS,
            "planes": W.PLANES_BITS, "source": 1, "binary": 1}


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
        The layer whose entry the fields below show (combinationally).
    inputs, outputs, row_tiles, col_tiles, first_bank, planes, source, binary : Out
        The fields of entry ``layer``.
    upcoming_layer : In(max(1, ceil(log2 layers)))
        A second layer, whose first bank ``upcoming_first_bank`` shows (combinationally):
        the engine's sequencer looks up the bank after a layer's last RUN with it.
    upcoming_first_bank : Out(FIRST_BANK_BITS)
        The first bank of entry ``upcoming_layer``.
    program_ok : Out(1)
        Every entry up to the first last layer (BINARY = 0) passes the rules of
        "Program memory", and there is one.
    classes : Out(17)
        The outputs of that last layer.
    answer : Out(32)
        The word a PROGRAM read returns, in the ack's cycle (0 for other accesses).
    entries : list of dict
        After ``elaborate``: each layer's field registers by name, for formal harnesses.
    """

    def __init__(self, ep):
        self._ep = ep
        fields = {name: Out(width) for name, width in entry_fields(ep).items()}
        super().__init__({
            "access": In(engine_access_layout(ep)),
            "layer": In(max(1, clog2(ep.layers))),
            **fields,
            "upcoming_layer": In(max(1, clog2(ep.layers))),
            "upcoming_first_bank": Out(W.FIRST_BANK_BITS),
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
        # The first bank as wide as T x J: the check adds them at equal widths.
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

        # The entry of the sequencer's layer.
        for name in names:
            width = entry_fields(ep)[name]
            m.d.comb += getattr(self, name).eq(select(
                m, self.layer[:clog2(ep.layers)], [e[name][:width] for e in entries],
                width, f"entry_{name}"))
        m.d.comb += self.upcoming_first_bank.eq(select(
            m, self.upcoming_layer[:clog2(ep.layers)],
            [e["first_bank"][:W.FIRST_BANK_BITS] for e in entries], W.FIRST_BANK_BITS,
            "upcoming_first_bank"))

        # CLASSIFY's check: each entry's own rules, the chain, and a last layer.
        R, C, B = p.rows, p.cols, p.input_bits
        ok, last_here, classes = [], [], Const(0, COUNT_BITS)
        all_binary = Const(1, 1)
        for l, e in enumerate(entries):
            T, J = e["row_tiles"], e["col_tiles"]
            sizes = (e["inputs"].any() & e["outputs"].any()
                     & lt_const(e["inputs"], ep.max_width + 1)
                     & lt_const(e["outputs"], ep.max_width + 1))
            # T = ceil(n_in / R): (T - 1) R < n_in <= T R (T >= 1 is checked on write).
            T1, J1 = (T - 1)[:W.TILE_BITS], (J - 1)[:W.TILE_BITS]
            tiles = (T.any() & ule(e["inputs"], T * R) & ult(T1 * R, e["inputs"])
                     & J.any() & ule(e["outputs"], J * C) & ult(J1 * C, e["outputs"]))
            banks = lt_const((e["first_bank"] + T * J)[:2 * W.TILE_BITS], ep.weight_banks + 1)
            if l == 0:
                chain = ~e["source"] & e["planes"].any() & lt_const(e["planes"], B + 1)
            else:
                chain = (e["source"] & eq_const(e["planes"], 1)
                         & (e["inputs"] == entries[l - 1]["outputs"]))
            ok_l = Signal(name=f"layer{l}_ok")
            m.d.comb += ok_l.eq(sizes & tiles & banks & chain)
            ok.append(ok_l)
            here = Signal(name=f"layer{l}_last")
            m.d.comb += here.eq(~e["binary"] & all_binary & Cat(*ok).all())
            last_here.append(here)
            classes = Mux(here, e["outputs"], classes)
            all_binary = all_binary & e["binary"]
        # Registered: the check is some 30 logic levels, which would otherwise sit in front
        # of the first RUN's bank address. A PROGRAM write acts in its access's cycle and
        # the next access (a CLASSIFY at the earliest) acts two cycles later, so the
        # register always holds the check of the program as written.
        check = Signal(name="program_check")
        m.d.comb += check.eq(Cat(*last_here).any())
        m.d.sync += [self.program_ok.eq(check), self.classes.eq(classes)]
        self.entries, self.check = entries, check

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
