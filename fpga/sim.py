"""Verilog of a board core for event-driven simulators (Icarus Verilog, Verilator).

``amaranth.back.verilog.convert`` keeps Amaranth's combinational processes as
``always @*`` blocks (``proc -nomux``). Icarus Verilog runs such a block only when one of
its inputs changes, so a block whose inputs never change after time 0 keeps an ``X``
output for ever (here: the chip image writer's bus mux, whose select and inputs are
constant until the first ack, which depends on the mux: the simulation never leaves
``X``). :func:`simulation_verilog` lets Yosys turn every process into multiplexers
(``proc``), so the combinational logic becomes continuous assignments, which Icarus
evaluates at time 0, and only flip-flops and memories remain procedural.
"""

from __future__ import annotations

from amaranth.back import rtlil

__all__ = ["simulation_verilog"]


def simulation_verilog(component, name: str) -> str:
    """Verilog text of ``component`` (its signature's ports) with no ``always @*`` blocks."""
    from amaranth._toolchain.yosys import find_yosys

    rtlil_text = rtlil.convert(component, name=name, emit_src=False)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = "\n".join([
        f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil",
        "proc -norom",
        "opt_clean",
        "memory_collect",
        # Without -norename the $pmux functions get plain names Icarus accepts.
        "write_verilog",
    ])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)
