"""The manifest ``NAME.json`` written beside a network engine's Verilog.

Built from :class:`models.engine.EngineParams` alone (plus the emitted Verilog's hash, its
top-level ports and, when the engine was sized for a model, that model's program), so
the register map, the program format and the cycle formulas in it are those of
``docs/ENGINE.md`` by construction. Like the macro's manifest (:mod:`gen.manifest`) it
holds no time stamp and no absolute path: the same options give the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib

from models.engine import (CAPTURE_CYCLES, ENGINE_PIPELINES, IMAGE_START_CYCLES, RESULT_CYCLES,
                           EngineParams, build_program, engine_bus_latency, image_cycle_terms,
                           program_words)
from models.engine_params import (ENGINE_REGION_BITS, ENGINE_VERSION, PROGRAM_WORDS,
                                  EngineStatus, ProgramWord)
from models.params import CONTRACT_VERSION, EngineErrCode, ErrCode, Status, latencies_text

from . import __version__
from .manifest import _tool_versions, address_map, command_line, cycle_counts

__all__ = ["ENGINE_MANIFEST_FORMAT", "ENGINE_MANIFEST_VERSION", "program_format",
           "engine_cycles", "engine_command_line", "model_section", "build_engine_manifest"]

#: Identifies the file kind (a macro's manifest says "cim-bnn-kit macro manifest").
ENGINE_MANIFEST_FORMAT = "cim-bnn-kit engine manifest"
#: Bumped whenever a key of the engine manifest is renamed, removed or changes meaning.
ENGINE_MANIFEST_VERSION = 1

#: The formula of docs/ENGINE.md section 5, in the names of :func:`engine_cycles`.
IMAGE_CYCLES_FORMULA = ("2 + sum_l T_l*J_l*G*(p_l+2+L) + sum_{binary l} J_l "
                        "+ J_last + n_out_last")


def program_format() -> dict:
    """The words of one layer-program entry (docs/ENGINE.md, "Program memory")."""
    W = ProgramWord
    return dict(
        words_per_layer=PROGRAM_WORDS,
        address="PROGRAM region, offset (layer, part)",
        parts=[
            dict(part=W.INPUTS, name="INPUTS",
                 fields=[dict(name="inputs", lsb=0, bits=W.WIDTH_BITS, allowed="1..max_width")]),
            dict(part=W.OUTPUTS, name="OUTPUTS",
                 fields=[dict(name="outputs", lsb=0, bits=W.WIDTH_BITS, allowed="1..max_width")]),
            dict(part=W.TILES, name="TILES",
                 fields=[dict(name="row_tiles", lsb=0, bits=W.TILE_BITS,
                              allowed="ceil(inputs / rows)"),
                         dict(name="col_tiles", lsb=W.COL_TILES_SHIFT, bits=W.TILE_BITS,
                              allowed="ceil(outputs / cols)")]),
            dict(part=W.MODE, name="MODE",
                 fields=[dict(name="first_bank", lsb=0, bits=W.FIRST_BANK_BITS,
                              allowed="first_bank + row_tiles*col_tiles <= weight_banks"),
                         dict(name="planes", lsb=W.PLANES_SHIFT, bits=W.PLANES_BITS,
                              allowed="1..input_bits for the first layer, 1 afterwards"),
                         dict(name="source", lsb=W.SOURCE_BIT, bits=1,
                              allowed="0: the image buffer (first layer), 1: the previous "
                                      "layer's OUT bits"),
                         dict(name="binary", lsb=W.BINARY_BIT, bits=1,
                              allowed="1: a hidden layer, 0: the last layer (ends the "
                                      "program)")]),
        ],
        rule="other bits 0; CLASSIFY answers BAD_PROGRAM unless the entries up to the first "
             "with binary = 0 chain (docs/ENGINE.md, 'Program memory')",
        bank_of_tile="first_bank + col_tile*row_tiles + row_tile",
    )


def engine_cycles(params: EngineParams, program=None) -> dict:
    """Cycle formulas of the engine (docs/ENGINE.md section 5), and with a program its
    cycles per image term by term."""
    out = dict(
        image=dict(formula=IMAGE_CYCLES_FORMULA,
                   terms=dict(image_start=IMAGE_START_CYCLES, run="G*(p+2+L)",
                              capture_per_column_tile=CAPTURE_CYCLES,
                              scan_per_column_tile="1 + live classes of the tile",
                              result_write=RESULT_CYCLES)),
        classify="N * cycles per image (ENGINE_CYCLES after CLASSIFY of N images)",
        macro=cycle_counts(params.macro),
    )
    if program is not None:
        shapes = [(l.inputs, l.outputs, l.planes) for l in program.layers]
        terms = image_cycle_terms(params.macro, shapes)
        out["model"] = dict(cycles_per_image=sum(terms.values()), terms=terms)
    return out


def engine_command_line(params: EngineParams, name: str) -> str:
    """The ``python -m gen`` options that rebuild exactly this engine: the macro's
    (:func:`gen.manifest.command_line`) and the capacity, every option explicit (the
    model only sizes an engine, so it is not among them)."""
    return (f"{command_line(dataclasses.replace(params.macro, name=name))} "
            f"--weight-banks {params.weight_banks} --layers {params.layers} "
            f"--image-slots {params.image_slots} --max-width {params.max_width}")


def model_section(params: EngineParams, net, model_files) -> dict:
    """What the manifest says about the model the engine was sized for: its files'
    names and hashes, its layer program and PROGRAM words, its cycles per image."""
    program = build_program(net, params.macro)
    files = [dict(file=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
             for path in model_files]
    return dict(
        files=files,
        input_bits=net.input_bits,
        inputs=program.image_inputs,
        classes=program.classes,
        weight_banks=program.banks,
        layers=[l.to_dict() for l in program.layers],
        program_words=program_words(program).tolist(),
        cycles_per_image=program.image_cycles(),
    )


def build_engine_manifest(params: EngineParams, name: str, verilog_text: str, ports: list[dict],
                          *, net=None, model_files=()) -> dict:
    """The manifest of one engine build.

    Parameters
    ----------
    params : EngineParams
        The validated engine the Verilog was generated from.
    name : str
        The top module's name.
    verilog_text : str
        The emitted Verilog exactly as written to ``NAME.v``.
    ports : list of dict
        Top-level ports, as :func:`gen.emit.top_ports` found them.
    net : FoldedNet, optional
        The model the engine was sized for (``gen --model``).
    model_files : sequence of Path
        That model's files (NAME.json, NAME.npz), hashed into the manifest.
    """
    data = verilog_text.encode("utf-8")
    program = None if net is None else build_program(net, params.macro)
    errcodes = {k: v for cls in (ErrCode, EngineErrCode) for k, v in vars(cls).items()
                if k.isupper() and isinstance(v, int)}
    return dict(
        format=ENGINE_MANIFEST_FORMAT,
        manifest_version=ENGINE_MANIFEST_VERSION,
        generator=dict(name="cim-bnn-kit gen", version=__version__, tools=_tool_versions()),
        engine_version=f"{ENGINE_VERSION[0]}.{ENGINE_VERSION[1]}",
        contract_version=f"{CONTRACT_VERSION[0]}.{CONTRACT_VERSION[1]}",
        top=name,
        command=engine_command_line(params, name),
        params=dict(params.to_dict(), name=name),
        ports=ports,
        register_map=address_map(params.regions(), params.csrs(), params.field_sizes(),
                                 region_bits=ENGINE_REGION_BITS,
                                 region_shift=params.region_shift,
                                 addr_bits=params.addr_bits,
                                 ack_latency=params.bus_latency,
                                 latencies=latencies_text(engine_bus_latency,
                                                          ENGINE_PIPELINES)),
        status_bits=dict(busy=Status.BUSY, done=Status.DONE, error=Status.ERROR,
                         cal_range=Status.CAL_RANGE, acc_sat=Status.ACC_SAT,
                         clear_counters=Status.CLEAR_COUNTERS, stop=EngineStatus.STOP),
        errcodes=dict(sorted(errcodes.items(), key=lambda kv: kv[1])),
        program_format=program_format(),
        cycles=engine_cycles(params, program),
        model=None if net is None else model_section(params, net, model_files),
        verilog=dict(file=f"{name}.v", sha256=hashlib.sha256(data).hexdigest(),
                     bytes=len(data), lines=verilog_text.count("\n")),
    )
