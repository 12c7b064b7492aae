"""JSON Schemas of the project's file formats, and one-line validation against them.

The schemas are data files in ``models/schemas/``:

* ``model.schema.json``: an exported model ``NAME.json`` (docs/MODEL_FORMAT.md);
* ``manifest.schema.json``: the manifest ``python -m gen`` writes beside ``NAME.v``
  (docs/GEN.md);
* ``engine-manifest.schema.json``: the manifest of a network engine (``python -m gen
  --model`` or the capacity options; docs/GEN.md, docs/ENGINE.md);
* ``nextpnr-report.schema.json``: the parts of nextpnr's timing report that
  ``python -m fpga endpoints`` reads;
* ``fpga-report.schema.json``: the ``report.json`` of ``python -m fpga build``, which
  ``python -m models energy --fpga-report`` reads.

They fix structure, types and ranges; the rules across fields (tiling, array shapes,
the register map against the parameters) are checked by the readers after the schema
(:func:`models.export.load_folded`, :func:`load_manifest`). ``jsonschema`` (pinned in
pyproject.toml) is imported only when a file is checked, so the golden models never
need it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

__all__ = ["SCHEMA_DIR", "SchemaError", "schema", "check", "load_json", "load_manifest"]

#: Folder of the ``*.schema.json`` files.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

#: Largest JSON file a reader accepts (a model of 1024 layers is far below it).
MAX_JSON_BYTES = 64 << 20


class SchemaError(ValueError):
    """A file that does not follow its format; the message is one line naming the file,
    the place in it (``layers[0].planes``), the bad value and what is allowed."""


@functools.cache
def schema(name: str) -> dict:
    """The parsed schema ``models/schemas/NAME.schema.json``."""
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


@functools.cache
def _validator(name: str):
    import jsonschema
    from referencing import Registry, Resource

    # Every schema of the folder under its $id, so that one may refer to a part of
    # another (the engine manifest's register map is the macro manifest's).
    registry = Registry().with_resources(
        (schema(p.name[:-len(".schema.json")])["$id"],
         Resource.from_contents(schema(p.name[:-len(".schema.json")])))
        for p in sorted(SCHEMA_DIR.glob("*.schema.json")))
    cls = jsonschema.validators.validator_for(schema(name))
    cls.check_schema(schema(name))
    return cls(schema(name), registry=registry)


def _where(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"


def _value(v) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:56] + "..."


_TYPES = {"integer": "an integer", "number": "a number", "string": "a string",
          "object": "an object", "array": "a list", "boolean": "true or false", "null": "null"}


def _describe(error) -> str:
    """jsonschema's error as 'WHERE must be ALLOWED, not VALUE'."""
    where, v, kind, arg = _where(error.absolute_path), error.instance, error.validator, error.validator_value
    if kind == "required":
        missing = [k for k in arg if isinstance(v, dict) and k not in v] or arg
        key = _where([*error.absolute_path, missing[0]])
        return f"{key} is missing"
    if kind == "type":
        kinds = arg if isinstance(arg, list) else [arg]
        return f"{where} must be {' or '.join(_TYPES.get(k, k) for k in kinds)}, not {_value(v)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
                "exclusiveMaximum": "<"}[kind]
        return f"{where} must be {sign} {arg}, not {_value(v)}"
    if kind == "enum":
        return f"{where} must be one of {', '.join(_value(a) for a in arg)}, not {_value(v)}"
    if kind == "const":
        return f"{where} must be {_value(arg)}, not {_value(v)}"
    if kind in ("minItems", "maxItems"):
        return (f"{where} must have {'at least' if kind == 'minItems' else 'at most'} {arg} "
                f"item(s), not {len(v)}")
    if kind == "oneOf" and error.context:
        best = min(error.context, key=lambda e: (len(e.absolute_path) == 0, e.validator == "type"))
        return _describe(best)
    if kind == "pattern":
        return f"{where} must match {arg}, not {_value(v)}"
    return f"{where}: {' '.join(error.message.split())}"


def check(doc, name: str, source) -> None:
    """Validate the parsed JSON ``doc`` against schema ``name``.

    Raises
    ------
    SchemaError
        ``SOURCE: WHERE must be ALLOWED, not VALUE`` for the most relevant error
        (jsonschema's ``best_match``).
    """
    import jsonschema
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(doc))
    if error is not None:
        raise SchemaError(f"{source}: {_describe(error)}")


def load_json(path, name: str | None = None):
    """Read and parse the JSON file ``path`` (and check it against schema ``name``).

    Raises
    ------
    SchemaError
        One line naming the file: missing, a folder, unreadable, larger than
        :data:`MAX_JSON_BYTES`, not UTF-8 JSON (``NaN`` is refused; ``Infinity``, which
        Python's json writes for inf, is read), or not following the schema.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise SchemaError(f"{path} is a folder, not a JSON file")
        if not path.exists():
            raise SchemaError(f"{path}: no such file")
        if not path.is_file():
            raise SchemaError(f"{path} is not a regular file")
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise SchemaError(f"{path}: {size} bytes is larger than the {MAX_JSON_BYTES} a "
                              f"JSON file of this kind may have")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read ({' '.join(str(exc.strerror or exc).split())})") from None
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    if not text.strip():
        raise SchemaError(f"{path}: empty file, not JSON")
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column "
                          f"{exc.colno})") from None
    except RecursionError:
        raise SchemaError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None
    if name is not None:
        check(doc, name, path)
    return doc


def _no_constant(word):
    # Python's json writes inf as Infinity (a ChipConfig's bl_vmax in a model's training
    # record): read it back; NaN compares false with everything a reader checks.
    if word in ("Infinity", "-Infinity"):
        return float(word.replace("Infinity", "inf"))
    raise ValueError(f"{word} is not a JSON number")


def load_manifest(path) -> tuple[dict, "object"]:
    """Read a gen manifest, check it against its schema and its own parameters.

    Returns
    -------
    manifest : dict
    params : models.params.MacroParams
        Rebuilt from ``params``; its derived widths, register map sizes and cycle counts
        must equal the manifest's.

    Raises
    ------
    SchemaError
        One line naming the file and the first disagreement.
    """
    from .params import MacroParams

    doc = load_json(path, "manifest")
    given = {k: v for k, v in doc["params"].items() if k != "derived"}
    try:
        p = MacroParams(**given)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{path}: params: {' '.join(str(exc).split())}") from None
    derived = p.to_dict()["derived"]
    for key, value in doc["params"]["derived"].items():
        if derived.get(key) != value:
            raise SchemaError(f"{path}: params.derived.{key} is {value}, the parameters give "
                              f"{derived.get(key)}")
    rm = doc["register_map"]
    for key, value in (("addr_bits", p.addr_bits), ("region_shift", p.region_shift),
                       ("ack_latency", p.bus_latency)):
        if rm[key] != value:
            raise SchemaError(f"{path}: register_map.{key} is {rm[key]}, the parameters give {value}")
    if doc["top"] != p.name:
        raise SchemaError(f"{path}: top is {doc['top']!r}, params.name is {p.name!r}")
    if doc["cycles"].get("G") != p.groups or doc["cycles"].get("L") != p.pipeline:
        raise SchemaError(f"{path}: cycles.G/L disagree with the parameters "
                          f"(G={p.groups}, L={p.pipeline})")
    return doc, p
