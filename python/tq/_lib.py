"""ctypes view of libtq (build/libtq.so): the structures of lib/quant.h, lib/metrics.h, lib/dump.h, lib/codes.h and
lib/evaluate.h mirrored field for field, and the prototypes of the functions the package calls. Where the library is
found: $TQ_LIB, then the copy installed inside the package, then build/libtq.so of the source tree (running from a
clone with PYTHONPATH=python)."""
import ctypes as C
import os

c_int, c_long, c_double, c_u64, c_size, c_char_p, c_void_p = (C.c_int, C.c_long, C.c_double, C.c_uint64, C.c_size_t,
                                                                C.c_char_p, C.c_void_p)
c_float_p = C.POINTER(C.c_float)

TQ_POLAR_MAX_LEVELS = 8
TQ_MAX_SECTIONS = 12
TQ_MET_COUNT = 13


class QParams(C.Structure):
    _fields_ = [("method", c_int), ("bits", c_int), ("rotation", c_int), ("codebook", c_int), ("outliers", c_int),
                ("center", c_int), ("norm_fp32", c_int), ("group", c_int), ("residual", c_int), ("qjl_m", c_int),
                ("polar_levels", c_int), ("polar_bits", c_int * TQ_POLAR_MAX_LEVELS), ("seed", c_u64)]


class SliceId(C.Structure):
    _fields_ = [("layer", c_int), ("head", c_int), ("tensor", c_int)]


class Section(C.Structure):
    _fields_ = [("name", C.c_char * 24), ("type", c_int), ("count", c_size), ("data", c_void_p)]


class Codes(C.Structure):
    _fields_ = [("p", QParams), ("id", SliceId), ("n", c_int), ("d", c_int), ("nsec", c_int),
                ("sec", Section * TQ_MAX_SECTIONS)]


class Format(C.Structure):
    _fields_ = [("name", c_char_p), ("method", c_int), ("min_bits", c_int), ("max_bits", c_int),
                ("uses_rotation", c_int), ("check", c_void_p), ("encode_ref", c_void_p), ("encode", c_void_p),
                ("decode_ref", c_void_p), ("decode", c_void_p), ("bits_code", c_void_p), ("bits_total", c_void_p),
                ("summary", c_char_p)]


class Metrics(C.Structure):
    _fields_ = [("v", c_double * TQ_MET_COUNT), ("n_vectors", c_long), ("n_pairs", c_long), ("ip_sampled", c_int),
                ("attn_rows", c_long)]


class AttnSpec(C.Structure):
    _fields_ = [("window", c_int), ("scale", c_double), ("softcap", c_double), ("rope_base", c_double)]


class MetricsOpts(C.Structure):
    _fields_ = [("seed", c_u64), ("layer", c_int), ("head", c_int), ("max_pairs", c_long), ("attention", c_int),
                ("attn", AttnSpec)]


class LayerShape(C.Structure):
    _fields_ = [("n_kv_heads", c_int), ("n_q_heads", c_int), ("n_tokens", c_int), ("head_dim", c_int),
                ("has_values", c_int), ("has_queries", c_int), ("dtype", c_int)]


class DumpMeta(C.Structure):
    _fields_ = [("model", C.c_char * 256), ("source", C.c_char * 512), ("rope", C.c_char * 8),
                ("architecture", C.c_char * 64), ("n_layers", c_int), ("version", c_int), ("shape", LayerShape)]


class Layer(C.Structure):
    _fields_ = [("s", LayerShape), ("keys", c_float_p), ("values", c_float_p), ("queries", c_float_p)]


class CodesMeta(C.Structure):
    _fields_ = [("source", C.c_char * 1024), ("model", C.c_char * 256), ("rope", C.c_char * 8),
                ("src_layers", c_int), ("n_layers", c_int), ("dtype", c_int), ("has_values", c_int),
                ("keys", QParams), ("values", QParams), ("schedule", c_char_p)]


class CodesLayer(C.Structure):
    _fields_ = [("src_layer", c_int), ("s", LayerShape), ("keys", C.POINTER(Codes)), ("values", C.POINTER(Codes)),
                ("queries", c_float_p)]


class EvalConfig(C.Structure):
    _fields_ = [("k", QParams), ("v", QParams), ("kdesc", C.c_char * 192), ("vdesc", C.c_char * 192)]


c_int_p = C.POINTER(c_int)


class EvalAxes(C.Structure):
    _fields_ = [("methods", c_int_p), ("n_methods", c_int), ("bits", c_int_p), ("n_bits", c_int),
                ("rotations", c_int_p), ("n_rotations", c_int), ("codebooks", c_int_p), ("n_codebooks", c_int),
                ("centers", c_int_p), ("n_centers", c_int), ("outliers", c_int_p), ("n_outliers", c_int),
                ("values", c_int), ("values_params", QParams), ("seed", c_u64)]


class EvalConfigs(C.Structure):
    _fields_ = [("cfg", C.POINTER(EvalConfig)), ("n", c_int), ("notes", C.POINTER(c_char_p)), ("n_notes", c_int)]


class EvalInput(C.Structure):
    _fields_ = [("label", c_char_p), ("path", c_char_p), ("synth", c_int)]


class SynthParams(C.Structure):
    _fields_ = [("dist", c_int), ("n_layers", c_int), ("n_kv_heads", c_int), ("n_q_heads", c_int),
                ("n_tokens", c_int), ("head_dim", c_int), ("seed", c_u64), ("dtype", c_int), ("dof", c_int),
                ("rope_post", c_int), ("hetero", c_int), ("n_layer_scales", c_int),
                ("layer_scales", C.POINTER(c_double))]


class EvalRow(C.Structure):
    _fields_ = [("input", c_int), ("layer", c_int), ("head", c_int), ("tensor", c_int), ("cfg", c_int),
                ("bits_code", c_double), ("bits_total", c_double), ("window", c_int), ("m", Metrics)]


class EvalRows(C.Structure):
    _fields_ = [("rows", C.POINTER(EvalRow)), ("n", c_long), ("cap", c_long)]


PROGRESS_FN = C.CFUNCTYPE(None, c_void_p, c_char_p, c_long, c_long)


class EvalOpts(C.Structure):
    _fields_ = [("inputs", C.POINTER(EvalInput)), ("n_inputs", c_int), ("sp", SynthParams),
                ("layers", c_int_p), ("n_layers", c_int), ("heads", c_int_p), ("n_heads", c_int),
                ("tokens", c_int), ("threads", c_int), ("seed", c_u64), ("attention", c_int),
                ("per_head_rows", c_int), ("sched", c_void_p), ("device", c_int), ("cfg", C.POINTER(EvalConfig)),
                ("n_cfg", c_int), ("progress", PROGRESS_FN), ("progress_ctx", c_void_p),
                ("precomputed", c_void_p), ("precomputed_ctx", c_void_p)]  # MPI ranks' results: NULL here


class SensMetric(C.Structure):
    _fields_ = [("name", c_char_p), ("met", c_int), ("values_ok", c_int), ("needs_queries", c_int),
                ("attention", c_int)]


class SensOpts(C.Structure):
    _fields_ = [("dump", c_char_p), ("params", C.POINTER(QParams)), ("n_bits", c_int),
                ("metric", C.POINTER(SensMetric)), ("tensors", c_int * 2), ("per_head", c_int), ("tokens", c_int),
                ("threads", c_int), ("seed", c_u64), ("device", c_int), ("progress", PROGRESS_FN),
                ("progress_ctx", c_void_p), ("precomputed", c_void_p), ("precomputed_ctx", c_void_p),
                ("wo", c_void_p), ("wo_rows", c_int), ("wo_cols", c_int)]


class SensUnit(C.Structure):
    _fields_ = [("tensor", c_int), ("layer", c_int), ("head", c_int), ("window", c_int), ("coords", c_double),
                ("metric", C.POINTER(c_double)), ("bits_code", C.POINTER(c_double)),
                ("bits_total", C.POINTER(c_double))]


class SensResult(C.Structure):
    _fields_ = [("units", C.POINTER(SensUnit)), ("n", c_int), ("store", C.POINTER(c_double))]


class ModelConfig(C.Structure):  # lib/model.h tq_model_config (the fields read here and those before them)
    _fields_ = [("arch", c_int), ("arch_name", C.c_char * 16), ("name", C.c_char * 128), ("n_layers", c_int),
                ("n_embd", c_int), ("n_ff", c_int), ("n_vocab", c_int), ("n_head", c_int), ("n_kv_head", c_int),
                ("head_dim", c_int)]


class KvqOpts(C.Structure):  # lib/kvquant.h tq_kvq_opts
    _fields_ = [("cfg", EvalConfig), ("sched", c_void_p), ("recent", c_int), ("keep", C.POINTER(C.c_ubyte)),
                ("prefill_fp16", c_int), ("prompt", c_int), ("device", c_int), ("only", C.POINTER(C.c_ubyte))]


class PplResult(C.Structure):  # lib/kvquant.h tq_ppl_result
    _fields_ = [("ppl", c_double), ("ppl_ref", c_double), ("kl", c_double), ("top1", c_double),
                ("bits_total", c_double), ("nll", c_double), ("nll_ref", c_double),
                ("pos_kl", C.POINTER(c_double)), ("pos_dlogp", C.POINTER(c_double)),
                ("layer", c_void_p), ("n_layers", c_int)]  # per-layer stats: not asked for from Python yet


def _find():
    env = os.environ.get("TQ_LIB")
    here = os.path.dirname(os.path.abspath(__file__))
    cands = [env] if env else []
    cands += [os.path.join(here, "libtq.so"), os.path.join(here, "..", "..", "build", "libtq.so")]
    for c in cands:
        if c and os.path.exists(c):
            return os.path.abspath(c)
    raise ImportError("tq: cannot find libtq.so (looked in %s); run `make` in the tq source tree, or set TQ_LIB to "
                      "its build/libtq.so" % ", ".join(c for c in cands if c))


path = _find()
lib = C.CDLL(path)

P = C.POINTER
_protos = {
    "tq_error_msg": (c_char_p, []),
    "tq_error_clear": (None, []),
    "tq_format_by_name": (P(Format), [c_char_p]),
    "tq_format_of": (P(Format), [c_int]),
    "tq_qparams_default": (None, [P(QParams), c_int, c_int]),
    "tq_qparams_describe": (c_char_p, [P(QParams), c_char_p, c_size]),
    "tq_device_supports": (c_int, [c_int, P(QParams), c_int]),
    "tq_device_available": (c_int, [c_int]),
    "tq_device_quantize": (c_int, [c_int, P(QParams), SliceId, c_float_p, c_int, c_int, P(Codes)]),
    "tq_roundtrip": (c_int, [c_int, P(QParams), SliceId, c_float_p, c_int, c_int, c_float_p, P(c_double)]),
    "tq_dequantize": (c_int, [P(Codes), c_float_p]),
    "tq_codes_add": (c_void_p, [P(Codes), c_char_p, c_int, c_size]),
    "tq_codes_free": (None, [P(Codes)]),
    "tq_codes_bits_total": (c_double, [P(Codes)]),
    "tq_codes_payload_bytes": (c_size, [P(Codes)]),
    "tq_vocab_find": (c_int, [c_int, c_char_p]),
    "tq_vocab_name": (c_char_p, [c_int, c_int]),
    "tq_vocab_count": (c_int, [c_int]),
    "tq_metrics_head": (c_int, [P(MetricsOpts), c_float_p, c_int, c_float_p, c_float_p, c_float_p, c_float_p,
                                c_int, c_int, P(Metrics), P(Metrics)]),
    "tq_metrics_init": (None, [P(Metrics)]),
    "tq_dump_open": (c_int, [P(c_void_p), c_char_p]),
    "tq_dump_get_meta": (P(DumpMeta), [c_void_p]),
    "tq_dump_layer_shape": (P(LayerShape), [c_void_p, c_int]),
    "tq_dump_layer_attn": (c_int, [c_void_p, c_int, P(AttnSpec)]),
    "tq_dump_read_layer": (c_int, [c_void_p, c_int, c_int, c_int, P(Layer)]),
    "tq_layer_free": (None, [P(Layer)]),
    "tq_dump_close": (None, [c_void_p]),
    "tq_codes_open": (c_int, [P(c_void_p), c_char_p]),
    "tq_codes_get_meta": (P(CodesMeta), [c_void_p]),
    "tq_codes_read_layer": (c_int, [c_void_p, c_int, P(CodesLayer)]),
    "tq_codes_layer_free": (None, [P(CodesLayer)]),
    "tq_codes_close": (None, [c_void_p]),
    "tq_eval_configs_build": (c_int, [P(EvalConfigs), P(EvalAxes), c_int, c_int]),
    "tq_eval_configs_free": (None, [P(EvalConfigs)]),
    "tq_eval_input_shape": (c_int, [P(EvalOpts), c_int, c_int_p, c_int_p, c_int_p]),
    "tq_evaluate": (c_int, [P(EvalOpts), P(EvalRows)]),
    "tq_eval_rows_free": (None, [P(EvalRows)]),
    "tq_synth_params_default": (None, [P(SynthParams)]),
    "tq_synth_check": (c_int, [P(SynthParams)]),
    "tq_sens_metric_find": (P(SensMetric), [c_char_p]),
    "tq_sensitivity": (c_int, [P(SensOpts), P(SensResult)]),
    "tq_sens_free": (None, [P(SensResult)]),
    "tq_schedule_load": (c_int, [P(c_void_p), c_char_p]),
    "tq_schedule_free": (None, [c_void_p]),
    "tq_model_load": (c_int, [c_char_p, P(c_void_p)]),
    "tq_model_free": (None, [c_void_p]),
    "tq_model_get_config": (P(ModelConfig), [c_void_p]),
    "tq_model_set_threads": (None, [c_int]),
    "tq_gguf_open": (c_int, [c_char_p, P(c_void_p)]),
    "tq_gguf_close": (None, [c_void_p]),
    "tq_tokenizer_from_gguf": (c_int, [c_void_p, P(c_void_p)]),
    "tq_tokenizer_free": (None, [c_void_p]),
    "tq_tokenize": (c_int, [c_void_p, c_char_p, c_size, c_int, P(P(C.c_int32)), P(c_int)]),
    "tq_ppl_reference": (c_int, [c_void_p, P(C.c_int32), c_int, c_int, c_int, P(P(C.c_float))]),
    "tq_kvq_create": (c_int, [P(KvqOpts), c_void_p, P(c_void_p)]),
    "tq_kvq_free": (None, [c_void_p]),
    "tq_kvq_grid": (c_int, [P(KvqOpts), c_int]),
    "tq_ppl_run": (c_int, [c_void_p, P(KvqOpts), P(C.c_int32), c_int, c_int, c_int, P(C.c_float), c_int,
                           P(C.c_float), P(PplResult)]),
    "tq_ppl_result_free": (None, [P(PplResult)]),
}
libc = C.CDLL(None)
libc.free.argtypes = [c_void_p]
libc.free.restype = None
for _name, (_res, _args) in _protos.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

_names = (c_char_p * TQ_MET_COUNT).in_dll(lib, "tq_metric_names")
metric_names = [n.decode() for n in _names]


class Error(RuntimeError):
    """A libtq failure: the library's message (lib/tq.h's error channel) and its status."""

    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


def check(rc):
    """Raise ValueError (usage: bad parameters) or Error (runtime) with the library's message for a negative
    status; return rc otherwise."""
    if rc < 0:
        raw = lib.tq_error_msg()
        msg = raw.decode() if raw else "error %d" % rc
        if rc == -2:
            raise ValueError(msg)
        raise Error(rc, msg)
    return rc
