"""LiteX UARTBone framing: the constants shared by the bridge gateware
(``fpga/uartbone.py``) and the host's serial transport (:mod:`host.serial_transport`).

A frame is a command byte, a length byte (words), a 4-byte big-endian word address and,
for writes, 4 bytes per word; a read is answered with 4 bytes per word.
"""

__all__ = ["Command", "ADDR_BYTES", "DATA_BYTES"]

ADDR_BYTES = 4
DATA_BYTES = 4


class Command:
    """Command bytes of a UARTBone frame (LiteX's ``CMD_*_BURST_*``)."""
    WRITE_INCR = 0x01
    READ_INCR = 0x02
    WRITE_FIXED = 0x03
    READ_FIXED = 0x04
    ALL = (WRITE_INCR, READ_INCR, WRITE_FIXED, READ_FIXED)
