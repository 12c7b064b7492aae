"""Events, energy, latency and area of a generated macro and of a network run on it.

The macro's behaviour is known bit for bit, so its energy is *counted*: the golden model
(:class:`models.macro.MacroModel`) counts every event of :data:`EVENTS` as it runs, the
same counts follow in closed form from the parameters (:func:`command_events`,
:func:`access_events`, :func:`network_events`), and a technology preset
(:func:`load_preset`, ``models/presets/*.json``) gives the energy of one event of each
kind, the area of the array's parts and the clock. ``docs/ENERGY.md`` defines every
event and derives each preset from its paper's published figures.

Events (per macro; G = groups, P = cols_per_cycle, C = cols, K = comp_rows,
S = log2 K, p = a RUN's planes, L = pipeline):

* the four **RTL counters** (:data:`RTL_COUNTERS`), each definable per clock cycle of
  ``docs/ARCHITECTURE.md`` section 5: ``plane_operations`` (+1 in every plane cycle of
  a RUN, one per group and plane: G·p per RUN), ``column_conversions`` (+P in every
  plane cycle and in every calibration read: C·p per RUN, C·(S+1) per CALIBRATE),
  ``calibration_reads`` (+1 per search or verification read of a group, whatever its
  length of L + 1 cycles: G·(S+1) per CALIBRATE) and ``bus_accesses`` (+1 per
  acknowledged Wishbone access, reads and writes, faulty ones included);
* array: ``data_wordline_activations`` (per group plane cycle, the data rows whose
  input bit is 1: G·ones per RUN, ones = the set bits of the RUN's planes),
  ``comp_wordline_activations`` (all K compensation rows in every plane cycle and every
  calibration read), ``bitline_evaluations`` (one per column and plane of a RUN);
* digital: ``shift_accumulate_ops`` (one per column and plane), ``binarize_ops`` (one
  per column and RUN), ``weight_writes``, ``comp_writes`` (bus writes and the C words
  CALIBRATE writes), ``threshold_writes`` (THRESH and FLIP words), ``input_writes``;
* time: ``busy_cycles`` (CYCLES of every command) and ``idle_cycles`` (bus_latency + 1
  cycles per bus access: the project's Wishbone masters take that long per access);
* ``run_commands``, ``calibrate_commands``, ``clear_commands``.

Only numpy (imported where a network is counted, so that ``python -m gen`` does not load
it for the manifest's formulas) and the standard library; nothing here imports the RTL or
the host driver.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from importlib import resources
from pathlib import Path

from .params import BUS_DATA_BITS, MacroParams

__all__ = [
    "EVENTS", "RTL_COUNTERS", "COUNTER_BITS", "EventCounts", "ArrayShape",
    "RUN_FORMULAS", "CALIBRATE_FORMULAS", "CLEAR_FORMULAS", "ACCESS_FORMULAS",
    "command_events", "access_events", "network_events", "run_decision_events",
    "macs_per_image", "PRESETS", "PRESET_FORMAT", "PresetError", "Preset", "load_preset",
    "preset_names", "EnergyReport", "evaluate", "fpga_clock", "event_formulas",
]

#: Every event the model counts, with its definition (docs/ENERGY.md has the same text).
EVENTS = {
    "plane_operations": "plane cycles of RUNs, one per group and plane (G*p per RUN)",
    "column_conversions": "column readouts converted: P per plane cycle and P per "
                          "calibration read (C*p per RUN, C*(S+1) per CALIBRATE)",
    "calibration_reads": "search and verification reads of a group (G*(S+1) per CALIBRATE)",
    "bus_accesses": "acknowledged Wishbone accesses, reads and writes, faulty ones included",
    "data_wordline_activations": "data rows driven in a group's plane cycle: the rows whose "
                                 "input bit is 1 (G*ones per RUN)",
    "comp_wordline_activations": "compensation rows driven: all K in every plane cycle and "
                                 "every calibration read",
    "bitline_evaluations": "bit-line pair evaluations of a RUN, one per column and plane",
    "shift_accumulate_ops": "Horner steps tile = 2*tile + v, one per column and plane",
    "binarize_ops": "batchnorm-binarize decisions, one per column and RUN",
    "weight_writes": "accepted bus writes to WEIGHT",
    "comp_writes": "accepted bus writes to COMP, and the C words a CALIBRATE writes",
    "threshold_writes": "accepted bus writes to THRESH and FLIP",
    "input_writes": "accepted bus writes to INPUT",
    "busy_cycles": "cycles BUSY is high (CYCLES of every command, ARCHITECTURE.md section 5)",
    "idle_cycles": "bus cycles while not busy: bus_latency + 1 per bus access",
    "run_commands": "accepted RUN commands",
    "calibrate_commands": "accepted CALIBRATE commands",
    "clear_commands": "accepted CLEAR commands",
}

#: The events the RTL's read-only 32-bit saturating counter CSRs count (issue 15 item 5).
RTL_COUNTERS = ("plane_operations", "column_conversions", "calibration_reads", "bus_accesses")
COUNTER_BITS = 32
_COUNTER_MAX = (1 << COUNTER_BITS) - 1


class EventCounts:
    """Counts of every event of :data:`EVENTS` (exact Python integers).

    :meth:`counters` gives the four RTL counters as the RTL reports them: 32 bits,
    saturating at ``2^32 - 1``.
    """

    def __init__(self, counts=None):
        self._n = dict.fromkeys(EVENTS, 0)
        if counts:
            for name, value in dict(counts).items():
                self.add(name, value)

    def add(self, name: str, n=1) -> None:
        if name not in self._n:
            raise KeyError(f"unknown event {name!r}; events are {', '.join(EVENTS)}")
        self._n[name] += int(n)

    def __getitem__(self, name: str) -> int:
        return self._n[name]

    def as_dict(self) -> dict:
        return dict(self._n)

    def counters(self) -> dict:
        """The RTL counters' values: 32-bit, saturating."""
        return {name: min(self._n[name], _COUNTER_MAX) for name in RTL_COUNTERS}

    def clear(self) -> None:
        for name in self._n:
            self._n[name] = 0

    def clear_counters(self) -> None:
        """Zero the four RTL counters (a STATUS write with bit CLEAR_COUNTERS)."""
        for name in RTL_COUNTERS:
            self._n[name] = 0

    def __add__(self, other):
        return EventCounts({k: self._n[k] + other[k] for k in EVENTS})

    def __eq__(self, other):
        if isinstance(other, EventCounts):
            return self._n == other._n
        if isinstance(other, dict):
            return self._n == {k: other.get(k, 0) for k in EVENTS}
        return NotImplemented

    def __repr__(self):
        nonzero = {k: v for k, v in self._n.items() if v}
        return f"EventCounts({nonzero})"


# --- the shape an event count depends on ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class ArrayShape:
    """The parameters the events depend on; unlike :class:`MacroParams` not limited to
    what the generator builds (a paper's 4608-row array, 81 rows, no compensation rows).

    Members
    -------
    rows, cols : int
        R data rows (>= 1) and C columns (>= 1).
    input_bits : int
        B, 1..16.
    comp_rows : int
        K, 0 or a power of two (0: no compensation rows and no calibration).
    cols_per_cycle : int
        P, a divisor of C.
    pipeline : int
        L, 0..4.
    """

    rows: int
    cols: int
    input_bits: int = 5
    comp_rows: int = 8
    cols_per_cycle: int | None = None
    pipeline: int = 0

    def __post_init__(self):
        for name, lo in (("rows", 1), ("cols", 1), ("input_bits", 1), ("comp_rows", 0),
                         ("pipeline", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        if self.input_bits > 16:
            raise ValueError(f"input_bits must be in 1..16, not {self.input_bits}")
        if self.comp_rows & (self.comp_rows - 1):
            raise ValueError(f"comp_rows must be 0 or a power of two, not {self.comp_rows}")
        if self.pipeline > 4:
            raise ValueError(f"pipeline must be in 0..4, not {self.pipeline}")
        if self.cols_per_cycle is None:
            object.__setattr__(self, "cols_per_cycle", self.cols)
        P = self.cols_per_cycle
        if isinstance(P, bool) or not isinstance(P, int) or P < 1 or self.cols % P:
            raise ValueError(f"cols_per_cycle must divide cols={self.cols}, not {P!r}")

    @classmethod
    def of(cls, p) -> "ArrayShape":
        """The shape of a :class:`MacroParams` (or an :class:`ArrayShape`)."""
        if isinstance(p, ArrayShape):
            return p
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams or an ArrayShape, not {p!r}")
        return cls(p.rows, p.cols, p.input_bits, p.comp_rows, p.cols_per_cycle, p.pipeline)

    @property
    def groups(self) -> int:
        return self.cols // self.cols_per_cycle

    @property
    def comp_steps(self) -> int:
        return max(0, self.comp_rows.bit_length() - 1)

    @property
    def chunks(self) -> int:
        return -(-self.rows // BUS_DATA_BITS)

    @property
    def packed_words(self) -> int:
        return -(-self.cols // BUS_DATA_BITS)

    @property
    def bus_latency(self) -> int:
        return 1 if self.pipeline == 0 else 2 if self.pipeline < 4 else 5

    def symbols(self) -> dict:
        """Values of the symbols the formulas use."""
        return dict(R=self.rows, C=self.cols, B=self.input_bits, K=self.comp_rows,
                    P=self.cols_per_cycle, G=self.groups, S=self.comp_steps, L=self.pipeline,
                    bus_latency=self.bus_latency)


# --- closed-form formulas, one text each (also written into gen's manifest) -----------

#: Events of one accepted RUN with ``p`` planes whose planes hold ``ones`` set bits in all.
RUN_FORMULAS = {
    "run_commands": "1",
    "plane_operations": "G*p",
    "column_conversions": "C*p",
    "bitline_evaluations": "C*p",
    "data_wordline_activations": "G*ones",
    "comp_wordline_activations": "K*G*p",
    "shift_accumulate_ops": "C*p",
    "binarize_ops": "C",
    "busy_cycles": "G*(p+2+L)",
}
#: Events of one accepted CALIBRATE.
CALIBRATE_FORMULAS = {
    "calibrate_commands": "1",
    "calibration_reads": "G*(S+1)",
    "column_conversions": "C*(S+1)",
    "comp_wordline_activations": "K*G*(S+1)",
    "comp_writes": "C",
    "busy_cycles": "G*(S+3+(S+1)*L)",
}
#: Events of one accepted CLEAR.
CLEAR_FORMULAS = {"clear_commands": "1", "busy_cycles": "G"}
#: Events of one bus access (a faulty one too); an accepted write to a memory region adds
#: one write event of its kind (``weight_writes``, ...) on top.
ACCESS_FORMULAS = {"bus_accesses": "1", "idle_cycles": "bus_latency+1"}
_WRITE_EVENTS = {"WEIGHT": "weight_writes", "COMP": "comp_writes", "THRESH": "threshold_writes",
                 "FLIP": "threshold_writes", "INPUT": "input_writes"}


def _evaluate_formula(text: str, symbols: dict) -> int:
    # The formulas are this module's own constants: products and sums of symbols.
    return int(eval(text, {"__builtins__": {}}, dict(symbols)))  # noqa: S307


def event_formulas() -> dict:
    """Every formula, JSON-ready: what ``python -m gen`` writes into the manifest."""
    return dict(run=dict(RUN_FORMULAS), calibrate=dict(CALIBRATE_FORMULAS),
                clear=dict(CLEAR_FORMULAS), bus_access=dict(ACCESS_FORMULAS),
                accepted_write={region: f"{event} += 1" for region, event in _WRITE_EVENTS.items()},
                symbols=dict(G="groups", C="cols", P="cols_per_cycle", K="comp_rows",
                             S="comp_steps = log2 K", L="pipeline", p="the RUN's planes",
                             ones="set bits of the RUN's input planes (rows 0..R-1, planes "
                                  "0..p-1)", bus_latency="ack latency of section 6"),
                rtl_counters=list(RTL_COUNTERS))


def command_events(p, command: str, planes: int | None = None, ones: int = 0) -> dict:
    """Events of one accepted command (closed form).

    Parameters
    ----------
    p : MacroParams or ArrayShape
    command : {"run", "calibrate", "clear"}
    planes : int, optional
        A RUN's planes (default B).
    ones : int
        A RUN's set input bits over its planes (rows 0..R-1, planes 0..planes-1).

    Returns
    -------
    dict
        Every event of :data:`EVENTS` (0 where the command has none).
    """
    shape = ArrayShape.of(p)
    formulas = {"run": RUN_FORMULAS, "calibrate": CALIBRATE_FORMULAS,
                "clear": CLEAR_FORMULAS}.get(command)
    if formulas is None:
        raise ValueError(f"command must be run, calibrate or clear, not {command!r}")
    if command == "calibrate" and shape.comp_rows == 0:
        raise ValueError("a macro without compensation rows (comp_rows 0) has no CALIBRATE")
    symbols = shape.symbols()
    symbols.update(p=shape.input_bits if planes is None else operator.index(planes),
                   ones=operator.index(ones))
    counts = dict.fromkeys(EVENTS, 0)
    for name, text in formulas.items():
        counts[name] = _evaluate_formula(text, symbols)
    return counts


def access_events(p, write_region: str | None = None) -> dict:
    """Events of one bus access; ``write_region`` names the region of an accepted write."""
    shape = ArrayShape.of(p)
    counts = dict.fromkeys(EVENTS, 0)
    for name, text in ACCESS_FORMULAS.items():
        counts[name] = _evaluate_formula(text, shape.symbols())
    if write_region in _WRITE_EVENTS:
        counts[_WRITE_EVENTS[write_region]] += 1
    return counts


def _add(total: dict, part: dict, times: int = 1) -> None:
    for k, v in part.items():
        total[k] += times * v


def _plane_ones(x, planes: int):
    """Set bits of bits 0..planes-1 of every row of ``x`` (N, R), summed per image."""
    import numpy as np

    x = np.asarray(x, dtype=np.int64)
    total = np.zeros(x.shape[0], np.int64)
    for b in range(planes):
        total += ((x >> b) & 1).sum(axis=1)
    return total


def run_decision_events(p, planes: int | None = None, density: float = 0.5) -> dict:
    """Events of one RUN whose input bits are 1 with probability ``density`` (expected
    ``data_wordline_activations``; the other events do not depend on the data)."""
    shape = ArrayShape.of(p)
    planes = shape.input_bits if planes is None else planes
    counts = command_events(shape, "run", planes)
    counts["data_wordline_activations"] = shape.groups * shape.rows * planes * float(density)
    return counts


def macs_per_image(net) -> int:
    """Multiply-accumulates of one image through ``net`` (real neurons only): an input
    times a weight counts once whatever the input's bits; one MAC is 2 operations."""
    return sum(layer.inputs * layer.outputs for layer in net.layers)


def network_events(p, net, images, *, status_polls: int = 1, check_errors: bool = True,
                   hidden_inputs=None) -> dict:
    """Events of ``host.network.run_network(driver, net, images)`` on a macro ``p``.

    The runner's schedule in closed form (docs/DRIVER.md, ``host/network.py``): per layer
    and column tile one threshold write (binarized layers), per image the row tiles (odd
    images in reverse when :func:`order_free`), a weight tile written only when it is not
    the one last written, per RUN the INPUT planes, CMD, ``status_polls`` STATUS reads and
    a CYCLES read, then ACC (last layer: the live columns) or OUT. With ``check_errors``
    (the driver's default) every writing call adds one STATUS read.

    Parameters
    ----------
    p : MacroParams
    net : models.export.FoldedNet
    images : array_like of int, shape (N, inputs)
    status_polls : int
        STATUS reads per command (1 on the golden model, which is never busy).
    check_errors : bool
    hidden_inputs : list of arrays, optional
        The inputs (N, inputs) of layers 1.. (the previous layers' OUT bits); default the
        ideal-hardware activations of :func:`models.export.infer_folded`.

    Returns
    -------
    dict of every event (the whole run, all N images).
    """
    import numpy as np

    from .export import check_fits, infer_folded

    if not isinstance(p, MacroParams):
        raise TypeError(f"p must be a MacroParams, not {p!r}")
    check_fits(net, p)
    shape = ArrayShape.of(p)
    x = np.asarray(images, dtype=np.int64)
    if x.ndim == 1:
        x = x[None]
    if hidden_inputs is None:
        _, trace = infer_folded(net, x, return_trace=True)
        hidden_inputs = [t["y"] for t in trace[:-1]]
    inputs = [x] + [np.asarray(h, dtype=np.int64) for h in hidden_inputs]
    R, C = p.rows, p.cols
    n = x.shape[0]
    total = dict.fromkeys(EVENTS, 0)
    check = 1 if check_errors else 0

    def accesses(count: int, region: str | None = None) -> None:
        _add(total, access_events(shape, region), count)

    for layer, layer_in in zip(net.layers, inputs):
        T = layer.row_tiles
        scale = T * ((1 << layer.planes) - 1)
        reorder = T > 1 and scale << (p.readout_bits - 1) <= 1 << (p.acc_bits - 1)
        padded = np.zeros((n, T * R), np.int64)
        padded[:, :layer.inputs] = layer_in
        ones = np.stack([_plane_ones(padded[:, t * R:(t + 1) * R], layer.planes)
                         for t in range(T)], axis=1)                      # (n, T)
        for ct in range(layer.col_tiles):
            live = min(C, layer.outputs - ct * C)
            if layer.binarized:
                accesses(C, "THRESH")
                accesses(p.packed_words, "FLIP")
                accesses(check)
            resident = None
            for i in range(n):
                order = range(T - 1, -1, -1) if reorder and i % 2 else range(T)
                for k, rt in enumerate(order):
                    if rt != resident:
                        accesses(live * p.chunks, "WEIGHT")
                        accesses(check)
                        resident = rt
                    accesses(layer.planes * p.chunks, "INPUT")
                    accesses(check)
                    accesses(1)                                           # CMD
                    _add(total, command_events(shape, "run", layer.planes, int(ones[i, rt])))
                    accesses(status_polls + 1)                            # STATUS, CYCLES
                if not layer.binarized:
                    accesses(live)                                        # ACC
                else:
                    accesses(p.packed_words)                              # OUT
    return total


# --- technology presets -----------------------------------------------------------------

PRESET_FORMAT = "cim-bnn-kit energy preset"
PRESET_VERSION = 1
#: The presets shipped in ``models/presets``.
PRESETS = ("jssc17", "jetcas19", "valavi18")

#: Energy events a preset prices (every one must be present) and the units allowed.
_ENERGY_UNITS = {"aJ": 1e-6, "fJ": 1e-3, "pJ": 1.0, "nJ": 1e3}
_AREA_UNITS = {"um2": 1e-6, "mm2": 1.0}
_CLOCK_UNITS = {"Hz": 1e-6, "kHz": 1e-3, "MHz": 1.0, "GHz": 1e3}
_VOLT_UNITS = {"mV": 1e-3, "V": 1.0}
_NODE_UNITS = {"nm": 1.0, "um": 1e3}
PRICED_EVENTS = tuple(e for e in EVENTS if not e.endswith("_commands"))
AREA_PARTS = ("cell", "converter", "row_driver", "fixed")
METRICS = {"energy_pj_per_decision": "pJ", "tops_per_w": "TOPS/W", "tops_per_mm2": "TOPS/mm2",
           "gops": "GOPS", "latency_ns": "ns"}
_CONFIG_KEYS = ("rows", "cols", "input_bits", "planes", "comp_rows", "cols_per_cycle", "pipeline")


class PresetError(ValueError):
    """A preset file that is not valid; the message is one line naming the bad field."""


@dataclasses.dataclass
class Preset:
    """A technology preset (``docs/ENERGY.md``): per-event energies (pJ), area parts
    (mm^2), clock (MHz), supply (V or None), the paper's configuration and the published
    figures it was fitted to and predicts."""

    name: str
    title: str
    citation: str
    path: str
    node_nm: float
    supply_v: float | None
    clock_mhz: float
    energy_pj: dict
    area_mm2: dict          # part -> mm^2 per unit, None when the paper gives no area
    configuration: dict
    coverage: dict
    fitted: list
    predictions: list
    mapping: str
    sources: dict

    def shape(self, config: dict | None = None) -> ArrayShape:
        c = dict(self.configuration if config is None else config)
        return ArrayShape(c["rows"], c["cols"], c["input_bits"], c["comp_rows"],
                          c["cols_per_cycle"], c["pipeline"])


def preset_names() -> tuple:
    return PRESETS


def _fail(where: str, what: str):
    raise PresetError(f"{where}: {what}")


def _quantity(where, d, units, *, nullable=False):
    """(value in the base unit, source) of ``{"value", "unit", "source"}``."""
    if not isinstance(d, dict):
        _fail(where, f"must be an object with value, unit and source, not {d!r}")
    for key in ("value", "unit", "source"):
        if key not in d:
            _fail(where, f"missing field {key!r}")
    extra = sorted(set(d) - {"value", "unit", "source"})
    if extra:
        _fail(where, f"unknown field {extra[0]!r} (allowed: value, unit, source)")
    unit, value, source = d["unit"], d["value"], d["source"]
    if not isinstance(source, str) or not source.strip():
        _fail(f"{where}.source", "must be a non-empty string saying where the number comes from")
    if not isinstance(unit, str) or unit not in units:
        _fail(f"{where}.unit", f"unknown unit {unit!r} (allowed: {', '.join(units)})")
    if value is None:
        if not nullable:
            _fail(f"{where}.value", "must be a number, not null")
        return None, source
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(f"{where}.value", f"must be a finite number, not {value!r}")
    if value < 0:
        _fail(f"{where}.value", f"must be >= 0, not {value}")
    return float(value) * units[unit], source


def _config(where, d):
    if not isinstance(d, dict):
        _fail(where, f"must be an object, not {d!r}")
    for key in _CONFIG_KEYS:
        if key not in d:
            _fail(where, f"missing field {key!r}")
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(f"{where}.{key}", f"must be an integer, not {v!r}")
    try:
        shape = ArrayShape(d["rows"], d["cols"], d["input_bits"], d["comp_rows"],
                           d["cols_per_cycle"], d["pipeline"])
    except ValueError as exc:
        _fail(where, str(exc))
    if not 1 <= d["planes"] <= shape.input_bits:
        _fail(f"{where}.planes", f"must be in 1..input_bits={shape.input_bits}, not {d['planes']}")
    density = d.get("input_density", 0.5)
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 <= density <= 1:
        _fail(f"{where}.input_density", f"must be a number in [0, 1], not {density!r}")
    known = set(_CONFIG_KEYS) | {"input_density", "note"}
    extra = sorted(set(d) - known)
    if extra:
        _fail(where, f"unknown field {extra[0]!r} (allowed: {', '.join(sorted(known))})")
    return dict(d, input_density=float(density))


def _figures(where, items, config):
    if not isinstance(items, list):
        _fail(where, f"must be a list, not {items!r}")
    out = []
    for i, f in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(f, dict):
            _fail(w, f"must be an object, not {f!r}")
        for key in ("figure", "metric", "published", "factor"):
            if key not in f:
                _fail(w, f"missing field {key!r}")
        if f["metric"] not in METRICS:
            _fail(f"{w}.metric", f"unknown metric {f['metric']!r} (allowed: {', '.join(METRICS)})")
        unit = METRICS[f["metric"]]
        value, source = _quantity(f"{w}.published", f["published"], {unit: 1.0})
        factor = f["factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            _fail(f"{w}.factor", f"must be a number >= 1, not {factor!r}")
        cfg = _config(f"{w}.configuration", f["configuration"]) if "configuration" in f else config
        out.append(dict(figure=str(f["figure"]), metric=f["metric"], published=value,
                        unit=unit, source=source, factor=float(factor), configuration=cfg,
                        note=str(f.get("note", ""))))
    return out


def load_preset(name_or_path) -> Preset:
    """A preset by name (:data:`PRESETS`) or from a JSON file; units are converted and
    every field checked (:class:`PresetError`, one line, on any fault)."""
    text_name = str(name_or_path)
    if text_name in PRESETS:
        path = resources.files("models").joinpath("presets", f"{text_name}.json")
        where = f"preset {text_name}"
    elif not text_name.strip():
        raise PresetError(f"a preset name ({', '.join(PRESETS)}) or a preset file, not "
                          f"{text_name!r}")
    else:
        path = Path(text_name)
        where = str(path)
        if not path.is_file():
            raise PresetError(f"{where}: no such preset file (and not a preset name: "
                              f"{', '.join(PRESETS)})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{where}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PresetError(f"{where}: not JSON: {exc}") from None
    return _parse_preset(data, where, str(path))


def _quantities(where, d, names, units, sources, kind, *, nullable):
    """Every quantity ``names`` of the object ``d`` (all required, no others), converted."""
    if not isinstance(d, dict):
        _fail(where, f"must be an object, not {d!r}")
    out = {}
    for name in names:
        if name not in d:
            _fail(where, f"missing field {name!r}" + (
                "" if nullable else " (every event is priced; 0 with a source for one the "
                                    "paper does not cover)"))
        out[name], sources[f"{where.split(': ')[-1]}.{name}"] = _quantity(
            f"{where}.{name}", d[name], units, nullable=nullable)
    extra = sorted(set(d) - set(names))
    if extra:
        _fail(where, f"unknown {kind} {extra[0]!r} ({kind}s: {', '.join(names)})")
    return out


def _parse_preset(data, where, path) -> Preset:
    if not isinstance(data, dict):
        _fail(where, "must hold a JSON object")
    if data.get("format") != PRESET_FORMAT:
        _fail(f"{where}: format", f"must be {PRESET_FORMAT!r}, not {data.get('format')!r}")
    if data.get("format_version") != PRESET_VERSION:
        _fail(f"{where}: format_version",
              f"must be {PRESET_VERSION}, not {data.get('format_version')!r}")
    for key in ("name", "title", "citation", "technology", "clock", "energy", "area",
                "configuration", "coverage", "fitted", "predictions", "mapping"):
        if key not in data:
            _fail(where, f"missing field {key!r}")
    for key in ("name", "title", "citation", "mapping"):
        if not isinstance(data[key], str) or not data[key].strip():
            _fail(f"{where}: {key}", f"must be a non-empty string, not {data[key]!r}")
    sources = {}
    tech = data["technology"]
    if not isinstance(tech, dict):
        _fail(f"{where}: technology", f"must be an object, not {tech!r}")
    for key in ("node", "supply"):
        if key not in tech:
            _fail(f"{where}: technology", f"missing field {key!r}")
    node, sources["node"] = _quantity(f"{where}: technology.node", tech["node"], _NODE_UNITS)
    supply, sources["supply"] = _quantity(f"{where}: technology.supply", tech["supply"],
                                          _VOLT_UNITS, nullable=True)
    clock, sources["clock"] = _quantity(f"{where}: clock", data["clock"], _CLOCK_UNITS)
    if clock == 0:
        _fail(f"{where}: clock.value", "must be > 0")
    energy_pj = _quantities(f"{where}: energy", data["energy"], PRICED_EVENTS, _ENERGY_UNITS,
                            sources, "event", nullable=False)
    area_mm2 = _quantities(f"{where}: area", data["area"], AREA_PARTS, _AREA_UNITS, sources,
                           "part", nullable=True)
    config = _config(f"{where}: configuration", data["configuration"])
    coverage = data["coverage"]
    if not isinstance(coverage, dict) or sorted(coverage) != ["array", "digital", "io", "periphery"]:
        _fail(f"{where}: coverage", "must be an object with exactly array, periphery, digital "
                                    "and io, each a string")
    for key, value in coverage.items():
        if not isinstance(value, str) or not value.strip():
            _fail(f"{where}: coverage.{key}", f"must be a non-empty string, not {value!r}")
    fitted = _figures(f"{where}: fitted", data["fitted"], config)
    predictions = _figures(f"{where}: predictions", data["predictions"], config)
    if not predictions:
        _fail(f"{where}: predictions", "must list at least one published figure the preset "
                                       "was not fitted to")
    return Preset(name=data["name"], title=data["title"], citation=data["citation"], path=path,
                  node_nm=node, supply_v=supply, clock_mhz=clock, energy_pj=energy_pj,
                  area_mm2=area_mm2, configuration=config, coverage=dict(coverage),
                  fitted=fitted, predictions=predictions, mapping=data["mapping"],
                  sources=sources)


# --- evaluation ----------------------------------------------------------------------------

@dataclasses.dataclass
class EnergyReport:
    """Energy, efficiency, area and latency of one decision (or image).

    Members
    -------
    events : dict
        Events per decision.
    energy_pj_by_event : dict
        Event count times its energy.
    energy_pj_per_decision, ops_per_decision, tops_per_w, area_mm2, tops_per_mm2,
    latency_cycles, latency_ns, gops, clock_mhz, clock_source
    """

    preset: str
    events: dict
    energy_pj_by_event: dict
    energy_pj_per_decision: float
    ops_per_decision: float
    tops_per_w: float | None
    area_mm2: float | None
    tops_per_mm2: float | None
    latency_cycles: float
    latency_ns: float
    gops: float | None
    clock_mhz: float
    clock_source: str

    def metric(self, name: str):
        return getattr(self, name)

    def to_json(self) -> dict:
        return dict(preset=self.preset, energy_pj_per_decision=self.energy_pj_per_decision,
                    ops_per_decision=self.ops_per_decision, tops_per_w=self.tops_per_w,
                    area_mm2=self.area_mm2, tops_per_mm2=self.tops_per_mm2,
                    latency_cycles=self.latency_cycles, latency_ns=self.latency_ns,
                    gops=self.gops, clock_mhz=self.clock_mhz, clock_source=self.clock_source,
                    events=self.events, energy_pj_by_event=self.energy_pj_by_event)


def area_mm2(preset: Preset, shape: ArrayShape) -> float | None:
    """``(R+K) C cell + P converter + (R+K) row_driver + fixed``; None without area data."""
    a = preset.area_mm2
    if any(v is None for v in a.values()):
        return None
    rows = shape.rows + shape.comp_rows
    return (rows * shape.cols * a["cell"] + shape.cols_per_cycle * a["converter"]
            + rows * a["row_driver"] + a["fixed"])


def evaluate(preset: Preset, events: dict, shape: ArrayShape, *, ops: float,
             decisions: float = 1, clock_mhz: float | None = None,
             clock_source: str | None = None) -> EnergyReport:
    """Price ``events`` (the counts of ``decisions`` decisions) with ``preset``.

    Parameters
    ----------
    preset : Preset
    events : dict
        Counts of :data:`EVENTS` for ``decisions`` decisions (images).
    shape : ArrayShape
        For the area.
    ops : float
        Operations of one decision (2 per MAC).
    decisions : float
    clock_mhz : float, optional
        Overrides the preset's clock (an FPGA build's achieved Fmax).
    """
    if decisions <= 0:
        raise ValueError(f"decisions must be > 0, not {decisions}")
    per = {k: events.get(k, 0) / decisions for k in EVENTS}
    by_event = {k: per[k] * preset.energy_pj[k] for k in PRICED_EVENTS}
    energy = float(sum(by_event.values()))
    clock = preset.clock_mhz if clock_mhz is None else float(clock_mhz)
    cycles = per["busy_cycles"] + per["idle_cycles"]
    latency_ns = cycles * 1e3 / clock
    area = area_mm2(preset, shape)
    tops_per_w = ops / energy if energy > 0 else None          # ops / pJ = TOPS/W
    gops = ops / latency_ns if latency_ns > 0 else None          # ops / ns = GOPS
    tops_per_mm2 = gops / 1e3 / area if gops and area else None
    return EnergyReport(preset=preset.name, events=per, energy_pj_by_event=by_event,
                        energy_pj_per_decision=energy, ops_per_decision=float(ops),
                        tops_per_w=tops_per_w, area_mm2=area, tops_per_mm2=tops_per_mm2,
                        latency_cycles=cycles, latency_ns=latency_ns, gops=gops,
                        clock_mhz=clock,
                        clock_source=clock_source or f"preset {preset.name}: {preset.sources['clock']}")


def evaluate_configuration(preset: Preset, config: dict | None = None) -> EnergyReport:
    """One decision of a preset's configuration: one RUN of ``planes`` planes over every
    column (compute events only, no bus traffic), inputs set with ``input_density``."""
    c = preset.configuration if config is None else config
    shape = preset.shape(c)
    events = run_decision_events(shape, c["planes"], c["input_density"])
    return evaluate(preset, events, shape, ops=2.0 * shape.rows * shape.cols)


def fpga_clock(report_path) -> tuple[float, MacroParams, str]:
    """(achieved Fmax in MHz, the build's MacroParams, a description) of an FPGA build's
    ``report.json`` (``python -m fpga build``)."""
    path = Path(report_path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON report: {exc}") from None
    if not isinstance(report, dict) or report.get("format") != "cim-fpga-report":
        raise ValueError(f"{path}: not an FPGA build report (format 'cim-fpga-report')")
    try:
        fmax_hz = report["timing"]["fmax_hz"]
        p = MacroParams.from_dict(report["params"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: report lacks timing.fmax_hz or valid params ({exc})") from None
    if not isinstance(fmax_hz, (int, float)) or isinstance(fmax_hz, bool) or fmax_hz <= 0:
        raise ValueError(f"{path}: timing.fmax_hz must be a positive number, not {fmax_hz!r}")
    return fmax_hz / 1e6, p, f"achieved Fmax of {report.get('board', '?')} build {path}"


# --- text report ---------------------------------------------------------------------------

def _si(value_pj: float) -> str:
    """An energy in pJ with a readable unit."""
    for unit, scale in (("uJ", 1e6), ("nJ", 1e3), ("pJ", 1.0), ("fJ", 1e-3)):
        if abs(value_pj) >= scale or unit == "fJ":
            return f"{value_pj / scale:.4g} {unit}"
    return f"{value_pj:.4g} pJ"  # pragma: no cover


def _time(ns: float) -> str:
    for unit, scale in (("ms", 1e6), ("us", 1e3), ("ns", 1.0)):
        if ns >= scale or unit == "ns":
            return f"{ns / scale:.4g} {unit}"
    return f"{ns:.4g} ns"  # pragma: no cover


def format_report(report: EnergyReport, what: str = "decision") -> list[str]:
    """The lines ``python -m models energy`` prints for ``report``."""
    lines = [f"events per {what}:"]
    for name in EVENTS:
        count = report.events[name]
        if count:
            priced = report.energy_pj_by_event.get(name, 0.0)
            text = f"{count:.6g}" if isinstance(count, float) and count != int(count) else f"{int(count)}"
            lines.append(f"  {name:28} {text:>14}" + (f"   {_si(priced)}" if priced else ""))
    e = report.energy_pj_per_decision
    lines.append(f"energy per {what}: {_si(e)}")
    eff = f"{report.tops_per_w:.4g} TOPS/W" if report.tops_per_w else "n/a (no priced event)"
    lines.append(f"efficiency: {eff} ({report.ops_per_decision:.6g} operations per {what}, "
                 f"one MAC = 2 operations)")
    if report.area_mm2 is None:
        lines.append("area: n/a (the preset has no area figures)")
    else:
        dens = f", {report.tops_per_mm2:.4g} TOPS/mm2" if report.tops_per_mm2 else ""
        lines.append(f"area: {report.area_mm2:.4g} mm2{dens}")
    lines.append(f"latency: {report.latency_cycles:.6g} cycles = {_time(report.latency_ns)} per "
                 f"{what} at {report.clock_mhz:.6g} MHz ({report.clock_source})")
    return lines


def paper_comparison(preset: Preset) -> list[dict]:
    """Every fitted and predicted figure of ``preset``: the model's value on the figure's
    configuration beside the published one."""
    rows = []
    for kind, figures in (("fitted", preset.fitted), ("predicted", preset.predictions)):
        for f in figures:
            model = evaluate_configuration(preset, f["configuration"]).metric(f["metric"])
            ratio = model / f["published"] if model and f["published"] else None
            rows.append(dict(kind=kind, figure=f["figure"], metric=f["metric"], unit=f["unit"],
                             model=model, published=f["published"], ratio=ratio,
                             factor=f["factor"], source=f["source"], note=f["note"]))
    return rows
