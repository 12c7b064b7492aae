"""Random exported networks for the host-side tests (driver, network runner, FPGA host)."""

import numpy as np


def random_net(rng, sizes, input_bits, rows, cols):
    """An exported BNN with random weights and random batch norm (both flip signs).

    The batch-norm statistics are spread like the layer's pre-activations, so that the
    folded thresholds land inside the accumulator range and both outputs occur.
    """
    from models.bnn import BNN
    from models.export import export_model
    model = BNN(sizes, input_bits=input_bits, seed=int(rng.integers(1 << 31)))
    for l in range(model.layers - 1):
        n_out = sizes[l + 1]
        spread = np.sqrt(sizes[l]) * (2 ** input_bits if l == 0 else 1)
        model.params[f"gamma{l}"] = rng.uniform(-2, 2, n_out).astype(np.float32)
        model.params[f"beta{l}"] = rng.normal(0, 1, n_out).astype(np.float32)
        model.buffers[f"mean{l}"] = rng.normal(0, spread, n_out).astype(np.float32)
        model.buffers[f"var{l}"] = rng.uniform(0.5, 2, n_out).astype(np.float32) * spread ** 2
    return export_model(model, rows, cols)
