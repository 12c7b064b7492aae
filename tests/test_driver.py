"""The host driver (host/driver.py) on the golden model, and the cocotb Wishbone master.

Driver tests run ``MacroDriver`` over ``ModelTransport(MacroModel(p))`` for several
parameter sets and compare with the array functions of ``models.macro`` (which the
driver never calls). The Wishbone master is checked in a cocotb simulation against a
small Verilog RAM slave written below (Icarus; Verilator behind ``slow``).
"""

import asyncio
import shutil

import numpy as np
import pytest

from models.macro import (
    MacroModel, binarize, calibrate as model_calibrate, comp_value, ideal_matvec, run_tile,
    thermometer, word_address,
)
from models.params import CSR, NONIDEALITIES, ErrCode, MacroParams, Status
from host.driver import (
    FeatureError, MacroDriver, MacroError, ProtocolError, RegisterMap,
)
from host.transport import CountingTransport, ModelTransport, Transport

ALL = frozenset(NONIDEALITIES)

PARAMS = {
    "2x3": MacroParams(2, 3),
    "32x96-P12": MacroParams(32, 96, cols_per_cycle=12),
    "64x10-all": MacroParams(64, 10, cols_per_cycle=5, nonideal=ALL),
    "16x7-B8-K2": MacroParams(16, 7, input_bits=8, comp_rows=2, nonideal={"offset", "gain"}),
    "96x33-K16-all": MacroParams(96, 33, comp_rows=16, cols_per_cycle=11, nonideal=ALL),
    "1x1-B1-all": MacroParams(1, 1, input_bits=1, comp_rows=2, nonideal=ALL),
    "5x40-none": MacroParams(5, 40, comp_rows=4, nonideal=()),
}
params = pytest.mark.parametrize("p", PARAMS.values(), ids=PARAMS.keys())


def run(coro):
    return asyncio.run(coro)


async def connect(p, log=False):
    bus = CountingTransport(ModelTransport(MacroModel(p)), log=log)
    return await MacroDriver.connect(bus), bus


def signed_range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def random_nonideal(p, rng):
    """Random values for every built non-ideality, as keyword arguments of run_tile."""
    kw = {}
    W = p.readout_bits
    if p.has("offset"):
        kw["offset"] = rng.integers(-(p.rows + p.comp_rows), p.rows + p.comp_rows + 1, p.cols)
        kw["offset"] = np.clip(kw["offset"], *signed_range(W))
    if p.has("gain"):
        kw["gain"] = rng.integers(0, 256, p.cols)
    if p.has("table"):
        kw["table"] = rng.integers(*signed_range(W), endpoint=True, size=1 << W)
    if p.has("stuck"):
        kw["stuck_mask"] = (rng.random((p.rows, p.cols)) < 0.2).astype(np.uint8)
        kw["stuck_value"] = rng.integers(0, 2, (p.rows, p.cols))
    if p.has("readout"):
        kw["sat"] = int(rng.integers(0, p.readout_max + 1))
        kw["qshift"] = int(rng.integers(0, 4))
    return kw


# --- addresses ------------------------------------------------------------------------

@params
def test_register_map_matches_model_addresses(p, rng):
    """RegisterMap.addr agrees with the model's own word_address on every region."""
    m = RegisterMap(p)
    sizes = m.field_sizes
    for name, region in m.regions.items():
        for _ in range(20):
            fields = {f: int(rng.integers(0, sizes[f])) for f, _ in region["fields"]}
            addr = m.addr(name, **fields)
            assert addr == word_address(p, name, **fields)
            if name != "CSR":
                assert m.describe(addr) == \
                    f"{name}[{', '.join(f'{k}={v}' for k, v in fields.items())}]"
    assert m.describe(m.csr("CMD")) == "CSR CMD"
    with pytest.raises(ValueError, match="group must be in"):
        m.addr("ACC", group=p.groups, slot=0)
    with pytest.raises(TypeError, match="takes the fields"):
        m.addr("ACC", group=0)


# --- connect --------------------------------------------------------------------------

@params
def test_connect_reconstructs_params(p):
    d, bus = run(connect(p))
    assert d.p == p
    assert bus.writes == 0
    assert bus.reads == 13  # ID, VERSION and the eleven parameter CSRs


class FakeCSRTransport(Transport):
    """A model whose CSR reads can be overridden (a broken or foreign device)."""

    def __init__(self, p, overrides):
        self.model = MacroModel(p)
        self.overrides = overrides

    async def read(self, addr):
        if addr in self.overrides:
            return self.overrides[addr]
        return self.model.read(addr)

    async def write(self, addr, data, sel=0xF):
        self.model.write(addr, data, sel)


def test_connect_bad_id():
    bus = FakeCSRTransport(MacroParams(2, 3), {CSR.ID: 0xDEADBEEF})
    with pytest.raises(ProtocolError, match=r"^no CiM macro at this transport: ID reads "
                                            r"0xDEADBEEF, expected 0x43694D31$"):
        run(MacroDriver.connect(bus))


@pytest.mark.parametrize("override, message", [
    ({CSR.VERSION: 2 << 16}, "contract version 2.0, this driver implements 1.3"),
    ({CSR.REGION_SHIFT: 3}, "REGION_SHIFT reads 3"),
    ({CSR.GAIN_FRAC: 6}, "GAIN_FRAC reads 6"),
    ({CSR.FEATURES: 1 << 7}, "FEATURES reads 0x80"),
    ({CSR.ROWS: 33}, "describe no valid macro.*rows must be"),
])
def test_connect_rejects_inconsistent_macro(override, message):
    with pytest.raises(ProtocolError, match=message):
        run(MacroDriver.connect(FakeCSRTransport(MacroParams(32, 3), override)))


def test_connect_to_a_contract_1_0_macro_skips_pipeline():
    """A 1.0 macro has no PIPELINE register: connect must not read it (the read would
    latch a BAD_ADDRESS error in STATUS) and takes L = 0."""
    class Logged(FakeCSRTransport):
        def __init__(self, *args):
            super().__init__(*args)
            self.addrs = []

        async def read(self, addr):
            self.addrs.append(addr)
            return await super().read(addr)

    bus = Logged(MacroParams(2, 3), {CSR.VERSION: 1 << 16})
    d = run(MacroDriver.connect(bus))
    assert d.p == MacroParams(2, 3) and d.p.pipeline == 0
    assert len(bus.addrs) == 12 and CSR.PIPELINE not in bus.addrs
    bus = Logged(MacroParams(2, 3), {CSR.VERSION: 1 << 16 | 1, CSR.PIPELINE: 2})
    assert run(MacroDriver.connect(bus)).p.pipeline == 2
    assert CSR.PIPELINE in bus.addrs


def test_connect_accepts_newer_minor_version():
    d = run(MacroDriver.connect(FakeCSRTransport(MacroParams(2, 3), {CSR.VERSION: 1 << 16 | 7})))
    assert d.p == MacroParams(2, 3)


# --- write / read-back ----------------------------------------------------------------

@params
def test_weight_and_acc_columns(p, rng):
    """write_weights(columns=...) writes those columns only; read_acc(columns) reads them."""
    d, bus = run(connect(p))
    w = rng.integers(0, 2, (p.rows, p.cols)).astype(np.uint8)
    run(d.write_weights(w))
    last_first = [p.cols - 1, 0] if p.cols > 1 else [0]
    for columns in (last_first, range(0, p.cols, 2), slice(1, None, 3)):
        index = np.arange(p.cols)[columns] if isinstance(columns, slice) else np.array(columns)
        if index.size == 0:
            continue
        new = rng.integers(0, 2, (p.rows, index.size)).astype(np.uint8)
        bus.reset()
        run(d.write_weights(new, columns=columns))
        assert bus.writes == index.size * p.chunks
        w[:, index] = new
        assert np.array_equal(run(d.read_weights()), w)
    run(d.matvec(rng.integers(0, 1 << p.input_bits, p.rows)))
    full = run(d.read_acc())
    for columns in (last_first, range(p.cols), slice(None, None, 2)):
        bus.reset()
        got = run(d.read_acc(columns))
        assert np.array_equal(got, full[columns] if isinstance(columns, slice)
                              else full[list(columns)])
        assert bus.reads == got.size



@params
def test_round_trips(p, rng):
    async def body():
        d, _ = await connect(p)
        R, C, K = p.rows, p.cols, p.comp_rows

        w = rng.integers(0, 2, (R, C))
        await d.write_weights(w)
        assert np.array_equal(await d.read_weights(), w)
        await d.write_weights(2 * (1 - w) - 1)          # the ±1 form of the complement
        assert np.array_equal(await d.read_weights(), 1 - w)

        words = rng.integers(0, 1 << K, C)
        await d.write_comp(words)
        assert np.array_equal(await d.read_comp(packed=True), words)
        cells = rng.integers(0, 2, (K, C))
        await d.write_comp(cells)
        assert np.array_equal(await d.read_comp(), cells)

        theta = rng.integers(*signed_range(p.acc_bits), endpoint=True, size=C)
        flip = rng.integers(0, 2, C)
        await d.write_thresholds(theta, flip)
        got_theta, got_flip = await d.read_thresholds()
        assert np.array_equal(got_theta, theta) and np.array_equal(got_flip, flip)

        x = rng.integers(0, 1 << p.input_bits, R)
        await d.write_input(x)
        assert np.array_equal(await d.read_input(), x)
        y = rng.integers(0, 2, R)
        await d.write_input_bits(y)  # replaces plane 0 only
        assert np.array_equal(await d.read_input(), (x & ~1) | y)

        kw = random_nonideal(p, rng)
        await d.write_nonidealities(**kw)
        if p.has("offset"):
            assert np.array_equal(await d.read_offsets(), kw["offset"])
        if p.has("gain"):
            assert np.array_equal(await d.read_gains(), kw["gain"])
        if p.has("table"):
            assert np.array_equal(await d.read_table(), kw["table"])
        if p.has("stuck"):
            mask, value = await d.read_stuck()
            assert np.array_equal(mask, kw["stuck_mask"])
            assert np.array_equal(value, kw["stuck_value"])
        if p.has("readout"):
            assert await d.read_readout() == dict(sat=kw["sat"], qshift=kw["qshift"])
            await d.set_readout(qshift=1)                 # sat=None leaves SAT alone
            assert await d.read_readout() == dict(sat=kw["sat"], qshift=1)
        assert not (await d.status())["error"]
    run(body())


def test_weight_word_layout():
    """Bit i of WEIGHT word (group, slot, chunk) is row 32*chunk+i of column P*group+slot."""
    p = MacroParams(64, 6, cols_per_cycle=3)
    w = np.zeros((64, 6), dtype=np.uint8)
    w[33, 4] = 1                                      # chunk 1, bit 1; group 1, slot 1
    d, bus = run(connect(p, log=True))
    bus.reset()
    run(d.write_weights(w))
    written = {a: v for kind, a, v, *_ in bus.accesses if kind == "w"}
    addr = word_address(p, "WEIGHT", group=1, slot=1, chunk=1)
    assert written.pop(addr) == 1 << 1
    assert set(written.values()) == {0}
    assert len(written) == 6 * 2 - 1


# --- commands against the model's array functions -------------------------------------

@params
def test_run_ideal_equals_matvec(p, rng):
    """With every non-ideality at reset and balanced comp, ACC is the ideal mat-vec."""
    async def body():
        d, _ = await connect(p)
        w = rng.integers(0, 2, (p.rows, p.cols))
        await d.write_weights(w)
        for planes in sorted({1, p.input_bits, int(rng.integers(1, p.input_bits + 1))}):
            x = rng.integers(0, 1 << planes, p.rows)
            acc = await d.matvec(x, planes=planes)
            assert np.array_equal(acc, ideal_matvec(p, x, w))
            assert d.last_cycles == p.run_cycles(planes)
        y = rng.integers(0, 2, p.rows)
        assert np.array_equal(await d.matvec_bits(y), ideal_matvec(p, y, w))
    run(body())


@params
def test_run_with_nonidealities_equals_run_tile(p, rng):
    """Random comp, non-idealities, thresholds; RUN, ACCUMULATE, OUT, CLEAR."""
    async def body():
        d, _ = await connect(p)
        w = rng.integers(0, 2, (p.rows, p.cols))
        comp = rng.integers(0, 1 << p.comp_rows, p.cols)
        kw = random_nonideal(p, rng)
        theta = rng.integers(-50, 50, p.cols)
        flip = rng.integers(0, 2, p.cols)
        await d.write_weights(w)
        await d.write_comp(comp)
        await d.write_nonidealities(**kw)
        await d.write_thresholds(theta, flip)
        acc = np.zeros(p.cols, dtype=np.int64)
        for accumulate in (False, True, True):
            planes = int(rng.integers(1, p.input_bits + 1))
            x = rng.integers(0, 1 << planes, p.rows)
            await d.write_input(x, planes=planes)
            cycles = await d.run(planes=planes, accumulate=accumulate)
            acc, _ = run_tile(p, x, w, comp_value(p, comp), planes=planes, acc_prev=acc,
                              accumulate=accumulate, **kw)
            assert cycles == p.run_cycles(planes)
            assert np.array_equal(await d.read_acc(), acc)
            assert np.array_equal(await d.read_out(), binarize(acc, theta, flip))
        assert await d.clear() == p.clear_cycles()
        assert not (await d.read_acc()).any() and not (await d.read_out()).any()
    run(body())


def test_acc_saturation_flag():
    p = MacroParams(32, 4, input_bits=8, acc_bits=15, comp_rows=2)
    async def body():
        d, _ = await connect(p)
        await d.write_weights(np.ones((32, 4)))
        x = np.full(32, 255)
        assert ((await d.matvec(x)) == 32 * 255).all()
        assert ((await d.matvec(x, accumulate=True)) == 2 * 32 * 255).all()
        assert not (await d.status())["acc_sat"]
        acc = await d.matvec(x, accumulate=True)
        assert (acc == 2 ** 14 - 1).all()            # 3 * 32 * 255 saturates at 2^14 - 1
        assert (await d.status())["acc_sat"]
        await d.clear_errors()
        assert not (await d.status())["acc_sat"]
    run(body())


@pytest.mark.parametrize("p", [PARAMS["32x96-P12"], PARAMS["16x7-B8-K2"],
                                PARAMS["96x33-K16-all"], MacroParams(8, 50, comp_rows=32)],
                         ids=["K8", "K2", "K16", "K32"])
def test_calibrate_residual(p, rng):
    """Section 4: offsets in [-K, K-1] end within [-2, 1] with CALFLAG 0; others flag 1."""
    K = p.comp_rows
    async def body():
        d, _ = await connect(p)
        inside = rng.integers(-K, K, p.cols)
        await d.write_offsets(inside)
        assert await d.calibrate() == p.calibrate_cycles()
        n = (await d.read_comp()).sum(axis=0)
        assert np.array_equal(await d.read_comp(packed=True), thermometer(p, n))
        residual = inside + 2 * n - K
        assert residual.min() >= -2 and residual.max() <= 1, residual
        assert not (await d.read_calflags()).any()
        assert not (await d.status())["cal_range"]

        M = p.readout_max
        outside = np.where(rng.integers(0, 2, p.cols) == 1,
                           rng.integers(K, M + 1, p.cols), rng.integers(-M, -K, p.cols))
        await d.write_offsets(outside)
        await d.calibrate()
        assert (await d.read_calflags()).all()
        assert (await d.status())["cal_range"]
        n_model, _, _ = model_calibrate(p, offset=outside)
        assert np.array_equal((await d.read_comp()).sum(axis=0), n_model)
    run(body())


# --- argument checks: nothing reaches the bus -----------------------------------------

def bad_calls(p):
    R, C, B, W, A, M = p.rows, p.cols, p.input_bits, p.readout_bits, p.acc_bits, p.readout_max
    z = np.zeros
    return [
        (lambda d: d.write_weights(np.full((R, C), 2)), ValueError, r"weights\[0, 0\] = 2"),
        (lambda d: d.write_weights(z((R, C + 1))), ValueError, r"shape"),
        (lambda d: d.write_weights(z((R, 2)), columns=[1, 1]), ValueError,
         r"columns must be distinct, not \[1, 1\]"),
        (lambda d: d.write_weights(z((R, 2)), columns=[0, C]), ValueError,
         rf"columns holds {C}; the macro's columns are 0..{C - 1}"),
        (lambda d: d.write_weights(z((R, 3)), columns=[0, 1]), ValueError,
         rf"weights must have shape \({R}, 2\)"),
        (lambda d: d.read_acc(columns=[]), ValueError, r"columns must be a non-empty 1-D"),
        (lambda d: d.read_acc(columns=[0.5]), TypeError, r"columns must hold integers"),
        (lambda d: d.write_comp(np.full(C, 1 << p.comp_rows)), ValueError,
         rf"comp\[0\] = {1 << p.comp_rows} is out of range.*0..{(1 << p.comp_rows) - 1}"),
        (lambda d: d.write_comp(np.full((p.comp_rows, C), 2)), ValueError, r"comp\[0, 0\] = 2"),
        (lambda d: d.write_thresholds(np.full(C, 1 << (A - 1))), ValueError,
         rf"theta\[0\] = {1 << (A - 1)} is out of range: THRESH \(signed {A} bits\) "
         rf"allows {-(1 << (A - 1))}..{(1 << (A - 1)) - 1}"),
        (lambda d: d.write_thresholds(z(C), np.full(C, 2)), ValueError, r"flip\[0\] = 2"),
        (lambda d: d.write_input(np.full(R, 1 << B)), ValueError,
         rf"x\[0\] = {1 << B} is out of range: a {B}-bit input allows 0..{(1 << B) - 1}"),
        (lambda d: d.write_input(np.full(R, -1)), ValueError, r"x\[0\] = -1"),
        (lambda d: d.write_input(np.full(R, 0.5)), ValueError, r"not a whole number"),
        (lambda d: d.write_input(z(R), planes=0), ValueError, rf"planes must be in \[1, {B}\]"),
        (lambda d: d.write_input_bits(np.full(R, 2)), ValueError, r"y\[0\] = 2"),
        (lambda d: d.run(planes=B + 1), ValueError, rf"planes must be in \[1, {B}\], not {B + 1}"),
        (lambda d: d.run(accumulate=1), TypeError, r"accumulate must be a bool"),
        (lambda d: d.matvec(np.full(R, 2), planes=1), ValueError, r"x\[0\] = 2"),
        (lambda d: d.write_offsets(np.full(C, 1 << (W - 1))), ValueError,
         rf"offsets\[0\] = {1 << (W - 1)} is out of range: OFFSET \(signed {W} bits\)"),
        (lambda d: d.write_gains(np.full(C, 256)), ValueError,
         r"gains\[0\] = 256 is out of range: GAIN \(unsigned 8 bits, 64 = 1.0\) allows 0..255"),
        (lambda d: d.write_gains(np.full(C, -1)), ValueError, r"gains\[0\] = -1"),
        (lambda d: d.write_table(np.full(1 << W, -(1 << (W - 1)) - 1)), ValueError,
         r"table\[0\]"),
        (lambda d: d.write_stuck(np.full((R, C), 2), z((R, C))), ValueError, r"mask\[0, 0\] = 2"),
        (lambda d: d.write_stuck(z((R, C)), np.full((R, C), 3)), ValueError, r"value\[0, 0\] = 3"),
        (lambda d: d.set_readout(sat=M + 1), ValueError,
         rf"sat = {M + 1} is out of range: SAT \(readout_max M = {M}\) allows 0..{M}"),
        (lambda d: d.set_readout(sat=0, qshift=16), ValueError,
         r"qshift = 16 is out of range: QSHIFT \(4 bits\) allows 0..15"),
    ]


def test_bad_arguments_raise_before_bus_traffic():
    p = MacroParams(64, 9, input_bits=3, cols_per_cycle=3, nonideal=ALL)
    d, bus = run(connect(p))
    for call, error, message in bad_calls(p):
        bus.reset()
        with pytest.raises(error, match=message):
            run(call(d))
        assert bus.total == 0, message


@pytest.mark.parametrize("feature", NONIDEALITIES)
def test_missing_feature_raises_before_bus_traffic(feature):
    p = MacroParams(8, 4, nonideal=ALL - {feature})
    d, bus = run(connect(p))
    bus.reset()
    calls = {
        "offset": [lambda: d.write_offsets(np.zeros(4)), d.read_offsets],
        "gain": [lambda: d.write_gains(np.zeros(4)), d.read_gains],
        "readout": [lambda: d.set_readout(sat=1), d.read_readout],
        "table": [lambda: d.write_table(np.zeros(1 << p.readout_bits)), d.read_table],
        "stuck": [lambda: d.write_stuck(np.zeros((8, 4)), np.zeros((8, 4))), d.read_stuck],
    }[feature]
    # The whole-chip loader checks every given register before writing any: the
    # offsets it could write come first, yet nothing reaches the bus.
    given = dict(offset=np.zeros(4), gain=np.zeros(4), sat=1, qshift=0,
                 table=np.zeros(1 << p.readout_bits), stuck_mask=np.zeros((8, 4)),
                 stuck_value=np.zeros((8, 4)))
    calls.append(lambda: d.write_nonidealities(**given))
    for call in calls:
        with pytest.raises(FeatureError, match=f"needs the '{feature}' non-ideality"):
            run(call())
    assert bus.total == 0


def test_write_nonidealities_wants_stuck_mask_and_value_together():
    d, bus = run(connect(MacroParams(8, 4, nonideal=ALL)))
    bus.reset()
    with pytest.raises(ValueError, match="stuck_mask and stuck_value must be given together"):
        run(d.write_nonidealities(offset=np.zeros(4), stuck_mask=np.zeros((8, 4))))
    assert bus.total == 0


# --- faults reported by the macro -----------------------------------------------------

class BusyForever(Transport):
    """A model that accepts commands but whose STATUS says busy forever."""

    def __init__(self, p):
        self.model = MacroModel(p)
        self.status_reads = 0

    async def read(self, addr):
        value = self.model.read(addr)
        if addr == CSR.STATUS:
            self.status_reads += 1
            value |= 1 << Status.BUSY
        return value

    async def write(self, addr, data, sel=0xF):
        self.model.write(addr, data, sel)


@pytest.mark.parametrize("command, name, cycles", [
    (lambda d: d.run(planes=2), r"RUN \(planes=2, accumulate=False\)", lambda p: p.run_cycles(2)),
    (lambda d: d.calibrate(), "CALIBRATE", lambda p: p.calibrate_cycles()),
    (lambda d: d.clear(), "CLEAR", lambda p: p.clear_cycles()),
])
def test_command_that_never_finishes_times_out(command, name, cycles):
    p = MacroParams(32, 12, cols_per_cycle=4)
    bus = BusyForever(p)
    d = run(MacroDriver.connect(bus))
    with pytest.raises(TimeoutError, match=rf"{name} still BUSY after {cycles(p) + d.poll_slack} "
                                           rf"STATUS polls; the contract says it takes "
                                           rf"{cycles(p)} cycles"):
        run(command(d))
    assert bus.status_reads == cycles(p) + d.poll_slack


def test_stale_error_is_reported_with_its_address_and_cleared():
    p = MacroParams(32, 12, cols_per_cycle=4)
    async def body():
        d, _ = await connect(p)
        acc3 = d.map.addr("ACC", group=0, slot=3)
        await d.write(acc3, 1)                    # READ_ONLY, not checked by a raw write
        assert await d.read_error() == ("READ_ONLY", acc3)
        with pytest.raises(MacroError, match=r"RUN \(planes=5, accumulate=False\): the macro "
                                             r"reports READ_ONLY \(ERRCODE 2\) at word address "
                                             rf"{acc3:#x} \(ACC\[group=0, slot=3\]\)") as e:
            await d.run()
        assert (e.value.code, e.value.addr) == (ErrCode.READ_ONLY, acc3)
        assert await d.read_error() is None        # the driver cleared it after reading it
        await d.run()
    run(body())


class BadSelOn(Transport):
    """Writes to one region go out with a bad byte select (a broken bus bridge)."""

    def __init__(self, p, region):
        self.model = MacroModel(p)
        self.region = region
        self.shift = p.region_shift

    async def read(self, addr):
        return self.model.read(addr)

    async def write(self, addr, data, sel=0xF):
        self.model.write(addr, data, 0x3 if addr >> self.shift == self.region else sel)


def test_write_faults_raise_macro_error():
    p = MacroParams(64, 6, cols_per_cycle=2)
    d = MacroDriver(BadSelOn(p, 1), p)  # region 1: WEIGHT
    first = d.map.addr("WEIGHT", group=0, slot=0, chunk=0)
    with pytest.raises(MacroError, match=rf"write_weights: the macro reports BAD_SEL \(ERRCODE 5\)"
                                         rf" at word address {first:#x} "
                                         rf"\(WEIGHT\[group=0, slot=0, chunk=0\]\)"):
        run(d.write_weights(np.ones((64, 6))))
    run(d.write_thresholds(np.zeros(6)))     # other regions work; the error was cleared


def test_bad_command_word_reports_bad_command():
    p = MacroParams(4, 4)
    async def body():
        d, _ = await connect(p)
        await d.write_csr("CMD", 7)
        assert await d.read_error() == ("BAD_COMMAND", d.map.csr("CMD"))
        await d.clear_errors()
        assert await d.status() == dict(busy=False, done=False, error=False, cal_range=False,
                                        acc_sat=False)
    run(body())


def test_sign_extension_fault_is_detected():
    """A word that is no sign extension of an A-bit value is a protocol fault."""
    p = MacroParams(4, 2)
    model = MacroModel(p)
    acc0 = word_address(p, "ACC", group=0, slot=0)

    class BrokenAcc(ModelTransport):
        async def read(self, addr):
            return 1 << (p.acc_bits + 1) if addr == acc0 else await super().read(addr)

    d = MacroDriver(BrokenAcc(model), p)
    with pytest.raises(ProtocolError, match=r"ACC word 0 reads 0x00000*\w+, which is not the "
                                            rf"sign extension of a {p.acc_bits}-bit value"):
        run(d.read_acc())


# --- the cocotb Wishbone master -------------------------------------------------------

WB_RAM = """\
// Wishbone B4 classic RAM: ack exactly one cycle after cyc & stb (the contract's timing).
// mute: never ack. twice: ack every cycle stb is high (a slave that acks twice).
module wb_ram (
    input clk,
    input [5:0] wb__adr, input [31:0] wb__dat_w, output reg [31:0] wb__dat_r,
    input [3:0] wb__sel, input wb__cyc, input wb__stb, input wb__we, output reg wb__ack,
    input mute, input twice
);
    reg [31:0] mem [0:63];
    wire [31:0] mask = {{8{wb__sel[3]}}, {8{wb__sel[2]}}, {8{wb__sel[1]}}, {8{wb__sel[0]}}};
    wire start = wb__cyc & wb__stb & (twice | ~wb__ack) & ~mute;
    integer i;
    initial begin
        wb__ack = 0;
        wb__dat_r = 0;
        for (i = 0; i < 64; i = i + 1) mem[i] = 0;
    end
    always @(posedge clk) begin
        wb__ack <= start;
        if (start) begin
            wb__dat_r <= mem[wb__adr];
            if (wb__we) mem[wb__adr] <= (mem[wb__adr] & ~mask) | (wb__dat_w & mask);
        end
    end
endmodule
"""

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import RisingEdge, Timer
except ImportError:  # pragma: no cover - cocotb is a pinned dependency
    cocotb = None

if cocotb is not None:
    async def _start(dut, mute=0, twice=0):
        from verif.wishbone_master import CocotbWishboneTransport
        dut.mute.value = mute
        dut.twice.value = twice
        bus = CocotbWishboneTransport.from_dut(dut, timeout_cycles=20)  # drives the bus idle
        Clock(dut.clk, 10, unit="ns").start(start_high=False)
        await RisingEdge(dut.clk)                 # ack leaves its initial state
        return bus

    @cocotb.test()
    async def wb_master_round_trip(dut):
        import random
        rng = random.Random(int(cocotb.RANDOM_SEED))
        bus = await _start(dut)
        ref = [0] * 64
        start = get_sim_time("ns")
        accesses = 0
        for _ in range(300):
            addr = rng.randrange(64)
            if rng.random() < 0.5:
                data, sel = rng.getrandbits(32), rng.choice([0xF, 0xF, 0x1, 0x6, 0x8, 0x0])
                await bus.write(addr, data, sel)
                mask = sum(0xFF << 8 * i for i in range(4) if sel >> i & 1)
                ref[addr] = (ref[addr] & ~mask) | (data & mask)
            else:
                got = await bus.read(addr)
                assert got == ref[addr], (addr, hex(got), hex(ref[addr]))
            accesses += 1
        # Back to back, every access takes exactly two cycles and ack comes one cycle late.
        assert get_sim_time("ns") - start == 20 * accesses
        assert bus.max_latency == 1 and bus.reads + bus.writes == accesses
        assert await bus.read_burst([3, 4]) == ref[3:5]

        # The driver runs in the cocotb scheduler too; a RAM is no macro.
        from host.driver import MacroDriver, ProtocolError
        try:
            await MacroDriver.connect(bus)
        except ProtocolError as e:
            assert str(e).startswith("no CiM macro at this transport: ID reads 0x")
        else:
            raise AssertionError("a RAM was taken for a macro")

    @cocotb.test()
    async def wb_master_timeout(dut):
        from verif.wishbone_master import WishboneTimeout
        bus = await _start(dut, mute=1)
        start = get_sim_time("ns")
        try:
            await bus.read(5)
        except WishboneTimeout as e:
            assert "no Wishbone ack within 20 cycles for the read of 0x5" in str(e), str(e)
        else:
            raise AssertionError("no timeout")
        assert get_sim_time("ns") - start == 200
        await Timer(1, unit="ns")                 # let the idle writes land
        assert dut.wb__stb.value == 0 and dut.wb__cyc.value == 0

    @cocotb.test()
    async def wb_master_double_ack(dut):
        from verif.wishbone_master import WishboneProtocolError
        bus = await _start(dut, twice=1)
        await bus.write(1, 5)
        try:
            await bus.write(2, 6)
        except WishboneProtocolError as e:
            assert "acknowledged an earlier access twice" in str(e), str(e)
        else:
            raise AssertionError("a double ack went unnoticed")


def _run_wb_master(simulator, tmp_path):
    from cocotb_tools.runner import get_runner
    src = tmp_path / "wb_ram.v"
    src.write_text(WB_RAM)
    runner = get_runner(simulator)
    runner.build(sources=[src], hdl_toplevel="wb_ram", build_dir=tmp_path / "build",
                 timescale=("1ns", "1ps"))
    results = runner.test(test_module="tests.test_driver", hdl_toplevel="wb_ram",
                          build_dir=tmp_path / "build", test_dir=tmp_path,
                          testcase=["wb_master_round_trip", "wb_master_timeout",
                                    "wb_master_double_ack"])
    from cocotb_tools.check_results import get_results
    total, failed = get_results(results)
    assert (total, failed) == (3, 0)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_wishbone_master_icarus(tmp_path):
    _run_wb_master("icarus", tmp_path)


@pytest.mark.slow
def test_wishbone_master_verilator(tmp_path):
    from verif.toolchain import apply_tool_env
    apply_tool_env()
    _run_wb_master("verilator", tmp_path)


@pytest.mark.parametrize("kw", [dict(rows=8, cols=6), dict(rows=12, cols=8, cols_per_cycle=4,
                                                            comp_rows=4, pipeline=4)])
def test_counters_read_the_events_of_the_commands_and_accesses(kw, seed, rng):
    """read_counters equals the contract's per-command counts and the transport's own count
    of the accesses since clear_counters (the clear itself and the BUS_ACCESSES read not
    counted)."""
    p = MacroParams(**kw, counters=True)

    async def go():
        d, bus = await connect(p)
        await d.write_weights(rng.integers(0, 2, size=(p.rows, p.cols)))
        await d.clear_counters()
        before = bus.total
        await d.write_input(rng.integers(0, 1 << p.input_bits, size=p.rows))
        await d.run(planes=3)
        await d.calibrate()
        counts = await d.read_counters()
        return counts, bus.total - before - 1

    counts, accesses = run(go())
    G, S = p.groups, p.comp_steps
    assert counts == dict(plane_operations=G * 3, calibration_reads=G * (S + 1),
                          column_conversions=p.cols * 3 + p.cols * (S + 1),
                          bus_accesses=accesses)


def test_counters_need_a_macro_built_with_them():
    async def go():
        d, _ = await connect(MacroParams(rows=4, cols=3))
        for call in (d.read_counters, d.clear_counters):
            with pytest.raises(FeatureError, match=r"needs the activity counters, .*--counters"):
                await call()
    run(go())


def test_errcode_names_cover_the_engine():
    """The macro inside an engine is driven by MacroDriver, which may see the engine's
    codes: every code of both has its name, anything else is UNKNOWN(n)."""
    from host.driver import errcode_name
    from models.params import EngineErrCode, ErrCode

    for cls in (ErrCode, EngineErrCode):
        for name, value in vars(cls).items():
            if name.isupper() and isinstance(value, int):
                assert errcode_name(value) == name
    assert errcode_name(99) == "UNKNOWN(99)"
