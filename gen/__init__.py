"""The generator: macro parameters in, Verilog and a JSON manifest out.

Run it as ``python -m gen --rows 32 --cols 96`` (see ``docs/GEN.md``). The library entry
points are :func:`gen.emit.generate` (parameters to Verilog text, ports and manifest) and
:func:`gen.cli.main` (the command line). This package imports nothing heavy at import
time, so that the command line can configure Amaranth's Yosys before Amaranth loads.
"""

#: Version of the generator, written into every manifest. Kept equal to the project
#: version in pyproject.toml (a test checks this).
__version__ = "0.1.0"
