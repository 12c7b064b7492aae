"""The layers of the code base point one way (``../shared/DESIGN.md``, "Layers").

Every ``import`` of every module of a package is read from its source (``ast``, so
imports inside functions count too) and checked against the packages that layer may
use: ``models`` (numpy only) under everything; ``rtl`` on ``models``; ``gen`` on ``rtl``;
the host package on ``models``; ``fpga`` on ``rtl``, ``models``, ``host`` and ``gen``;
nothing but ``verif`` (testbenches), ``bench`` and the tests imports ``verif``.
"""

import ast

import pytest

from tests.conftest import ROOT

PROJECT = {"models", "rtl", "gen", "host", "verif", "fpga", "bench", "tests"}
#: The project packages each layer may import (itself included).
ALLOWED = {
    "models": {"models"},
    "rtl": {"models", "rtl"},
    "gen": {"models", "rtl", "gen"},
    "host": {"models", "host"},
    "fpga": {"models", "rtl", "gen", "host", "fpga"},
    "verif": {"models", "rtl", "gen", "host", "verif", "fpga"},
}
#: Third-party packages a layer must not import (numpy-only models, gateware-free host).
FORBIDDEN = {
    "models": {"amaranth", "cocotb", "serial"},
    "host": {"amaranth", "cocotb"},
}


def imports_of(package):
    """(module file, imported top-level name) for every import in ``package``."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                if node.level:          # relative: the package itself
                    yield path, package
                elif node.module:
                    yield path, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(package):
    wrong = [(path.relative_to(ROOT).as_posix(), name) for path, name in imports_of(package)
             if (name in PROJECT and name not in ALLOWED[package])
             or name in FORBIDDEN.get(package, ())]
    assert not wrong, f"{package} imports {wrong}"


def test_the_check_sees_imports_inside_functions():
    names = {name for path, name in imports_of("fpga") if path.name == "top.py"}
    assert {"host", "rtl", "models"} <= names


def test_only_the_fused_readout_imports_numba():
    """The golden models stay numpy; numba compiles one Monte Carlo pass, optionally."""
    users = {path.relative_to(ROOT).as_posix() for package in ALLOWED
             for path, name in imports_of(package) if name == "numba"}
    assert users == {"models/fused_readout.py"}
