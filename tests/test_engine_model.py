"""The network engine's golden model (models/engine.py, docs/ENGINE.md).

References, all independent of the engine: today's path, ``host.network.run_network``
over the host driver on ``ModelTransport(MacroModel(p))`` (one physical macro, weights
swapped by bus writes, the same non-ideality registers, CALIBRATE and
``measure_residual``), ``models.export.infer_folded`` on ideal hardware, and the closed
forms of ``models.energy`` for the macro's events.
"""

import asyncio

import numpy as np
import pytest

from models import engine as E
from models.bnn import BNN, TrainConfig, train
from models.datasets import load_dataset
from models.energy import EVENTS, command_events
from models.export import (FoldedLayer, FoldedNet, export_model, infer_folded, load_folded,
                           save_folded)
from models.macro import MacroModel
from models.params import NONIDEALITIES, MacroParams
from host.driver import MacroDriver
from host.network import measure_residual, run_network
from host.transport import ModelTransport

from .random_nets import random_net

ALL = frozenset(NONIDEALITIES)
#: Events of a RUN command (the rest are bus accesses and other commands).
RUN_EVENTS = ("run_commands", "plane_operations", "column_conversions", "bitline_evaluations",
              "data_wordline_activations", "comp_wordline_activations",
              "shift_accumulate_ops", "binarize_ops", "busy_cycles")


def random_registers(rng, p):
    """Random non-ideality registers of every non-ideality ``p`` builds, kept mild enough
    that the network still computes something (both outputs occur)."""
    W, M = p.readout_bits, p.readout_max
    regs = {}
    if p.has("offset"):
        limit = min(6, max(1, p.rows // 8))            # a few cells, less on small arrays
        regs["offset"] = rng.integers(-limit, limit + 1, p.cols)
    if p.has("gain"):
        regs["gain"] = rng.integers(52, 77, p.cols)
    if p.has("readout"):
        regs["sat"] = int(rng.integers(M // 2, M + 1))
        regs["qshift"] = int(rng.integers(0, 2))
    if p.has("table"):
        index = np.arange(1 << W)
        table = np.where(index >= 1 << (W - 1), index - (1 << W), index)
        bent = rng.random(1 << W) < 0.1
        table = np.clip(table + bent * rng.integers(-2, 3, 1 << W), -(1 << (W - 1)), M)
        regs["table"] = table
    if p.has("stuck"):
        regs["stuck_mask"] = (rng.random((p.rows, p.cols)) < 0.03).astype(np.uint8)
        regs["stuck_value"] = rng.integers(0, 2, (p.rows, p.cols))
    return regs


async def _runner(p, net, images, regs, calibrate):
    """Today's path: the host runner over the register model. Returns predictions, the
    last layer's ACC (trimmed when calibrated), the residual and the RUN events."""
    model = MacroModel(p)
    d = await MacroDriver.connect(ModelTransport(model))
    await d.write_nonidealities(**regs)
    residual = None
    if calibrate:
        await d.calibrate()
        residual = await measure_residual(d)
    before = model.events.as_dict()
    pred, trace = await run_network(d, net, images, residual=residual, return_trace=True)
    after = model.events.as_dict()
    return pred, trace[-1]["acc"], residual, {k: after[k] - before[k] for k in RUN_EVENTS}


def runner(p, net, images, regs=None, calibrate=False):
    return asyncio.run(_runner(p, net, images, regs or {}, calibrate))


def engine_for(net, p, regs=None, calibrate=False, image_slots=64):
    """An engine sized for ``net`` with the chip ``regs``; calibrated and trimmed when
    asked. Returns the engine and the residual."""
    eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=image_slots))
    eng.set_nonideal(**(regs or {}))
    residual = None
    if calibrate:
        eng.calibrate()
        residual = eng.measure_residual()
    eng.load(net, residual=residual)
    return eng, residual


def summed_run_events(eng):
    total = dict.fromkeys(RUN_EVENTS, 0)
    for ev in eng.image_events:
        for k in RUN_EVENTS:
            total[k] += ev[k]
    return total


# --- equal to today's path ----------------------------------------------------------------

@pytest.mark.parametrize("sizes, p, calibrate", [
    ((70, 30, 20, 5), MacroParams(32, 12, cols_per_cycle=4, nonideal=ALL), True),
    ((20, 9, 4), MacroParams(8, 8, input_bits=3, comp_rows=2, nonideal=ALL), False),
    ((64, 10, 3), MacroParams(64, 10, pipeline=2), True),
    ((5, 40, 7), MacroParams(32, 40, input_bits=6, cols_per_cycle=8, nonideal=ALL), True),
    ((100, 96, 96, 10), MacroParams(32, 96, nonideal={"offset", "readout", "gain"}), True),
], ids=["70-30-20-5@32x12-all-cal", "20-9-4@8x8-all", "64-10-3@64x10-L2-cal",
        "5-40-7@32x40-all-cal", "100-96-96-10@32x96-cal"])
def test_random_networks_equal_the_host_runner(sizes, p, calibrate, rng):
    """Random sizes, weights, thresholds, flips and chip registers: predictions, the last
    layer's (trimmed) ACC and the RUN events equal the host runner's on the register
    model, image for image."""
    net = random_net(rng, sizes, min(p.input_bits, 5), p.rows, p.cols)
    images = rng.integers(0, 1 << net.layers[0].planes, (24, sizes[0]))
    regs = random_registers(rng, p)
    want, want_scores, want_r, want_events = runner(p, net, images, regs, calibrate)
    eng, residual = engine_for(net, p, regs, calibrate, image_slots=10)
    got = eng.classify(images)
    assert np.array_equal(got, want)
    assert np.array_equal(eng.scores, want_scores)
    if calibrate:
        assert np.array_equal(residual, want_r)
        shift = E.trim_shift(p, net.layers[-1].row_tiles, net.layers[-1].planes, residual)
        cols = np.arange(net.classes) % p.cols
        assert np.array_equal(eng.acc - shift[cols], eng.scores)
    else:
        assert np.array_equal(eng.acc, eng.scores)
    assert summed_run_events(eng) == want_events
    # Scores alike for every image would make the comparison weak.
    assert len(np.unique(want_scores, axis=0)) > 1


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """The digits network of the fast recipe (64-96-96-10, 6 epochs) exported for the
    32x96 macro and saved as a model file, with the validation images."""
    data = load_dataset("digits", seed=0)
    model = BNN((64, 96, 96, 10), seed=0)
    train(model, data.x_train, data.y_train, config=TrainConfig(epochs=6, seed=0))
    net = export_model(model, 32, 96)
    path = tmp_path_factory.mktemp("engine") / "digits"
    save_folded(net, path)
    return path, data.x_val.astype(np.int64), data.y_val


def test_trained_digits_ideal_equals_infer_folded_and_the_runner(digits_model):
    """The model file as ``models eval --model`` reads it, 200 images, ideal macro."""
    path, x, y = digits_model
    x = x[:200]
    p = MacroParams(32, 96)
    eng = E.EngineModel(E.EngineParams.for_model(load_folded(path), p, image_slots=200))
    eng.load(path)
    got = eng.classify(x)
    net = load_folded(path)
    want, trace = infer_folded(net, x, acc_bits=p.acc_bits, return_trace=True)
    assert np.array_equal(got, want)
    assert np.array_equal(eng.acc, trace[-1]["acc"])
    assert np.mean(got == y[:200]) > 0.85
    pred, scores, _, events = runner(p, net, x)
    assert np.array_equal(got, pred) and np.array_equal(eng.scores, scores)
    assert summed_run_events(eng) == events


def test_trained_digits_on_a_calibrated_chip_equals_the_runner(digits_model, seed):
    """A sampled chip (comparator offsets of sigma 4 cells, gain, readout): CALIBRATE, the
    trim, 200 images; identical to the runner doing the same on the register model."""
    from models.chip import ChipConfig, chip_to_rtl, sample_chip

    path, x, _ = digits_model
    x = x[200:400]
    p = MacroParams(32, 96, nonideal={"offset", "gain", "readout"})
    net = load_folded(path)
    chip = sample_chip(ChipConfig(offset_sigma=4.0, cell_sigma=0.05), seed, p.rows, p.cols,
                       p.comp_rows)
    regs = {k: v for k, v in chip_to_rtl(chip, p, strict=False).items() if v is not None}
    want, want_scores, want_r, _ = runner(p, net, x, regs, calibrate=True)
    eng, residual = engine_for(net, p, regs, calibrate=True, image_slots=128)
    assert np.any(residual != 0) and np.array_equal(residual, want_r)
    assert np.array_equal(eng.classify(x), want)
    assert np.array_equal(eng.scores, want_scores)


# --- capacity and bad input ---------------------------------------------------------------

M3296 = MacroParams(32, 96)


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(weight_banks=0), ValueError, r"weight_banks must be an integer in \[1, 4096\], not 0"),
    (dict(weight_banks=4097), ValueError, r"weight_banks must be an integer in \[1, 4096\], not 4097"),
    (dict(layers=65), ValueError, r"layers must be an integer in \[1, 64\], not 65"),
    (dict(image_slots=0), ValueError, r"image_slots must be an integer in \[1, 65536\], not 0"),
    (dict(max_width=65537), ValueError, r"max_width must be an integer in \[1, 65536\], not 65537"),
    (dict(layers=2.0), TypeError, r"layers must be an integer, not 2.0"),
    (dict(weight_banks=True), TypeError, r"weight_banks must be an integer, not True"),
    (dict(macro=(32, 96)), TypeError, r"macro must be a MacroParams, not \(32, 96\)"),
])
def test_engine_params_are_validated(kwargs, exc, message):
    args = dict(macro=M3296, weight_banks=10, layers=3, image_slots=8, max_width=100)
    with pytest.raises(exc, match=f"^{message}$"):
        E.EngineParams(**{**args, **kwargs})


@pytest.fixture(scope="module")
def mnist_shaped():
    """A random 100-96-96-10 net on the 32x96 macro (needs 10 banks, 3 layers, width 100,
    and 13 ACC bits: neuron 0 of the first layer has every weight +1)."""
    net = random_net(np.random.default_rng(5), (100, 96, 96, 10), 5, 32, 96)
    w = net.layers[0].weights                                 # (4, 1, 32, 96)
    column = w[:, 0, :, 0].reshape(-1)
    column[:100] = 1                                          # real rows only
    w[:, 0, :, 0] = column.reshape(4, 32)
    net.layers[0].acc_max = 31 * 100
    assert net.min_acc_bits == 13
    return net


@pytest.mark.parametrize("engine, message", [
    (dict(weight_banks=9), "the model needs 10 weight banks, the engine has 9"),
    (dict(layers=2), "the model has 3 layers, the engine's program holds 2"),
    (dict(max_width=99), "layer 0 has 100 inputs, the engine's max_width is 99"),
    (dict(macro=MacroParams(32, 64)),
     "the model is mapped for a 32x96 macro, the engine's macro is 32x64"),
    (dict(macro=MacroParams(32, 96, input_bits=4)),
     r"the model's images have 5 input bits, the engine's macro takes at most 4 \(input_bits\)"),
    (dict(macro=MacroParams(32, 96, acc_bits=12)),
     "the model needs acc_bits >= 13, the engine's macro has 12"),
])
def test_capacity_errors_name_the_value_and_the_limit(mnist_shaped, engine, message):
    args = dict(macro=M3296, weight_banks=10, layers=3, image_slots=8, max_width=100)
    params = E.EngineParams(**{**args, **engine})
    assert E.EngineParams.for_model(mnist_shaped, M3296, image_slots=8) == E.EngineParams(**args)
    problems = params.misfits(mnist_shaped)
    assert len(problems) == 1 and "\n" not in problems[0]
    with pytest.raises(ValueError, match=f"^{message}$"):
        params.check_fits(mnist_shaped)
    eng = E.EngineModel(params)
    with pytest.raises(ValueError, match=f"^{message}$"):
        eng.load(mnist_shaped)
    assert eng.program is None


def test_a_program_beyond_capacity_and_bad_images_are_refused(mnist_shaped, rng):
    program = E.build_program(mnist_shaped, M3296)
    small = E.EngineModel(E.EngineParams(M3296, 9, 3, 4, 100))
    with pytest.raises(ValueError, match=r"^the program needs weight_banks = 10, the engine has 9$"):
        small.load(program)
    other = E.EngineModel(E.EngineParams(MacroParams(32, 96, pipeline=1), 10, 3, 4, 100))
    with pytest.raises(ValueError, match="built for another macro"):
        other.load(program)
    eng = E.EngineModel(E.EngineParams(M3296, 10, 3, 4, 100))
    with pytest.raises(ValueError, match=r"no network program is loaded"):
        eng.write_images(np.zeros((1, 100), int))
    eng.load(program)
    for images, exc, message in [
        (np.zeros((5, 100), int), ValueError, "^5 images do not fit the image buffer of 4 slots$"),
        (np.full((1, 100), 32), ValueError, r"^images must be in 0..31 \(5-bit inputs\), not values in 32..32$"),
        (np.zeros((1, 99), int), ValueError, r"^images must have shape \(N, 100\), not \(1, 99\)$"),
        (np.zeros((1, 100)), TypeError, "^images must hold integers, not float64$"),
    ]:
        with pytest.raises(exc, match=message):
            eng.write_images(images)
    assert eng.loaded == 0
    eng.write_images(rng.integers(0, 32, (3, 100)))
    with pytest.raises(ValueError, match=r"^count must be in \[0, 3\] \(images written\), not 4$"):
        eng.run(4)


def test_trim_out_of_range_is_refused(rng):
    p = MacroParams(32, 12, cols_per_cycle=4)
    net = random_net(rng, (70, 30, 20, 5), 5, p.rows, p.cols)
    top = (1 << (p.acc_bits - 1)) - 1
    net.layers[0].thresh[0, 1] = top - 3 * 31 + 1
    with pytest.raises(ValueError, match=f"^the trimmed threshold of neuron 1 of layer 0 is "
                                         f"{top + 1}, outside THRESH's signed 16 bits"):
        E.build_program(net, p, residual=np.ones(p.cols, int))
    with pytest.raises(ValueError, match=r"residual\[2\] = 64 is not a readout"):
        E.build_program(net, p, residual=[0, 0, 64] + [0] * 9)
    with pytest.raises(ValueError, match=r"residual must have shape \(12,\)"):
        E.build_program(net, p, residual=np.zeros(5, int))
    eng = E.EngineModel(E.EngineParams.for_model(net, p))
    eng.load(net)
    with pytest.raises(ValueError, match="a built program takes none"):
        eng.load(eng.program, residual=np.zeros(12, int))


# --- program: banks, trim folding, score correction, tie rule -----------------------------

def test_banks_follow_the_program_order_and_fold_the_trim(rng):
    p = MacroParams(32, 12, cols_per_cycle=4)
    net = random_net(rng, (70, 30, 20, 5), 5, p.rows, p.cols)
    r = rng.integers(-3, 3, p.cols)
    prog = E.build_program(net, p, residual=r)
    bank = 0
    for i, (lp, layer) in enumerate(zip(prog.layers, net.layers)):
        assert (lp.row_tiles, lp.col_tiles) == (layer.row_tiles, layer.col_tiles)
        assert lp.source == ("image" if i == 0 else "activations")
        assert lp.planes == (5 if i == 0 else 1) and lp.binary == layer.binarized
        scale = layer.row_tiles * ((1 << layer.planes) - 1)
        for j in range(layer.col_tiles):
            for t in range(layer.row_tiles):
                # The sequencer visits banks 0, 1, 2, ... in this order.
                assert lp.bank(t, j) == bank
                assert np.array_equal(prog.weights[bank], layer.weights[t, j])
                if layer.binarized:
                    assert np.array_equal(prog.thresh[bank], layer.thresh[j] + scale * r)
                    assert np.array_equal(prog.flip[bank], layer.flip[j])
                else:
                    assert np.array_equal(prog.thresh[bank], -scale * r)   # CORR
                    assert not prog.flip[bank].any()
                bank += 1
    assert prog.banks == bank == E.EngineParams.needs(net)["weight_banks"]


def test_score_correction_is_added_before_the_argmax(rng):
    """On the ideal macro a made-up residual r gives scores ACC - T (2^p - 1) r and the
    argmax of those, not of ACC."""
    p = MacroParams(32, 12, cols_per_cycle=4)
    net = random_net(rng, (40, 12, 5), 5, p.rows, p.cols)
    images = rng.integers(0, 32, (40, 40))
    r = rng.integers(-5, 6, p.cols)
    r[:2] = 20, -20                                  # class 1 gains 40 on class 0
    eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=40))
    eng.load(net, residual=r)
    pred = eng.classify(images)
    # The hidden layer's thresholds move by T (2^p - 1) r too, which on an ideal macro
    # changes its outputs: the reference is numpy's inference with those thresholds.
    shifted = FoldedNet(net.rows, net.cols, net.input_bits, [
        FoldedLayer(l.inputs, l.outputs, l.planes, l.input_encoding, l.binarized, l.weights,
                    None if l.thresh is None else l.thresh + l.row_tiles * ((1 << l.planes) - 1) * r,
                    l.flip,
                    l.acc_min, l.acc_max) for l in net.layers])
    _, trace = infer_folded(shifted, images, acc_bits=p.acc_bits, return_trace=True)
    acc = trace[-1]["acc"]
    assert np.array_equal(eng.acc, acc)
    assert np.array_equal(eng.scores, acc - r[:5])
    assert np.array_equal(pred, np.argmax(acc - r[:5], axis=1))
    assert np.any(pred != np.argmax(acc, axis=1))      # the correction mattered


def single_layer_net(weights):
    """A one-layer (last layer only) net on a macro as wide as ``weights`` (R x C)."""
    R, C = weights.shape
    w = weights.astype(np.uint8)[None, None]
    return FoldedNet(R, C, 1, [FoldedLayer(R, C, 1, "unsigned", False, w, None, None, -R, R)])


@pytest.mark.parametrize("columns, want", [
    ([0, 0, 0, 0], 0),           # all equal: the lowest index
    ([0, 1, 2, 1, 2], 2),        # equal maxima at 2 and 4
    ([0, 0, 1, 2, 2, 2], 3),
])
def test_argmax_ties_go_to_the_lowest_index(columns, want):
    """Column k gets weight pattern ``columns[k]``: equal patterns give equal scores."""
    patterns = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], np.uint8)
    w = patterns[columns].T
    net = single_layer_net(w)
    p = MacroParams(4, len(columns), input_bits=1, comp_rows=2)
    eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=1))
    eng.load(net)
    x = np.ones((1, 4), np.int64)
    assert eng.classify(x)[0] == want == infer_folded(net, x)[0]
    assert len(set(eng.scores[0].tolist())) < len(columns)


def test_inputs_beyond_n_in_are_masked():
    """A padding row holds weight +1 in every column and the previous layer's padding
    column outputs 1: neither may add anything."""
    R, C = 8, 4
    hidden = np.ones((1, 1, R, C), np.uint8)                  # 8 -> 3 (column 3 padding)
    last = np.zeros((1, 1, R, C), np.uint8)
    last[0, 0, :3, 0] = 1                                     # class 0 sees the 3 inputs
    last[0, 0, 3:, 1] = 1                                     # class 1 only padding rows
    net = FoldedNet(R, C, 2, [
        FoldedLayer(5, 3, 2, "unsigned", True, hidden, np.full((1, C), -100, np.int64),
                    np.zeros((1, C), np.uint8), -15, 15),     # every OUT = 1, padding too
        FoldedLayer(3, 2, 1, "bit", False, last, None, None, -3, 3)])
    p = MacroParams(R, C, input_bits=2, comp_rows=2)
    eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=2))
    eng.load(net)
    x = np.array([[3, 3, 3, 3, 3], [0, 1, 2, 3, 0]])
    assert np.array_equal(eng.classify(x), [0, 0])
    assert np.array_equal(eng.acc, [[3, -3], [3, -3]])
    assert np.array_equal(eng.acc, infer_folded(net, x, return_trace=True)[1][-1]["acc"])


# --- cycles and events --------------------------------------------------------------------

@pytest.mark.parametrize("sizes, p", [
    ((100, 96, 96, 10), MacroParams(32, 96)),
    ((100, 96, 96, 10), MacroParams(32, 96, cols_per_cycle=4, pipeline=4)),
    ((70, 30, 20, 5), MacroParams(32, 12, cols_per_cycle=4, pipeline=1)),
    ((20, 9, 4), MacroParams(8, 8, input_bits=3, comp_rows=2, cols_per_cycle=2, pipeline=3)),
], ids=["mnist@P96L0", "mnist@P4L4", "70-30-20-5@P4L1", "20-9-4@P2L3"])
def test_counted_cycles_equal_the_formula(sizes, p, rng):
    net = random_net(rng, sizes, min(p.input_bits, 5), p.rows, p.cols)
    images = rng.integers(0, 1 << net.layers[0].planes, (3, sizes[0]))
    eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=2))
    prog = eng.load(net)
    eng.classify(images)
    per_image = prog.image_cycles()
    assert eng.cycles == 3 * per_image
    # The formula written out (docs/ENGINE.md), independently of image_cycle_terms.
    G, L = p.groups, p.pipeline
    T = [-(-n // p.rows) for n in sizes[:-1]]
    J = [-(-n // p.cols) for n in sizes[1:]]
    planes = [net.layers[0].planes] + [1] * (len(T) - 1)
    want = 2 + sum(t * j * G * (q + 2 + L) for t, j, q in zip(T, J, planes)) \
        + sum(J[:-1]) + J[-1] + sizes[-1]
    assert per_image == want
    # The RUN term is the macro's own busy time.
    assert all(ev["busy_cycles"] == E.image_cycle_terms(
        p, [(l.inputs, l.outputs, l.planes) for l in prog.layers])["runs"]
        for ev in eng.image_events)


def test_mnist_cycles_per_image(capsys):
    """The figures of docs/ENGINE.md: MNIST 100-96-96-10, B = 5, on 32x96."""
    shapes = [(100, 96, 5), (96, 96, 1), (96, 10, 1)]
    got = {(P, L): E.image_cycles(MacroParams(32, 96, cols_per_cycle=P, pipeline=L), shapes)
           for P in (96, 4) for L in (0, 4)}
    with capsys.disabled():
        print(f"\n  MNIST 100-96-96-10 on 32x96, cycles per image: {got}")
    assert got[96, 0] <= 150 and got[96, 4] <= 150
    assert got == {(96, 0): 61, (96, 4): 101, (4, 0): 1119, (4, 4): 2079}


def test_events_per_image_equal_the_macro_formulas(rng):
    """Each image's events are the closed-form events (models.energy.command_events) of
    its RUNs, whose set input bits come from numpy's own inference."""
    p = MacroParams(32, 12, cols_per_cycle=4, pipeline=1)
    net = random_net(rng, (70, 30, 20, 5), 5, p.rows, p.cols)
    images = rng.integers(0, 32, (4, 70))
    eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=4))
    eng.load(net)
    eng.classify(images)
    _, trace = infer_folded(net, images, acc_bits=p.acc_bits, return_trace=True)
    inputs = [images] + [t["y"] for t in trace[:-1]]
    for i, ev in enumerate(eng.image_events):
        want = dict.fromkeys(EVENTS, 0)
        for layer, x in zip(net.layers, inputs):
            padded = np.zeros(layer.row_tiles * p.rows, np.int64)
            padded[:layer.inputs] = x[i]
            for t in range(layer.row_tiles):
                rows = padded[t * p.rows:(t + 1) * p.rows]
                ones = sum(int(((rows >> b) & 1).sum()) for b in range(layer.planes))
                part = command_events(p, "run", layer.planes, ones)
                for k in EVENTS:
                    want[k] += layer.col_tiles * part[k]
        assert ev == want, i


def test_streaming_through_a_small_buffer_changes_nothing(rng):
    p = MacroParams(32, 12, cols_per_cycle=4)
    net = random_net(rng, (70, 30, 20, 5), 5, p.rows, p.cols)
    images = rng.integers(0, 32, (11, 70))
    results = []
    for slots in (3, 11):
        eng = E.EngineModel(E.EngineParams.for_model(net, p, image_slots=slots))
        eng.load(net)
        results.append((eng.classify(images), eng.acc.copy(), eng.cycles))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]
    assert np.array_equal(results[0][0], infer_folded(net, images, acc_bits=p.acc_bits))
