"""Register-map constants of the network engine (docs/ENGINE.md, "Bus interface").

Pure Python, the single source of the engine's identity, region numbers, CSR offsets,
program-entry bit fields and STATUS additions, read by the golden models
(``models/engine.py``, ``models/engine_bus.py``), the host driver (``host/engine.py``)
and the RTL. The error codes are :class:`models.params.EngineErrCode`.

The engine's map is the macro's map (``models.params.Region``, ``CSR``) with a region
field of :data:`ENGINE_REGION_BITS` bits instead of 4 and a CSR ``reg`` field of
:data:`ENGINE_REG_BITS` bits instead of 5: every macro region keeps its number, fields
and rules, WEIGHT, THRESH and FLIP gain a leading ``bank`` field, and the engine's own
regions and CSRs sit above the macro's.
"""

from __future__ import annotations

__all__ = ["MAX_WEIGHT_BANKS", "MAX_LAYERS", "MAX_IMAGE_SLOTS", "MAX_WIDTH", "ENGINE_VERSION",
           "ENGINE_ID_MAGIC", "ENGINE_REGION_BITS", "ENGINE_REG_BITS", "EngineRegion", "EngineCSR", "ProgramWord", "EngineStatus", "PROGRAM_WORDS"]

#: Capacity limits of EngineParams (docs/ENGINE.md section 1).
MAX_WEIGHT_BANKS = 4096
MAX_LAYERS = 64
MAX_IMAGE_SLOTS = 65536
MAX_WIDTH = 65536

#: Version of the engine contract (docs/ENGINE.md), major and minor.
ENGINE_VERSION = (1, 0)
#: Value of the ID register of an engine: ASCII "CiE1" (a bare macro answers "CiM1").
ENGINE_ID_MAGIC = 0x4369_4531

#: Region field width of the engine's word address (the macro's is 4).
ENGINE_REGION_BITS = 5
#: CSR ``reg`` field width of the engine (the macro's is 5): engine CSRs from 32.
ENGINE_REG_BITS = 6


class EngineRegion:
    """The engine's own regions (the macro's regions 0..13 keep their numbers)."""
    PROGRAM = 16      # (layer, part): the layer program, PROGRAM_WORDS words per layer
    IMAGE = 17        # (slot, plane, image_chunk): the image buffer's bit-planes
    RESULT = 18       # (slot): class index per image, read-only
    LAST_ACC = 19     # (neuron): the last image's last-layer ACC, read-only
    LAST_SCORE = 20   # (neuron): the last image's last-layer score ACC + CORR, read-only


class EngineCSR:
    """Word offsets of the engine's CSRs in region 0 (offsets 0..31 are the macro's)."""
    WEIGHT_BANKS = 32
    LAYERS = 33
    IMAGE_SLOTS = 34
    MAX_WIDTH = 35
    MACRO_ID = 36         # the macro inside: "CiM1"
    MACRO_VERSION = 37    # the macro contract version major<<16 | minor
    CLASSIFY = 40         # write N: classify image slots 0..N-1; reads the last accepted N
    RESULTS = 41          # images classified by the current or last CLASSIFY
    ENGINE_CYCLES = 42    # cycles the current or last CLASSIFY has been busy


class ProgramWord:
    """Bit fields of the PROGRAM_WORDS words of one layer-program entry."""
    INPUTS = 0            # part 0: inputs n_in in bits 16:0
    OUTPUTS = 1           # part 1: outputs n_out in bits 16:0
    TILES = 2             # part 2: row tiles in bits 12:0, column tiles in bits 28:16
    MODE = 3              # part 3: first bank 11:0, planes 19:16, SOURCE 24, BINARY 25
    WIDTH_BITS = 17
    TILE_BITS = 13
    COL_TILES_SHIFT = 16
    FIRST_BANK_BITS = 12
    PLANES_SHIFT = 16
    PLANES_BITS = 4
    SOURCE_BIT = 24       # 1: the previous layer's OUT bits; 0: the image buffer
    BINARY_BIT = 25       # 1: a hidden layer (OUT feeds the next); 0: the last layer


PROGRAM_WORDS = 4


class EngineStatus:
    """STATUS bits the engine adds to the macro's (``models.params.Status``)."""
    #: Write 1 while a CLASSIFY runs: stop after the image in progress; reads 0.
    STOP = 6
