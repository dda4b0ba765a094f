"""The PyTorch peer of `tinyrlhf bench` for the Llama family: transformers' own `LlamaForCausalLM`
(random weights in the preset's shape, no download), PEFT's LoRA, timed the way tinyrlhf times
itself (median after warm-up), so the two print comparable lines.

    pip install torch transformers peft        # CPU is enough; add trl for --trl
    OMP_NUM_THREADS=2 python bench/llama_step.py --preset smollm2-135m
    # the same figures side by side with tinyrlhf's, and the ratio tinyrlhf / PyTorch:
    OMP_NUM_THREADS=2 python bench/llama_step.py --preset smollm2-135m --compare target/release/tinyrlhf
    # where each step's time goes: its matrix products one by one, both sides, and the rest
    OMP_NUM_THREADS=2 python bench/llama_step.py --preset smollm2-135m --products --compare target/release/tinyrlhf
    # what a user would run instead: TRL's DPOTrainer with a PEFT LoRA config, seconds per step
    OMP_NUM_THREADS=2 python bench/llama_step.py --preset smollm2-135m --trl

Figures, each in tokens per second:
- train_step: next-token cross-entropy on batch x seq random tokens, backward, AdamW (every weight).
- lora_dpo_step: PEFT LoRA (rank 8, alpha 16, PEFT's seven projections) on `pairs` pairs of a
  16-token prompt and 48-token chosen and rejected answers, concatenated into one batch as TRL does;
  the reference's log-probs with the adapters disabled (no gradients), the policy's through them,
  the sigmoid DPO loss (beta 0.1), backward, AdamW on the adapters.
- generate_kv_cache: sampling 64 new tokens after a 16-token prompt at batch 1 and 8, each step
  one forward of the new token with the cache.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.cache_utils import DynamicCache

from timing import (add_device_flags, compare as compare_with_tinyrlhf, device, median_time, step_ms, tokens, train_step_products,
                    train_step_secs, use_device)

# vocab, hidden, intermediate, layers, heads, kv heads, context: tinyrlhf's presets of the same names
PRESETS = {
    "llama-tiny": (2048, 96, 256, 4, 6, 2, 128),
    "smollm2-135m": (49152, 576, 1536, 30, 9, 3, 8192),
    "qwen2.5-0.5b": (151936, 896, 4864, 24, 14, 2, 32768),
}
LARGE_PARAMS = 30_000_000  # as tinyrlhf: smaller default batches above this
PROMPT_LEN = 16
ANSWER_LEN = 48
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def model_for(preset, vocab):
    default_vocab, d, inner, layers, heads, kv, ctx = PRESETS[preset]
    shape = dict(vocab_size=vocab or default_vocab, hidden_size=d, intermediate_size=inner, num_hidden_layers=layers,
                 num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=ctx,
                 tie_word_embeddings=True)
    if preset.startswith("qwen2"):
        model = Qwen2ForCausalLM(Qwen2Config(**shape, rms_norm_eps=1e-6, rope_theta=1e6))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape, rms_norm_eps=1e-5, rope_theta=1e5))
    return model.float().to(device())


def answer_logps(logits, ids):
    """Sum of the answer tokens' log-probs of each row: `logits` [n, t, vocab], `ids` [n, t]."""
    logps = torch.log_softmax(logits[:, PROMPT_LEN - 1:-1], -1).gather(2, ids[:, PROMPT_LEN:, None])
    return logps.squeeze(2).sum(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="llama-tiny,smollm2-135m")
    parser.add_argument("--vocab", type=int, help="default: the preset's own")
    parser.add_argument("--batch", type=int, help="default 16, 4 above 30 M parameters")
    parser.add_argument("--seq-len", type=int, help="default half the context, 128 above 30 M parameters")
    parser.add_argument("--dpo-pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", metavar="TINYRLHF_BIN",
                        help="also run `TINYRLHF_BIN bench --json` and print the ratio of each figure")
    parser.add_argument("--trl", action="store_true", help="also time TRL's DPOTrainer with PEFT LoRA")
    parser.add_argument("--products", action="store_true",
                        help="also time the train step's matrix products one by one (with --compare: beside tinyrlhf's)")
    add_device_flags(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(use_device(args.device))
    figures = {}
    for preset in args.preset.split(","):
        measure(args, preset, figures)
    if args.compare:
        compare(args, figures)


def measure(args, preset, figures):
    model = model_for(preset, args.vocab)
    vocab = model.config.vocab_size
    params = sum(p.numel() for p in model.parameters())
    large = params > LARGE_PARAMS
    batch = args.batch or (4 if large else 16)
    seq = args.seq_len or (128 if large else model.config.max_position_embeddings // 2)
    print(f"\ntorch · {preset} (llama, d {model.config.hidden_size}, {model.config.num_hidden_layers} layers, "
          f"{model.config.num_attention_heads} heads, {params / 1e6:.2f} M params)")

    def report(what, rows, value, text):
        figures[(preset, what, rows)] = value
        if text:
            print(text)

    t = train_step_secs(lambda ids: model(ids).logits, model.parameters(), batch, seq, vocab, args.steps)
    report("train_step", batch, batch * seq / t,
           f"  train step  batch {batch} x {seq} tokens: {t * 1e3:>9.1f} ms   {batch * seq / t:>9.0f} tok/s   "
           f"{6 * params * batch * seq / t / 1e9:.1f} GFLOP/s (6·N·tokens)")
    if args.products:
        products = train_step_products(model, batch * seq, max(args.steps, 3))
        figures[(preset, "products", None)], figures[(preset, "train_step_ms", None)] = products, t * 1e3
        total = sum(step_ms(p) for p in products.values())
        print(f"  the train step's matrix products on {batch * seq} tokens: {total:.0f} ms of the step's "
              f"{t * 1e3:.0f} ms ({100 * total / (t * 1e3):.0f}%)")

    if args.dpo_pairs:
        lora_dpo(args, preset, model, report)

    model.eval()
    for rows in (1, 8):
        prompt = tokens(rows, PROMPT_LEN, vocab, 7)

        @torch.no_grad()
        def cached():
            cache = DynamicCache()
            logits = model(prompt, past_key_values=cache, use_cache=True).logits[:, -1]
            for _ in range(args.new_tokens):
                nxt = torch.multinomial(logits.softmax(-1), 1)
                logits = model(nxt, past_key_values=cache, use_cache=True).logits[:, -1]

        tc = median_time(args.runs, cached)
        n = rows * args.new_tokens
        report("generate_kv_cache", rows, n / tc,
               f"  generate    batch {rows} x {args.new_tokens} new:  KV cache {n / tc:>8.0f} tok/s")
    if args.trl:
        trl_dpo(args, preset, vocab)


def lora_dpo(args, preset, model, report):
    from peft import LoraConfig, get_peft_model

    pairs, seq = args.dpo_pairs, PROMPT_LEN + ANSWER_LEN
    policy = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    optim = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-4)
    # chosen rows first, then rejected, as TRL's concatenated forward
    ids = tokens(2 * pairs, seq, model.config.vocab_size, 11)
    references = []

    def step():
        start = time.perf_counter()
        with torch.no_grad(), policy.disable_adapter():
            ref = answer_logps(policy(ids).logits, ids)
        references.append(time.perf_counter() - start)
        logps = answer_logps(policy(ids).logits, ids)
        margin = (logps[:pairs] - ref[:pairs]) - (logps[pairs:] - ref[pairs:])
        loss = -F.logsigmoid(0.1 * margin).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        loss.item()

    t = median_time(args.steps, step)
    reference = statistics.median(references[1:])  # the first is the warm-up's
    n = 2 * pairs * seq
    report("lora_dpo_step", pairs, n / t,
           f"  LoRA DPO step {pairs} pairs x {seq} tokens (rank 8): {t * 1e3:>7.1f} ms "
           f"(reference {reference * 1e3:.1f} ms)   {n / t:>9.0f} tok/s")
    report("lora_dpo_split", pairs, {"reference_ms": reference * 1e3, "step_ms": t * 1e3}, "")
    policy.unload()


def trl_dpo(args, preset, vocab):
    """TRL's DPOTrainer with a PEFT LoRA config on the same pairs (as text a word-level tokenizer
    maps back to the same ids), seconds per optimizer step."""
    from datasets import Dataset
    from peft import LoraConfig
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="t0", eos_token="t1")
    text = lambda row: " ".join(f"t{int(i)}" for i in row)
    pairs = args.dpo_pairs
    steps = args.steps + 2
    rows = []
    for s in range(steps * pairs):
        ids = tokens(2, PROMPT_LEN + ANSWER_LEN, vocab, 100 + s)
        rows.append({"prompt": text(ids[0, :PROMPT_LEN]), "chosen": " " + text(ids[0, PROMPT_LEN:]),
                     "rejected": " " + text(ids[1, PROMPT_LEN:])})
    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            times.append(time.perf_counter() - self.start)

    config = DPOConfig(output_dir="/tmp/llama_step_trl", per_device_train_batch_size=pairs, max_steps=steps,
                       learning_rate=3e-4, beta=0.1, use_cpu=True, report_to=[], save_strategy="no",
                       logging_steps=steps, max_length=PROMPT_LEN + ANSWER_LEN + 2, dataloader_num_workers=0,
                       disable_tqdm=True)
    trainer = DPOTrainer(model=model_for(preset, vocab), args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer,
                         peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    trainer.add_callback(Clock())
    trainer.train()
    t = statistics.median(times[2:])
    print(f"  TRL DPOTrainer + PEFT LoRA, {pairs} pairs a step: {t:.2f} s per step (median of {len(times) - 2})")


def compare(args, torch_figures):
    """Runs tinyrlhf's benchmark with the same settings; prints tok/s of both and their ratio."""
    cmd = [args.compare, "bench", "--json", "--preset", args.preset, "--steps", str(args.steps),
           "--new-tokens", str(args.new_tokens), "--runs", str(args.runs), "--dpo-pairs", str(args.dpo_pairs)]
    if args.products:
        cmd.append("--products")
    for flag, value in (("--vocab", args.vocab), ("--batch", args.batch), ("--seq-len", args.seq_len)):
        if value:
            cmd += [flag, str(value)]
    compare_with_tinyrlhf(cmd, torch_figures, args.backend, args.json_out)


if __name__ == "__main__":
    main()
