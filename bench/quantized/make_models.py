"""Writes GGUF files of real models' shapes with random weights, as quantized files people keep:
Qwen2.5-0.5B (tied embeddings, vocab 151,936, q/k/v biases) and Llama 3.2 1B (tied, vocab 128,256,
Llama 3's rope scaling), each as Q4_0 projections with a Q8_0 embedding (the Q4 mix gguf-py can
quantize: it writes no K-quants) and as F32 (the same weights widened, for the f32 comparison); with
`--f16`, as F16 only, for llama.cpp's `llama-quantize` to turn into any of its mixes (Q4_K_M...).

    python bench/quantized/make_models.py OUT_DIR [--f16] [qwen2.5-0.5b llama3.2-1b]

Needs numpy and the `gguf` package (PyPI). The metadata and tokenizer come from the converted fixture
`tests/fixtures/gguf/hf-qwen2.q8_0.gguf` (written by llama.cpp's own converter), its vocabulary padded
with `[PAD{i}]` tokens to the real size as llama.cpp's converter pads one, the shapes and the
pre-tokenizer changed to the real model's. Weights: N(0, 0.02), norms 1, seeded, so every run writes the same files.
"""

import sys
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize, quantize

T = gguf.GGMLQuantizationType
FIXTURE = Path(__file__).resolve().parents[2] / "tests/fixtures/gguf/hf-qwen2.q8_0.gguf"

SHAPES = {
    "qwen2.5-0.5b": dict(arch="qwen2", hidden=896, ffn=4864, layers=24, heads=14, kv_heads=2, vocab=151936,
                         rope_base=1e6, context=32768, bias=True, pre="qwen2"),
    "llama3.2-1b": dict(arch="llama", hidden=2048, ffn=8192, layers=16, heads=32, kv_heads=8, vocab=128256,
                        rope_base=5e5, context=131072, bias=False, pre="llama-bpe"),
}


def llama3_rope_freqs(head_dim, base, factor=32.0, low=1.0, high=4.0, original=8192):
    """The per-frequency divisors llama.cpp's converter writes as `rope_freqs.weight` for Llama 3.2."""
    freqs = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    low_wavelen, high_wavelen = original / low, original / high
    factors = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def tokenizer_fields(vocab):
    """The fixture's tokenizer, padded to `vocab` entries."""
    reader = gguf.GGUFReader(FIXTURE)
    field = lambda name: reader.fields[name]
    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode() for i in field("tokenizer.ggml.tokens").data]
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    merges = [bytes(field("tokenizer.ggml.merges").parts[i]).decode() for i in field("tokenizer.ggml.merges").data]
    pads = vocab - len(tokens)
    tokens += [f"[PAD{i}]" for i in range(pads)]
    types += [gguf.TokenType.UNUSED] * pads
    scalar = lambda name: int(field(name).parts[-1][0])
    template = bytes(field("tokenizer.chat_template").parts[-1]).decode()
    return tokens, types, merges, scalar("tokenizer.ggml.eos_token_id"), scalar("tokenizer.ggml.padding_token_id"), template


def write(name, shape, out_dir, precision):
    """`precision`: "q4_0" (with a Q8_0 embedding), "f32" (its values widened) or "f16"."""
    s = shape
    head_dim = s["hidden"] // s["heads"]
    path = out_dir / f"{name}.{precision}.gguf"
    arch = s["arch"]
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_block_count(s["layers"])
    writer.add_context_length(s["context"])
    writer.add_embedding_length(s["hidden"])
    writer.add_feed_forward_length(s["ffn"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_rope_freq_base(s["rope_base"])
    writer.add_layer_norm_rms_eps(1e-6 if arch == "qwen2" else 1e-5)
    if arch == "llama":
        writer.add_rope_dimension_count(head_dim)
    tokens, types, merges, eos, pad, template = tokenizer_fields(s["vocab"])
    writer.add_tokenizer_model("gpt2")
    # The real model's pre-tokenizer (the fixture's `gpt2` is a name llama.cpp does not load).
    writer.add_tokenizer_pre(s["pre"])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(eos)
    writer.add_pad_token_id(pad)
    writer.add_add_bos_token(False)
    writer.add_chat_template(template)

    rng = np.random.default_rng(0)

    def tensor(tname, rows, cols, qtype):
        values = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        if precision == "f16":
            writer.add_tensor(tname, values.astype(np.float16))
        elif precision == "f32":
            # The f32 file holds exactly what the quantized one computes with.
            writer.add_tensor(tname, dequantize(quantize(values, qtype), qtype).astype(np.float32))
        else:
            raw = quantize(values, qtype)
            writer.add_tensor(tname, raw, raw_shape=raw.shape, raw_dtype=qtype)

    d, kv = s["hidden"], s["kv_heads"] * head_dim
    tensor("token_embd.weight", s["vocab"], d, T.Q8_0)
    if arch == "llama":
        writer.add_tensor("rope_freqs.weight", llama3_rope_freqs(head_dim, s["rope_base"]))
    for i in range(s["layers"]):
        b = f"blk.{i}."
        writer.add_tensor(b + "attn_norm.weight", np.ones(d, dtype=np.float32))
        writer.add_tensor(b + "ffn_norm.weight", np.ones(d, dtype=np.float32))
        tensor(b + "attn_q.weight", d, d, T.Q4_0)
        tensor(b + "attn_k.weight", kv, d, T.Q4_0)
        tensor(b + "attn_v.weight", kv, d, T.Q4_0)
        tensor(b + "attn_output.weight", d, d, T.Q4_0)
        if s["bias"]:
            for proj, width in [("q", d), ("k", kv), ("v", kv)]:
                writer.add_tensor(b + f"attn_{proj}.bias", (rng.standard_normal(width) * 0.02).astype(np.float32))
        tensor(b + "ffn_gate.weight", s["ffn"], d, T.Q4_0)
        tensor(b + "ffn_up.weight", s["ffn"], d, T.Q4_0)
        tensor(b + "ffn_down.weight", d, s["ffn"], T.Q4_0)
    writer.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{path}: {path.stat().st_size / 2**20:.0f} MiB")


def main():
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    f16 = "--f16" in sys.argv[2:]
    for name in [a for a in sys.argv[2:] if a != "--f16"] or list(SHAPES):
        for precision in ["f16"] if f16 else ["q4_0", "f32"]:
            write(name, SHAPES[name], out_dir, precision)


if __name__ == "__main__":
    main()
