"""The host side of the macro: the one driver, its transports and the network runner.

Runtime code that talks to a macro on any backend (the golden model, the RTL in cocotb,
an FPGA over a serial port): :mod:`host.driver` (``MacroDriver``), :mod:`host.transport`
(the ``Transport`` protocol, the model transport), :mod:`host.network` (a whole BNN
through the macro), :mod:`host.serial_transport` (LiteX UARTBone frames over a serial
port) with :mod:`host.uartbone_protocol` (the frames' constants). It imports
``models`` and nothing of ``rtl``, ``fpga`` or ``verif``: ``verif`` (testbenches) and
``fpga`` (gateware, build flow) import it.
"""
