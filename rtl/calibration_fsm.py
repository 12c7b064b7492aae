"""Offset calibration: a parallel successive-approximation search over the compensation cells.

Implements section 4 of ``docs/ARCHITECTURE.md``. One :class:`CalibrationFSM` serves the P
columns of one column group (one *lane* per column); the controller starts it once per
group. Every lane keeps its own search state ``n`` (the number of compensation cells at 1)
and drives ``comp = 2n - K`` into the compute array, which answers combinationally in the
same cycle; only the sign of that answer steers the search.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from models.params import MacroParams

from .replicas import replicated

__all__ = ["CalState", "CalibrationFSM"]


class CalState(enum.Enum, shape=2):
    """Phase of the calibration search, exposed on the ``state`` port.

    Members
    -------
    IDLE
        Waiting for ``start``; ``comp`` is 0 (balanced cells).
    SEARCH
        One of the S search reads: the lane moves by the current step at the clock edge.
    VERIFY
        The verification read: ``done`` is high, ``flags`` and ``therm`` are valid.
    """
    IDLE = 0
    SEARCH = 1
    VERIFY = 2


class CalibrationFSM(wiring.Component):
    """Binary search of the compensation cell count of P columns in parallel.

    A ``start`` pulse in cycle t sets ``n := K/2`` in every lane. In cycles t+1 .. t+S
    (``S = p.comp_steps = log2 K``) the FSM drives ``comp = 2n - K`` and, at the clock
    edge, moves each lane by d against the sign of its readout (``n - d`` when
    ``readout >= 0``, else ``n + d``), with d = K/4, K/8, ..., 1 and a final 1 (just 1
    for K = 2). These moves add up to K/2, so ``n`` stays in ``[0, K]`` and every count
    in that range is reachable. Cycle t+S+1 is the verification read: ``done`` is high
    for that cycle only, and ``therm`` and ``flags`` are valid in it. ``busy`` is high
    in cycles t+1 .. t+S+1.

    With a pipelined array (``p.pipeline`` = L > 0) the readout answers ``comp`` L
    cycles late, so every search read and the verification read hold ``comp`` for
    L + 1 cycles and act on the readout of the last one: the search reads end in cycles
    t + (L+1)·i for i = 1..S, the verification read is cycles t + (L+1)·S + 1 ..
    t + (L+1)·(S+1), and ``done`` is high in its last cycle only.

    ``comp`` is 0 (the balanced setting, ``n = K/2``) while idle, so an idle FSM never
    biases the array. A ``start`` while busy is ignored: the controller only starts a
    group once the previous one has finished, and ignoring it keeps the cycle count of
    a group fixed; a ``start`` held high starts a new group in every idle cycle, one group
    per S + 2 cycles. Outside the ``done`` cycle ``therm`` and ``flags`` follow the
    current search state and readout and carry no meaning; they are not gated, to save
    logic. Reset leaves the FSM idle with ``n = K/2`` in every lane.

    With L = 4 (the FPGA-clock build) the lanes are driven from copies per block of
    lanes of their enables and move, computed a cycle ahead, and return to ``n = K/2``
    at the end of the verification read instead of at ``start``: ``n`` is K/2 whenever
    the FSM is idle, so ``comp`` is 0 without a gate. The ports behave the same.

    Parameters
    ----------
    p : MacroParams
        Macro parameters; uses ``comp_rows`` (K), ``cols_per_cycle`` (P),
        ``readout_bits`` (W) and the derived ``comp_bits`` and ``comp_steps``.

    Members
    -------
    start : In(1)
        Pulse: begin the search of a group. Ignored while ``busy``.
    readout : In(data.ArrayLayout(signed(W), P))
        The compute array's combinational answer to ``comp``, one per lane.
    comp : Out(data.ArrayLayout(signed(comp_bits), P))
        ``2n - K`` per lane while busy, 0 while idle.
    busy : Out(1)
        High from the cycle after ``start`` up to and including the verification read.
    done : Out(1)
        One-cycle pulse in the verification-read cycle.
    therm : Out(data.ArrayLayout(unsigned(K), P))
        Thermometer code of ``n`` per lane (bits 0..n-1 set): the new COMP word.
    flags : Out(unsigned(P))
        Bit i: lane i's offset is outside the compensation range,
        ``(n == 0 and readout >= 0) or (n == K and readout < 0)``.
    state : Out(CalState)
        Current phase.
    read_done : Out(1)
        The last cycle of a search or verification read (the readout of ``comp`` is
        taken in it): one pulse per read, for the activity counters.
    p : MacroParams
        The parameters the FSM was built from.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        lanes = p.cols_per_cycle
        super().__init__({
            "start": In(1),
            "readout": In(data.ArrayLayout(signed(p.readout_bits), lanes)),
            "comp": Out(data.ArrayLayout(signed(p.comp_bits), lanes)),
            "busy": Out(1),
            "done": Out(1),
            "therm": Out(data.ArrayLayout(unsigned(p.comp_rows), lanes)),
            "flags": Out(unsigned(lanes)),
            "state": Out(CalState),
            "read_done": Out(1),
        })

    @property
    def p(self):
        return self._p

    def elaborate(self, platform):
        m = Module()
        r = self._control(m)
        self._lanes(m, r)
        self._outputs(m, r)
        return m

    def _control(self, m):
        """The state, the step and its move, the settle counter and the transitions (a
        namespace of what the lanes use)."""
        p = self._p
        K = p.comp_rows
        S = p.comp_steps
        # n is a count in [0, K] with K a power of two: K.bit_length() bits, and the top
        # bit is set exactly when n == K.
        n_bits = K.bit_length()
        # Step index 0..S-1; at least one bit so that K = 2 (S = 1) needs no 0-bit signal.
        step_bits = max(1, (S - 1).bit_length())
        moves = [K >> (i + 2) for i in range(S - 1)] + [1]

        # The emitted Verilog must pass `verilator -Wall` (see tests/test_lint.py), which
        # shapes this code in two ways:
        # * Amaranth emits constant operands of comparisons and arithmetic at their
        #   minimal width (WIDTH warnings), so no constant wider than one bit is an
        #   operand here: decisions on state and step are case tables, comparisons of n
        #   with 0 or K are a reduction or the top bit, and -move is ~move + 1.
        # * A signal's case statement is emitted without the trailing arms that leave it
        #   alone, so without `default` (CASEINCOMPLETE). Every case table below
        #   therefore assigns all of its signals in every arm, Default included, and the
        #   registers are updated under If/Else only.
        state = Signal(CalState, init=CalState.IDLE, name="state")
        step = Signal(unsigned(step_bits), name="step")

        idle = Signal(name="idle")
        searching = Signal(name="searching")
        verifying = Signal(name="verifying")
        with m.Switch(state):
            with m.Case(CalState.SEARCH):
                m.d.comb += [idle.eq(0), searching.eq(1), verifying.eq(0)]
            with m.Case(CalState.VERIFY):
                m.d.comb += [idle.eq(0), searching.eq(0), verifying.eq(1)]
            with m.Default():
                # IDLE, and the spare encoding, which is unreachable and would recover.
                m.d.comb += [idle.eq(1), searching.eq(0), verifying.eq(0)]

        move = Signal(unsigned(n_bits), name="move")
        last_step = Signal(name="last_step")
        next_step = Signal(unsigned(step_bits), name="next_step")
        with m.Switch(step):
            for i, d in enumerate(moves):
                with m.Case(i):
                    m.d.comb += [
                        move.eq(Const(d, n_bits)),
                        last_step.eq(i == S - 1),
                        next_step.eq(Const((i + 1) % S, step_bits)),
                    ]
            with m.Default():
                # Step values >= S are unreachable; move 0 would keep n in range.
                m.d.comb += [move.eq(Const(0, n_bits)), last_step.eq(1),
                             next_step.eq(Const(0, step_bits))]

        # settled: the readout answers the current comp (always, without a pipeline).
        L = p.pipeline
        if L:
            # Cycles left until the readout answers the current comp: counts L .. 0, so
            # "settled" is a reduction rather than a comparison with a wide constant.
            left = Signal(range(L + 1), name="settle_left", init=L)
            settled = Signal(name="settled")
            m.d.comb += settled.eq(~left.any())
            with m.If(idle | settled):
                m.d.sync += left.eq(L)
            with m.Else():
                m.d.sync += left.eq((left - Const(1, 1))[:len(left)])
        else:
            left = None
            settled = Const(1, 1)

        m.d.comb += [
            self.state.eq(state),
            self.busy.eq(~idle),
            self.done.eq(verifying & settled),
            self.read_done.eq(~idle & settled),
        ]

        with m.If(idle):
            # A start while busy never gets here, so it is ignored.
            with m.If(self.start):
                m.d.sync += [step.eq(Const(0, step_bits)), state.eq(CalState.SEARCH)]
            with m.Else():
                m.d.sync += state.eq(CalState.IDLE)
        with m.Elif(searching):
            with m.If(settled):
                m.d.sync += step.eq(next_step)
                with m.If(last_step):
                    m.d.sync += state.eq(CalState.VERIFY)
        with m.Elif(settled):
            m.d.sync += state.eq(CalState.IDLE)

        r = _Control()
        r.n_bits, r.moves, r.L, r.move = n_bits, moves, L, move
        r.idle, r.searching, r.verifying = idle, searching, verifying
        r.settled, r.left = settled, left
        return r

    def _lanes(self, m, r):
        """Every lane's n: one register, moved against the readout's sign while searching,
        back to K/2 at the start (or, at L = 4, at the end of the verification read)."""
        K, lanes = self._p.comp_rows, self._p.cols_per_cycle
        n_bits, moves, L, move = r.n_bits, r.moves, r.L, r.move
        idle, searching, verifying, settled, left = (r.idle, r.searching, r.verifying,
                                                     r.settled, r.left)

        # The lanes: one register holding every lane's n (lane-major, n_bits per lane),
        # updated by one assignment, and each output formed for all lanes by one
        # expression, so that the logic does not grow by a process per lane.
        n = Signal(unsigned(n_bits * lanes), name="n",
                   init=sum((K // 2) << (n_bits * lane) for lane in range(lanes)))
        lane_n = [n[n_bits * lane:n_bits * (lane + 1)] for lane in range(lanes)]
        # A signal, not an expression: each use of a slice of an expression copies it.
        negative = Signal(lanes, name="negative")
        m.d.comb += negative.eq(Cat(*(self.readout[lane][-1] for lane in range(lanes))))
        # -move modulo 2^n_bits, shared by the lanes that move down: ~move + 1.
        minus_move = Signal(unsigned(n_bits), name="minus_move")
        m.d.comb += minus_move.eq(((~move).as_unsigned() + Const(1, 1))[:n_bits])
        deep = L >= 4
        if deep:
            # The FPGA-clock build (L = 4) drives every lane from copies per block of
            # lanes (rtl/replicas.py), computed a cycle ahead: the enables and the move
            # fanned out from the state registers to every lane in one cycle. The cycle
            # before a settled one has settle_left = 1 and the same state and step, and
            # the lanes return to K/2 at the end of the verification read rather than at
            # start, so that start (an input) drives no lane: n is K/2 whenever idle.
            one_left = Signal(name="settle_one_left")
            m.d.comb += one_left.eq(left[0] & ~left[1:].any())
            update = replicated(m, searching & one_left, lanes, "cal_update")
            to_half = replicated(m, verifying & one_left, lanes, "cal_to_half")
            # Reset to the move of step 0, which they copy while idle.
            move_lanes = replicated(m, move, lanes, "cal_move", init=moves[0])
            minus_move_lanes = replicated(m, minus_move, lanes, "cal_minus_move",
                                          init=-moves[0] % (1 << n_bits))
        else:
            move_lanes, minus_move_lanes = move.replicate(lanes), minus_move.replicate(lanes)
        n_next = Cat(*((n_lane + Mux(negative[lane],
                                     move_lanes[lane * n_bits:(lane + 1) * n_bits],
                                     minus_move_lanes[lane * n_bits:(lane + 1) * n_bits]))[:n_bits]
                       for lane, n_lane in enumerate(lane_n)))
        if deep:
            # One assignment for all lanes: move, return to K/2, or keep.
            moving = Cat(*(update[i].replicate(n_bits) for i in range(lanes)))
            halving = Cat(*(to_half[i].replicate(n_bits) for i in range(lanes)))
            m.d.sync += n.eq((n_next & moving) | (Const(n.init, len(n)) & halving)
                             | (n & ~(moving | halving)))
        else:
            with m.If(idle):
                # A start while busy never gets here, so it is ignored.
                with m.If(self.start):
                    m.d.sync += n.eq(n.init)
            with m.Elif(searching & settled):
                # Against the sign: a non-negative readout means too many cells at 1.
                m.d.sync += n.eq(n_next)
        r.lane_n, r.negative, r.deep = lane_n, negative, deep

    def _outputs(self, m, r):
        """COMP, the thermometer code and the range flags of every lane from n."""
        p, lanes = self._p, self._p.cols_per_cycle
        K, n_bits, lane_n, negative, deep = p.comp_rows, r.n_bits, r.lane_n, r.negative, r.deep

        # comp = 2n - K = 2 (n - K/2), bitwise: with n in [0, K] and K = 2^k, n - K/2 is
        # n's low k-1 bits, then ~n[k-1], then the sign ~n[k-1] & ~n[k]. Idle drives the
        # balanced 0 rather than 2n - K, so that the n left over from the previous group
        # never biases the array.
        k = n_bits - 1
        below_half = Signal(lanes, name="below_half")      # n < K/2: ~n[k-1] & ~n[k]
        half_bit = Signal(lanes, name="half_bit")          # ~n[k-1]
        m.d.comb += [
            half_bit.eq(~Cat(*(n_lane[k - 1] for n_lane in lane_n))),
            below_half.eq(half_bit & ~Cat(*(n_lane[k] for n_lane in lane_n))),
        ]
        comp = Cat(*(Cat(Const(0, 1), n_lane[:k - 1], half_bit[lane], below_half[lane])
                     for lane, n_lane in enumerate(lane_n)))
        if deep:
            m.d.comb += self.comp.eq(comp)      # n = K/2 while idle: comp = 0
        else:
            m.d.comb += self.comp.eq(comp & self.busy.replicate(lanes * p.comp_bits))
        # Thermometer code: bits 0..n-1 set, (1 << n) - 1 with the constant a 1-bit operand.
        m.d.comb += self.therm.eq(Cat(*(((Const(1, 1) << n_lane) - Const(1, 1))[:K]
                                        for n_lane in lane_n)))
        # n == 0 is no bit set; n == K is the top bit.
        zero = ~Cat(*(n_lane.any() for n_lane in lane_n))
        top = Cat(*(n_lane[k] for n_lane in lane_n))
        m.d.comb += self.flags.eq((zero & ~negative) | (top & negative))


class _Control:
    """What :class:`CalibrationFSM`'s lanes use of its control (attributes)."""

