"""The peer of run.sh's LoRA DPO row: transformers + PEFT on the same shape, the same rankings and
the same tokens, with its base in f32 or bf16 (random weights: only memory and time are compared).
Prints the step's time and tokens/s and the process's peak RSS, as one table row.

    python bench/quantized/peer.py MODEL DTYPE RANKINGS.jsonl TOKENIZER.gguf

MODEL is a shape of make_models.py (qwen2.5-0.5b, llama3.2-1b), DTYPE f32 or bf16; the tokenizer
(and its chat template) is read from one of make_models.py's files, so the answers are the same
tokens tinyrlhf trains on. The step is DPO as tinyrlhf's: the reference (the base, adapters off)
scores every answer once up front; then each ranking of K answers gives its C(K,2) pairs weighted
1/C(K,2), one forward and backward of the policy over every answer, one AdamW update (lr 5e-6,
beta 0.1, LoRA rank 8, alpha 16 on the seven projections). Needs torch, transformers, peft, gguf.
"""

import json
import resource
import sys
import time
from itertools import combinations
from pathlib import Path

import torch
import torch.nn.functional as F
from make_models import SHAPES
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def config_for(name):
    s = SHAPES[name]
    common = dict(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], max_position_embeddings=s["context"],
                  rope_theta=s["rope_base"], tie_word_embeddings=True)
    if s["arch"] == "qwen2":
        return Qwen2Config(rms_norm_eps=1e-6, **common)
    rope = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
    return LlamaConfig(rms_norm_eps=1e-5, rope_scaling=rope, **common)


def answer_logps(model, ids, answer_mask):
    """Each row's summed log-probability of its answer tokens: [rows]."""
    logits = model(input_ids=ids, attention_mask=(ids != -1).long()).logits[:, :-1].float()
    logps = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None]).squeeze(2)
    return (logps * answer_mask[:, 1:]).sum(1)


def main():
    name, dtype, rankings_file, tokenizer_gguf = sys.argv[1:5]
    torch.manual_seed(0)
    gguf = Path(tokenizer_gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    rows, masks = [], []
    rankings = [json.loads(line) for line in open(rankings_file)]
    for ranking in rankings:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": ranking["prompt"]}], tokenize=False,
                                               add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        for answer in ranking["completions"]:
            answer_ids = tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            rows.append(prompt_ids + answer_ids)
            masks.append([0] * len(prompt_ids) + [1] * len(answer_ids))
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.eos_token_id] * (width - len(r)) for r in rows])
    answer_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.float32)
    tokens = sum(map(len, rows))

    base = AutoModelForCausalLM.from_config(config_for(name), dtype={"f32": torch.float32, "bf16": torch.bfloat16}[dtype])
    policy = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=5e-6)

    start = time.perf_counter()
    with torch.no_grad(), policy.disable_adapter():
        reference = answer_logps(policy, ids, answer_mask)
    reference_s = time.perf_counter() - start

    def step():
        logps = answer_logps(policy, ids, answer_mask)
        k = len(rankings[0]["completions"])
        terms = []
        for r in range(len(rankings)):
            for better, worse in combinations(range(k), 2):  # ranking order: best first
                a, b = r * k + better, r * k + worse
                margin = (logps[a] - reference[a]) - (logps[b] - reference[b])
                terms.append(-F.logsigmoid(0.1 * margin) / (k * (k - 1) / 2))
        loss = torch.stack(terms).sum() / len(rankings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()
    step_s = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"| {name}, transformers {dtype} base | LoRA DPO, 1 step (PEFT, torch {torch.__version__}, {torch.get_num_threads()} threads) "
          f"| {peak_gib:.2f} GiB | step {step_s:.1f} s: {tokens / step_s:.0f} tok/s ({len(rows)} answers, {tokens} tokens; "
          f"the reference's pass before it {reference_s:.1f} s) |")


if __name__ == "__main__":
    main()
