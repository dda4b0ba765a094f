"""The PyTorch peer of `tinyrlhf bench`: the same GPT-2, the same training step and the same
generation, timed the same way (median after warm-up), so the two print comparable lines.

    pip install torch          # CPU is enough; the CUDA wheel also runs on CPU
    OMP_NUM_THREADS=2 python bench/gpt2_step.py --preset tiny,small
    # the same figures side by side with tinyrlhf's, and the ratio tinyrlhf / PyTorch:
    OMP_NUM_THREADS=2 python bench/gpt2_step.py --compare target/release/tinyrlhf

The model is GPT-2 as tinyrlhf computes it: learned positions, pre-LayerNorm (eps 1e-5), fused qkv,
GELU tanh, tied LM head, no dropout. Training: next-token cross-entropy, backward, AdamW.
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from timing import add_device_flags, compare as compare_with_tinyrlhf, device, median_time, tokens, train_step_secs, use_device

PRESETS = {  # n_embd, n_layer, n_head, n_positions
    "tiny": (128, 4, 4, 128),
    "small": (256, 6, 8, 256),
    "gpt2-124m": (768, 12, 12, 1024),
}
PROMPT_LEN = 16


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x, cache=None):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        heads = lambda z: z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        t_keys = k.shape[2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.n_head)
        causal = torch.ones(t, t_keys, dtype=torch.bool, device=x.device).tril(diagonal=t_keys - t)
        scores = scores.masked_fill(~causal, -1e9)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.c_proj(out)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, d, n_layer, n_head, n_positions):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_positions, d)
        self.h = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids, start=0, caches=None):
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for i, block in enumerate(self.h):
            x = block(x, None if caches is None else caches[i])
        return self.ln_f(x) @ self.wte.weight.T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny,small")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", metavar="TINYRLHF_BIN",
                        help="also run `TINYRLHF_BIN bench --json` and print the ratio of each figure")
    add_device_flags(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(use_device(args.device))
    figures = {}

    def report(preset, what, batch, tok_s, text):
        figures[(preset, what, batch)] = tok_s
        if text:
            print(text)

    for preset in args.preset.split(","):
        d, n_layer, n_head, ctx = PRESETS[preset]
        seq = ctx // 2
        model = Gpt(args.vocab, d, n_layer, n_head, ctx).to(device())
        params = sum(p.numel() for p in model.parameters())
        print(f"\ntorch · {preset} (d {d}, {n_layer} layers, {n_head} heads, {params / 1e6:.2f} M params)")

        t = train_step_secs(model, model.parameters(), args.batch, seq, args.vocab, args.steps)
        n_tok = args.batch * seq
        report(preset, "train_step", args.batch, n_tok / t,
               f"  train step  batch {args.batch} x {seq} tokens: {t * 1e3:>9.1f} ms   {n_tok / t:>9.0f} tok/s   "
               f"{6 * params * n_tok / t / 1e9:.1f} GFLOP/s (6·N·tokens)")

        for batch in (1, 8):
            prompt = tokens(batch, PROMPT_LEN, args.vocab, 7)

            @torch.no_grad()
            def cached():
                caches = [dict() for _ in model.h]
                logits = model(prompt, 0, caches)[:, -1]
                pos = PROMPT_LEN
                for _ in range(args.new_tokens):
                    nxt = torch.multinomial(logits.softmax(-1), 1)
                    logits = model(nxt, pos, caches)[:, -1]
                    pos += 1

            @torch.no_grad()
            def uncached():
                seqs = prompt
                for _ in range(args.new_tokens):
                    nxt = torch.multinomial(model(seqs)[:, -1].softmax(-1), 1)
                    seqs = torch.cat([seqs, nxt], dim=1)

            tc = median_time(args.runs, cached)
            tu = median_time(args.runs, uncached)
            n = batch * args.new_tokens
            report(preset, "generate_kv_cache", batch, n / tc,
                   f"  generate    batch {batch} x {args.new_tokens} new:  KV cache {n / tc:>8.0f} tok/s   "
                   f"no cache {n / tu:>8.0f} tok/s   ({tu / tc:.1f}x)")
            report(preset, "generate_no_cache", batch, n / tu, None)

    if args.compare:
        compare(args, figures)


def compare(args, torch_figures):
    """Runs tinyrlhf's benchmark with the same settings; prints tok/s of both and their ratio."""
    cmd = [args.compare, "bench", "--json", "--preset", args.preset, "--vocab", str(args.vocab),
           "--batch", str(args.batch), "--steps", str(args.steps), "--new-tokens", str(args.new_tokens),
           "--runs", str(args.runs)]
    compare_with_tinyrlhf(cmd, torch_figures, args.backend, args.json_out)


if __name__ == "__main__":
    main()
