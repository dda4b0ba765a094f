"""Checks a tinyrlhf LoRA run's `OUT/adapter.gguf` in llama.cpp itself (opt-in: needs torch,
transformers, peft, gguf and llama-cpp-python, which builds llama.cpp from its PyPI sdist).

    python bench/gguf/llama_cpp_adapter.py BASE.gguf OUT

For a few chat prompts it compares what the adapter changes in the logits (with it minus without
it, over every position and token) in llama.cpp (`Llama(model_path=BASE, lora_path=OUT/adapter.gguf)`)
and in transformers + PEFT (`PeftModel.from_pretrained(base, OUT/adapter)`, the base read from the
same GGUF), and prints one JSON line: the correlation of the two changes, their relative error, and
how far the two bases' logits already are apart.
llama.cpp computes a Q4 base with its own quantised kernels, so the bases differ a little; the
adapter's change is what must agree.
"""

import json
import os
import sys

import numpy as np
import torch
from llama_cpp import Llama
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = ["What is the capital of France?", "Give me three tips for sleeping better.", "How do I boil an egg?"]


def llama_cpp_logits(path, lora, ids):
    llm = Llama(model_path=path, lora_path=lora, logits_all=True, n_ctx=512, verbose=False, seed=0)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def main(base_gguf, out):
    folder, name = os.path.split(os.path.abspath(base_gguf))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32), os.path.join(out, "adapter")).eval()
    ours, theirs, base_gap = [], [], []
    for prompt in PROMPTS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        ids = list(ids)
        with torch.no_grad():
            hf_base = base(torch.tensor([ids])).logits[0].double().numpy()
            hf = tuned(torch.tensor([ids])).logits[0].double().numpy() - hf_base
        cpp_base = llama_cpp_logits(base_gguf, None, ids)
        cpp = llama_cpp_logits(base_gguf, os.path.join(out, "adapter.gguf"), ids) - cpp_base
        base_gap.append((cpp_base - hf_base).ravel())
        ours.append(cpp.ravel())
        theirs.append(hf.ravel())
    ours, theirs, base_gap = np.concatenate(ours), np.concatenate(theirs), np.concatenate(base_gap)
    print(json.dumps({
        "positions_x_vocab": int(ours.size),
        "change_rms_transformers_peft": float(np.sqrt((theirs**2).mean())),
        "change_rms_llama_cpp": float(np.sqrt((ours**2).mean())),
        "base_rms_gap_llama_cpp_vs_transformers": float(np.sqrt((base_gap**2).mean())),
        "correlation": float(np.corrcoef(ours, theirs)[0, 1]),
        "relative_error": float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
