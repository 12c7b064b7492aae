"""The open FPGA flow: UART and UARTBone bridge RTL, board tops, YoWASP builds, serial host.

See docs/FPGA.md. ``python -m fpga build`` makes bitstreams and reports,
``python -m fpga run`` runs an exported network on a board.
"""
