"""Hidden states: a model's decoder layers and the output of one of them (RMU steers it; the coming per-layer
probe reads it). Engine level: no method, no training loop."""

from __future__ import annotations

import torch

from ..errors import ObliviateError


def unwrap(model):
    """The model inside a DDP wrapper (``.module``), else the model itself."""
    return getattr(model, "module", model)


class _StopForward(Exception):
    pass


def decoder_layers(model):
    m = unwrap(model)
    body = m.get_decoder() if hasattr(m, "get_decoder") else None
    layers = getattr(body, "layers", None)
    if layers is None:
        raise ObliviateError(f"{type(m).__name__}: cannot find the decoder layers (model.get_decoder().layers)")
    return layers


def layer_output(model, batch: dict, layer: int) -> torch.Tensor:
    """Hidden states [B, T, d] output by decoder layer ``layer`` (0-based); the layers above it are not run."""
    layers = decoder_layers(model)
    captured = {}

    def hook(_mod, _args, out):
        captured["h"] = out[0] if isinstance(out, tuple) else out
        raise _StopForward

    handle = layers[layer].register_forward_hook(hook)
    body = unwrap(model).get_decoder()
    try:
        body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured["h"]
