"""``python -m fpga run`` on a board that carries a network engine (docs/ENGINE.md).

The whole network stays on the board: the host loads the banks and the layer program
once (:meth:`host.engine.EngineDriver.load_network`), streams the images into the image
buffer ``image_slots`` at a time, starts CLASSIFY and reads the classes back; the
engine's own busy-cycle count (ENGINE_CYCLES) gives its throughput without the UART.

Chip Monte Carlo on the board (``--chips START:STOP``): for each chip seed, the sampled
SRAM instance's registers (:func:`chip_registers`: offset, gain, readout, table and
stuck cells, as the macro builds them) are written over the bus, the macro is calibrated
(and trimmed), the network is loaded with the trim folded, the images are classified,
and the same steps on the golden model (:class:`models.engine.EngineModel` with the same
registers) must give the same class for every image. Read noise and the per-cell
current spread beyond each column's mean gain have no register: they are not emulated.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from models import cmdline

__all__ = ["EMULATED", "NOT_EMULATED", "chip_registers", "golden_classes", "run_engine"]

#: The chip effects a board emulates (the macro's registers) and those it cannot.
EMULATED = "offset, gain, readout, table and stuck cells (the macro's registers)"
NOT_EMULATED = "read noise and the cell spread beyond each column's mean gain"


def chip_registers(p, seed: int, config=None) -> dict:
    """Every non-ideality register ``p`` builds, for the sampled SRAM chip ``seed``
    (``models.chip.sample_chip`` with ``ChipConfig.typical("sram")`` as ``fpga build
    --chip-seed`` bakes it, mapped by ``models.chip.chip_to_rtl``); a register the chip
    leaves alone gets its reset value, so that the result does not depend on what the
    board held before."""
    from models.chip import ChipConfig, chip_to_rtl, sample_chip
    from models.macro import MacroModel

    config = ChipConfig.typical("sram") if config is None else config
    full = chip_to_rtl(sample_chip(config, seed, p.rows, p.cols, p.comp_rows), p, strict=False)
    fresh = MacroModel(p)
    registers = {}
    for name in ("offset", "gain", "table", "stuck_mask", "stuck_value", "sat", "qshift"):
        reset = getattr(fresh, name)
        if reset is not None:
            registers[name] = reset if full.get(name) is None else full[name]
    return registers


def golden_classes(params, net, x, *, registers=None, calibrate=True, trim=False):
    """The classes the golden engine gives ``x`` on a chip with ``registers`` after the
    same steps as :func:`run_engine` (calibrate, trim, load)."""
    from models.engine import EngineModel

    engine = EngineModel(params)
    if registers:
        engine.set_nonideal(**registers)
    residual = None
    if calibrate:
        engine.calibrate()
    if trim:
        residual = engine.measure_residual()
    engine.load(net, residual=residual)
    return engine.classify(x)


async def _prepare_chip(drv, registers, args, notes):
    """Write a chip's ``registers`` (None: keep the board's), calibrate, trim."""
    if registers is not None:
        await drv.write_chip(**registers)
    residual = None
    if not args.no_calibrate:
        flags = await drv.calibrate()
        notes.append(f"calibrated: {int(flags.sum())} of {drv.params.macro.cols} columns out "
                     f"of the compensation range (CALFLAG)")
    if args.trim:
        residual = await drv.measure_residual()
        notes.append(f"trim: residual {int(residual.min())}..{int(residual.max())}, nonzero "
                     f"in {int(np.count_nonzero(residual))} of {drv.params.macro.cols} columns")
    return residual


def _in_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _classify(drv, x, bar):
    """Classes of ``x`` through the image buffer, and the ENGINE_CYCLES of each batch."""
    slots = drv.params.image_slots
    classes, cycles = [], 0
    for start in range(0, len(x), slots):
        batch = x[start:start + slots]
        await drv.write_images(batch)
        classes.append(await drv.run(len(batch)))
        cycles += await drv.cycles()
        bar.update(len(batch))
        # Let the event loop deliver Ctrl-C (the model port never suspends on its own);
        # only under asyncio: cocotb's scheduler, which also runs this, cannot take it.
        if _in_asyncio():
            await asyncio.sleep(0)
    return np.concatenate(classes), cycles


def _rate(cycles_per_image: float, freq_mhz) -> str:
    if freq_mhz is None:
        return "give --freq MHZ (the design clock) for images per second"
    return f"{freq_mhz * 1e6 / cycles_per_image:,.0f} images/s at {freq_mhz:g} MHz"


async def run_engine(args, net, x, labels, transport) -> int:
    """Classify ``x`` on the engine behind ``transport`` and print the accuracy, the
    engine's cycles per image, and with ``--chips`` one row per chip."""
    from host.engine import EngineDriver

    start = time.monotonic()
    drv = await EngineDriver.connect(transport)
    e, p = drv.params, drv.params.macro
    e.check_fits(net)
    seeds = [None] if args.chips is None else list(range(*args.chips))
    rows = []
    for seed in seeds:
        notes = []
        registers = None if seed is None else chip_registers(p, seed)
        residual = await _prepare_chip(drv, registers, args, notes)
        await drv.load_network(net, residual=residual)
        label = "images" if seed is None else f"chip {seed}"
        bar = cmdline.progress_bar(len(x), label, args.quiet)
        try:
            predictions, cycles = await _classify(drv, x, bar)
        finally:
            bar.close()
        correct = int(np.sum(predictions == labels))
        row = dict(seed=seed, correct=correct, cycles=cycles, notes=notes)
        if seed is not None:
            golden = golden_classes(e, net, x, registers=registers,
                                    calibrate=not args.no_calibrate, trim=args.trim)
            row["identical"] = int(np.sum(golden == predictions))
        if args.benchmark:
            # The buffer still holds the last batch: run it again, no image traffic.
            count = len(x) - (len(x) - 1) // e.image_slots * e.image_slots
            again = await drv.run(count)
            if not np.array_equal(again, predictions[len(x) - count:]):
                raise RuntimeError("the benchmark CLASSIFY gave other classes than the first "
                                   "pass over the same image slots")
            row["benchmark"] = (count, await drv.cycles())
        rows.append(row)
    seconds = time.monotonic() - start
    n = len(labels)
    where = (f"on {transport.name}, engine {p.rows}x{p.cols} P={p.cols_per_cycle} "
             f"L={p.pipeline} ({e.weight_banks} banks, {e.image_slots} image slots)")
    if args.chips is None:
        row = rows[0]
        print(f"accuracy {100.0 * row['correct'] / n:.2f}% ({row['correct']}/{n} images) "
              f"{where}, {seconds:.1f} s, {transport.frames} frames, {transport.resyncs} resyncs")
    else:
        print(f"chip Monte Carlo {where}: {n} images per chip, {seconds:.1f} s, "
              f"{transport.frames} frames")
        print("| chip | accuracy | identical to the golden model |")
        print("| --- | --- | --- |")
        for row in rows:
            print(f"| {row['seed']} | {100.0 * row['correct'] / n:.2f}% | "
                  f"{row['identical']}/{n} |")
        acc = np.array([r["correct"] for r in rows]) / n * 100
        same = all(r["identical"] == n for r in rows)
        print(f"chips {seeds[0]}..{seeds[-1]}: mean {acc.mean():.2f}%, worst {acc.min():.2f}%; "
              f"{'identical to' if same else 'DIFFERENT from'} the golden model on "
              f"{'every image of every chip' if same else 'some images'}")
        print(f"emulated: {EMULATED}; not emulated: {NOT_EMULATED}")
    per_image = rows[-1]["cycles"] / n
    print(f"engine: {per_image:g} cycles per image (ENGINE_CYCLES over {n} images), "
          f"{_rate(per_image, args.freq)}")
    if args.benchmark:
        count, cycles = rows[-1]["benchmark"]
        print(f"benchmark: CLASSIFY of {count} images already in the buffer: {cycles} cycles, "
              f"{cycles / count:g} per image, {_rate(cycles / count, args.freq)}")
    for note in rows[-1]["notes"]:
        print(note)
    if args.chips is not None and not all(r["identical"] == n for r in rows):
        return 1
    return 0
