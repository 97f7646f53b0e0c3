"""tq.hf: a Hugging Face transformers cache whose keys and values go through tq's quantizer.

    from transformers import AutoModelForCausalLM
    import tq.hf
    cache = tq.hf.QuantizedCache(method="turbo-mse", bits=3)           # values: the same, or values=("kivi", 2)
    out = model(input_ids, past_key_values=cache, use_cache=True)      # or model.generate(..., past_key_values=cache)

Semantics: every update() call's new rows of one (layer, kv head) are quantized and reconstructed as one slice with
tq.roundtrip (the slice's seeds derive from layer and head, as in tq sweep); the cache then holds the reconstructed
floats, so attention sees exactly what a tq-quantized cache would return. A teacher-forced pass over a whole sequence
is therefore the offline sweep's slice; token-by-token decoding round-trips one row per call (per-vector methods —
turbo-mse, turbo-prod, qjl, polar, int8 — give the same rows either way; KIVI's per-channel key groups depend on how
many rows arrive together). keep_layers lists layers left in full precision. Needs torch and transformers (imported
only here)."""
import numpy as np

from .core import params as _params
from .core import roundtrip as _roundtrip

try:
    import torch
    from transformers import DynamicCache
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError("tq.hf needs torch and transformers (pip install torch transformers)") from e


class QuantizedCache(DynamicCache):
    """A transformers DynamicCache that stores tq-quantized-then-reconstructed keys and values.

    method, bits and options (those of tq.params: rotation, codebook, outliers, center, group, residual, qjl_m,
    polar_bits, seed) describe the keys' quantizer; values=None uses the same, values=(method, bits) or a tq.params
    dict another one, values=False leaves values exact. keep_layers: layer indices kept exact. bits_total records
    the stored bits per coordinate of everything quantized so far (side information included)."""

    def __init__(self, method="turbo-mse", bits=3, values=None, keep_layers=(), **opts):
        super().__init__()
        self.kparams = _params(method, bits, **opts)
        if values is None:
            self.vparams = self.kparams
        elif values is False:
            self.vparams = None
        elif isinstance(values, dict):
            self.vparams = values
        else:
            self.vparams = _params(values[0], values[1], seed=opts.get("seed", 0))
        self.keep_layers = set(keep_layers)
        self._bits = [0.0, 0]  # sum of bits, coordinates

    @property
    def bits_total(self):
        return self._bits[0] / self._bits[1] if self._bits[1] else float("nan")

    def _rt(self, x, p, layer, tensor):
        """x [batch, kv_heads, new_tokens, head_dim] -> the reconstruction, same dtype and device."""
        a = x.detach().to("cpu", torch.float32).numpy()
        out = np.empty_like(a)
        for b in range(a.shape[0]):
            for h in range(a.shape[1]):
                out[b, h], bt = _roundtrip(a[b, h], params=p, layer=layer, head=h, tensor=tensor)
                self._bits[0] += bt * a[b, h].size
                self._bits[1] += a[b, h].size
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        if layer_idx not in self.keep_layers:
            key_states = self._rt(key_states, self.kparams, layer_idx, "keys")
            if self.vparams is not None:
                value_states = self._rt(value_states, self.vparams, layer_idx, "values")
        return super().update(key_states, value_states, layer_idx, cache_kwargs)
