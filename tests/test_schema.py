"""JSON Schemas of the file formats (models/schemas/) and the readers that use them.

Every manifest ``gen`` writes and every model ``export`` writes follows its schema; a
damaged manifest (hypothesis replaces fields by random JSON) is either still valid or
refused in one line naming the file and the place; ``load_manifest`` rebuilds the
parameters and refuses a manifest whose widths disagree with them.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen import manifest
from models import schema
from models.params import NONIDEALITIES, MacroParams

from .damage import JSON_VALUES, json_paths, replace_at

FAKE_VERILOG = "module cim_macro(clk);\n  input clk;\nendmodule\n"
PORTS = [dict(name="clk", direction="input", width=1, role="clock")]


def random_params(rng):
    rows = int(rng.choice([int(rng.integers(1, 33)), 32 * int(rng.integers(1, 33))]))
    cols = int(rng.integers(1, 1025))
    divisors = [d for d in range(1, cols + 1) if cols % d == 0]
    return MacroParams(rows=rows, cols=cols, input_bits=int(rng.integers(1, 9)),
                       comp_rows=2 ** int(rng.integers(1, 6)),
                       cols_per_cycle=int(rng.choice(divisors)),
                       nonideal={n for n in NONIDEALITIES if rng.random() < 0.5},
                       pipeline=int(rng.integers(0, 5)))


def test_every_schema_is_a_valid_draft_2020_12_schema():
    import jsonschema
    names = sorted(p.name.removesuffix(".schema.json") for p in schema.SCHEMA_DIR.glob("*.schema.json"))
    assert names == ["engine-manifest", "fpga-report", "manifest", "model", "nextpnr-report"]
    for name in names:
        jsonschema.Draft202012Validator.check_schema(schema.schema(name))


def test_generated_manifests_follow_the_schema_and_load(rng, tmp_path):
    for i in range(40):
        p = random_params(rng)
        path = tmp_path / f"m{i}.json"
        path.write_text(manifest.dumps(manifest.build_manifest(p, FAKE_VERILOG, PORTS)))
        doc, back = schema.load_manifest(path)
        assert back == p and doc["top"] == p.name


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["params"].update(rows=40), "params: rows must be"),
    (lambda d: d["params"]["derived"].update(addr_bits=3), "params.derived.addr_bits is 3"),
    (lambda d: d["register_map"].update(ack_latency=9), "register_map.ack_latency is 9"),
    (lambda d: d["params"].update(comp_rows=6), "params.comp_rows must be one of"),
    (lambda d: d["verilog"].update(sha256="xyz"), "verilog.sha256 must match"),
    (lambda d: d.pop("ports"), "ports is missing"),
    (lambda d: d.update(manifest_version=2), "manifest_version must be 1, not 2"),
    (lambda d: d.update(top="module x"), "top must match"),
])
def test_damaged_manifest_is_one_line(tmp_path, edit, words):
    doc = json.loads(manifest.dumps(manifest.build_manifest(MacroParams(32, 96), FAKE_VERILOG, PORTS)))
    edit(doc)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(schema.SchemaError) as info:
        schema.load_manifest(path)
    assert str(info.value).startswith(f"{path}: ") and words in str(info.value)
    assert "\n" not in str(info.value)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_randomly_damaged_manifest_loads_or_is_one_line(data, tmp_path):
    doc = json.loads(manifest.dumps(manifest.build_manifest(MacroParams(8, 12, cols_per_cycle=4),
                                                            FAKE_VERILOG, PORTS)))
    path = data.draw(st.sampled_from(list(json_paths(doc, items=2))[1:]))
    replace_at(doc, path, data.draw(JSON_VALUES))
    file = tmp_path / "m.json"
    file.write_text(json.dumps(doc))
    try:
        schema.load_manifest(file)
    except schema.SchemaError as exc:
        assert str(exc).startswith(f"{file}: ") and "\n" not in str(exc)


@pytest.mark.parametrize("text, words", [
    ("", "empty file"), ("{", "not valid JSON"), ("[1, NaN]", "NaN is not a JSON number"),
    ("\xff\xfe", "not valid JSON"), ("[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_unparsable_json_is_one_line(tmp_path, text, words):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(schema.SchemaError, match=words):
        schema.load_json(path, "manifest")


def test_exported_models_follow_the_schema(tmp_path):
    from models.bnn import BNN
    from models.export import export_model, save_folded
    for rows, cols, sizes in ((32, 96, (64, 96, 96, 10)), (1, 1, (3, 2, 2)), (1024, 7, (5, 9, 4))):
        jpath, _ = save_folded(export_model(BNN(sizes, seed=0), rows, cols), tmp_path / "m")
        schema.check(json.loads(jpath.read_text()), "model", jpath)
