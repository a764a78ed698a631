"""Weight-only quantization: int8 per output channel and 4-bit group-wise, with their files (see each module)."""

from scratchllm.quantization.int4 import GROUP_SIZES, Int4Linear, dequantize_int4, quantize_int4, reference_int4_linear
from scratchllm.quantization.int8 import Int8Linear, dequantize_int8, quantize_int8, reference_int8_linear
from scratchllm.quantization.io import load_quantized, read_meta, save_quantized, weight_bytes
from scratchllm.quantization.model import METHODS, QuantConfig, QuantizedEmbedding, quantize_model, quantized_skeleton

__all__ = [
    "GROUP_SIZES", "METHODS", "Int4Linear", "Int8Linear", "QuantConfig", "QuantizedEmbedding", "dequantize_int4",
    "dequantize_int8", "load_quantized", "quantize_int4", "quantize_int8", "quantize_model", "quantized_skeleton",
    "read_meta", "reference_int4_linear", "reference_int8_linear", "save_quantized", "weight_bytes",
]
