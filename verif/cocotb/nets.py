"""Trained and exported networks for the end-to-end tests, cached in ``build/cocotb/nets``.

:func:`prepare` trains the default recipe of ``models.bnn`` on a data set (the bundled
8x8 digits, or the MNIST subset in ``../shared/data/mnist``), exports it for an R x C
macro (``models.export``) and writes the network (``NAME.json`` + ``NAME.npz``,
docs/MODEL_FORMAT.md) and the first validation images with their labels; a second call
with the same sources and settings reuses the files. Training takes about 2 s (digits)
and 25-60 s (MNIST) on this machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from verif.runner import BUILD_ROOT, ROOT

__all__ = ["prepare"]


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for name in ("bnn.py", "export.py", "datasets.py", "params.py"):
        h.update((ROOT / "models" / name).read_bytes())
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()[:12]


def prepare(dataset: str = "digits", *, rows: int = 32, cols: int = 96, input_bits: int = 5,
            seed: int = 0, images: int = 200, epochs: int | None = None) -> dict:
    """Train (once), export and save a network and its first validation images.

    ``epochs`` overrides the recipe's epoch count (a quicker, less accurate network).

    Returns
    -------
    dict
        ``net`` (path of NAME, for ``load_folded``), ``images`` (an ``.npz`` with ``x``,
        ``y``), ``val_accuracy`` (folded integer model on the whole validation set),
        ``trained`` (False when the cached files were used).
    """
    from models.bnn import BNN, accuracy, recipe, train
    from models.datasets import load_dataset
    from models.export import export_model, infer_folded, save_folded

    key = _digest(dataset, rows, cols, input_bits, seed, epochs)
    folder = BUILD_ROOT / "nets"
    tag = "" if epochs is None else f"-e{epochs}"
    name = folder / f"{dataset}-{rows}x{cols}-s{seed}{tag}-{key}"
    meta_path = name.with_suffix(".meta.json")
    image_path = Path(f"{name}-images{images}.npz")
    data = None
    if meta_path.exists() and name.with_suffix(".npz").exists():
        meta = json.loads(meta_path.read_text())
        meta["trained"] = False
    else:
        data = load_dataset(dataset, input_bits=input_bits, seed=seed) if dataset == "digits" \
            else load_dataset(dataset, input_bits=input_bits)
        sizes, config = recipe(dataset, seed=seed, **({} if epochs is None else dict(epochs=epochs)))
        model = BNN(sizes, input_bits=input_bits, seed=seed)
        train(model, data.x_train, data.y_train, config=config)
        net = export_model(model, rows, cols, input_bits=input_bits,
                           meta=dict(dataset=dataset, preprocessing=data.preprocessing,
                                     training=config.to_dict()))
        val = accuracy(infer_folded(net, data.x_val), data.y_val)
        net.meta["accuracy"] = dict(val=val, images=len(data.y_val))
        folder.mkdir(parents=True, exist_ok=True)
        save_folded(net, name)
        meta = dict(val_accuracy=val, val_images=len(data.y_val), dataset=dataset,
                    epochs=config.epochs)
        meta_path.write_text(json.dumps(meta))
        meta["trained"] = True
    if not image_path.exists():
        if data is None:
            data = load_dataset(dataset, input_bits=input_bits, seed=seed) if dataset == "digits" \
                else load_dataset(dataset, input_bits=input_bits)
        count = min(images, len(data.y_val))
        np.savez(image_path, x=data.x_val[:count], y=data.y_val[:count])
    return dict(meta, net=str(name), images=str(image_path))
