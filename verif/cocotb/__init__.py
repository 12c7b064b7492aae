"""cocotb testbenches of the blocks and the macro, their harness and the burst transport.

The test modules (``tb_*.py``) run inside a simulator started by :mod:`verif.runner`;
they read the design, seed and arguments from the environment (:func:`tb.context`).
"""
