"""The quantized linears against a straightforward dequantise-then-matmul reference, and the kernels really used."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scratchllm.quantization.int4 as int4
import scratchllm.quantization.int8 as int8
from scratchllm.errors import ConfigError
from scratchllm.quantization import Int4Linear, Int8Linear, QuantConfig


def linear(n_in: int = 128, n_out: int = 64, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def test_int8_rounds_each_weight_to_half_a_step_of_its_row() -> None:
    w = linear().weight
    q, scales = int8.quantize_int8(w)
    assert q.dtype == torch.int8 and scales.shape == (64,)
    err = (int8.dequantize_int8(q, scales) - w).abs()
    assert (err <= scales[:, None] / 2 + 1e-7).all()
    assert (q.abs().amax(1) == 127).all()  # each row's largest weight uses the full range


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_int8_kernel_matches_the_reference(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, tol: float) -> None:
    layer = Int8Linear.from_linear(linear()).to(dtype)
    x = torch.randn(2, 5, 128, dtype=dtype)
    expected = int8.reference_int8_linear(x.float(), layer.qweight, layer.scales.float(), layer.bias.float())
    monkeypatch.setattr(int8, "reference_int8_linear", lambda *a: pytest.fail("the int8 kernel was not used"))
    y = layer(x)
    assert y.dtype == dtype and y.shape == (2, 5, 64)
    torch.testing.assert_close(y.float(), expected, atol=tol, rtol=tol)


def test_int8_kernel_survives_a_misaligned_matrix() -> None:
    layer = Int8Linear.from_linear(linear())
    buffer = torch.empty(64 * 128 + 8, dtype=torch.int8)
    layer.qweight = buffer[8:].view(64, 128).copy_(layer.qweight)  # 8 bytes off: the raw kernel segfaults on this
    x = torch.randn(3, 128, dtype=torch.bfloat16)
    expected = int8.reference_int8_linear(x.float(), layer.qweight, layer.scales, layer.bias)
    torch.testing.assert_close(layer(x).float(), expected, atol=5e-2, rtol=5e-2)


def test_int8_falls_back_to_the_reference_for_other_dtypes() -> None:
    layer = Int8Linear.from_linear(linear()).double()
    x = torch.randn(3, 128, dtype=torch.float64)
    torch.testing.assert_close(layer(x), int8.reference_int8_linear(x, layer.qweight, layer.scales, layer.bias))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_codes_are_within_half_a_step_of_each_group(symmetric: bool, group_size: int) -> None:
    w = linear().weight
    packed, scales, zeros = int4.quantize_int4(w, group_size, symmetric)
    assert packed.shape == (64, 64) and packed.dtype == torch.uint8 and scales.shape == (64, 128 // group_size)
    err = (int4.dequantize_int4(packed, scales, zeros) - w).abs().view(64, -1, group_size)
    # half a step, plus what bf16 rounding of the group's max (symmetric) / min (asymmetric) can add
    assert (err <= scales.float()[..., None] * 0.51 + 1e-6).all()
    if symmetric:
        assert (zeros == 0).all()


def test_nibble_packing_round_trips() -> None:
    codes = torch.randint(0, 16, (16, 40), dtype=torch.uint8)
    assert torch.equal(int4.unpack_nibbles(int4.pack_nibbles(codes)), codes)
    assert int4.pack_nibbles(torch.tensor([[1, 2]], dtype=torch.uint8)).item() == 0x21  # even column: low nibble


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_kernel_matches_the_reference(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, tol: float,
                                           symmetric: bool) -> None:
    layer = Int4Linear.from_linear(linear(), 32, symmetric).to(dtype)
    assert layer.scales.dtype == torch.bfloat16  # stored scales are not cast with the activations
    x = torch.randn(2, 5, 128, dtype=dtype)
    expected = int4.reference_int4_linear(x.float(), layer.qweight, layer.scales, layer.zeros, layer.bias.float())
    monkeypatch.setattr(int4, "reference_int4_linear", lambda *a: pytest.fail("the int4 kernel was not used"))
    y = layer(x)
    assert y.dtype == dtype and y.shape == (2, 5, 64)
    torch.testing.assert_close(y.float(), expected, atol=tol, rtol=tol)


def test_int4_shapes_the_kernel_refuses_use_the_reference() -> None:
    layer = Int4Linear.from_linear(linear(n_out=8), 32, False)  # 8 rows: the kernel wants a multiple of 16
    assert not int4.kernel_fits(8, 128, 32)
    x = torch.randn(3, 128)
    torch.testing.assert_close(layer(x), int4.reference_int4_linear(x, layer.qweight, layer.scales, layer.zeros,
                                                                    layer.bias))


def test_quantized_error_is_small_next_to_the_output() -> None:
    base = linear(n_in=256, n_out=128)
    x = torch.randn(8, 256)
    y = base(x).detach()
    rel = {name: float((layer(x) - y).norm() / y.norm()) for name, layer in (
        ("int8", Int8Linear.from_linear(base)), ("int4", Int4Linear.from_linear(base, 32, False)))}
    assert rel["int8"] < 0.01 and rel["int4"] < 0.1 and rel["int8"] < rel["int4"]


@pytest.mark.parametrize("bad", [16, 48, 512])
def test_unsupported_group_size_names_the_choices(bad: int) -> None:
    with pytest.raises(ConfigError, match="choose one of 32, 64, 128, 256"):
        QuantConfig("int4", group_size=bad)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="int8, int4"):
        QuantConfig("int3")


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_many_rows_use_dequantise_then_matmul(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """A prefill of more rows than the decode kernel is made for goes through the reference (faster there)."""
    layer = Int8Linear.from_linear(linear()) if kind == "int8" else Int4Linear.from_linear(linear(), 32, False)
    module = int8 if kind == "int8" else int4
    calls = []
    reference = getattr(module, f"reference_{kind}_linear")
    monkeypatch.setattr(module, f"reference_{kind}_linear", lambda *a: calls.append(1) or reference(*a))
    few, many = torch.randn(1, int8.KERNEL_MAX_ROWS, 128), torch.randn(2, int8.KERNEL_MAX_ROWS, 128)
    layer(few)
    assert not calls  # the kernel
    y = layer(many)
    assert calls and y.shape == (2, int8.KERNEL_MAX_ROWS, 64)


def test_read_tensors_equals_safetensors_and_gives_aligned_storage(tmp_path) -> None:
    """The quantized file's reader (plain reads, no memory map): same tensors as safetensors' own loader, every
    storage 64-byte aligned (what _weight_int8pack_mm needs), a truncated file named as such."""
    from safetensors.torch import load_file, save_file

    from scratchllm.errors import CheckpointError
    from scratchllm.quantization.io import read_tensors

    torch.manual_seed(0)
    tensors = {"a": torch.randint(-128, 127, (7, 5), dtype=torch.int8), "b": torch.randn(3, dtype=torch.bfloat16),
               "c": torch.randn(2, 3), "d": torch.empty(0), "e": torch.tensor(3, dtype=torch.int64)}
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    read = dict(read_tensors(path))
    expected = load_file(str(path))
    assert read.keys() == expected.keys()
    for name, t in read.items():
        assert t.dtype == expected[name].dtype and torch.equal(t, expected[name]), name
        assert t.numel() == 0 or t.data_ptr() % 64 == 0
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="truncated"):
        dict(read_tensors(path))


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu"), reason="no CPU int4 kernel")
@pytest.mark.parametrize("rows", [32, int4.PACK_ROWS + 16, 2 * int4.PACK_ROWS])
def test_int4_kernel_layout_in_chunks_equals_one_conversion(rows: int) -> None:
    """The kernel layout is made PACK_ROWS rows at a time (a 50k-row head converted at once briefly took ~190 MB):
    the bytes must equal torch's conversion of the whole matrix, a partial last chunk included."""
    codes = torch.randint(0, 16, (rows, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(rows))
    whole = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
    assert torch.equal(int4._kernel_layout(int4.pack_nibbles(codes)), whole)


@pytest.mark.skipif(not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"), reason="no CPU int4 kernel")
def test_int4_kernel_layout_is_made_once_per_codes_and_the_table_follows_the_scales(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching float32 / bfloat16 inputs remakes only the small scale table, not the slow kernel layout; an
    in-place change of the codes or of the scales is picked up (the cache keys on each tensor's version)."""
    layer = Int4Linear.from_linear(linear(), 32, False)
    conversions = []
    real = int4._kernel_layout
    monkeypatch.setattr(int4, "_kernel_layout", lambda q: conversions.append(1) or real(q))
    x = torch.randn(3, 128)
    layer(x), layer(x.bfloat16()), layer(x)
    assert len(conversions) == 1
    with torch.no_grad():
        layer.scales.mul_(2)
    torch.testing.assert_close(layer(x), int4.reference_int4_linear(x, layer.qweight, layer.scales, layer.zeros,
                                                                    layer.bias), atol=1e-4, rtol=1e-4)
    assert len(conversions) == 1
    with torch.no_grad():
        layer.qweight.copy_(layer.qweight.flip(0))
    torch.testing.assert_close(layer(x), int4.reference_int4_linear(x, layer.qweight, layer.scales, layer.zeros,
                                                                    layer.bias), atol=1e-4, rtol=1e-4)
    assert len(conversions) == 2
