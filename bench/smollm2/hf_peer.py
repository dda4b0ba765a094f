"""transformers' side of the SmolLM2-135M-Instruct proof (opt-in; needs torch, transformers, gguf,
accelerate: `pip install torch transformers gguf accelerate`).

  python hf_peer.py convert SmolLM2-135M-Instruct.Q4_1.gguf OUT
      reads the GGUF with transformers (`gguf_file=`), dequantised to f32, and saves a model folder
      (config.json, model.safetensors, tokenizer files, chat template) that tinyrlhf loads.
  python hf_peer.py greedy FOLDER_OR_GGUF PROMPTS.jsonl N NEW_TOKENS
      prints JSON: for the first N prompts, the chat-template ids (`apply_chat_template` with the
      generation prompt; for a model without a chat template, a base model, the prompt as written
      with the BOS its tokenizer adds), the logits after the prompt (`last_logits`) and
      transformers' greedy continuation, stopping at EOS. A `.gguf` path is read with `gguf_file=`.
"""

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def convert(gguf: str, out: str) -> None:
    folder, name = os.path.split(os.path.abspath(gguf))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    # A GGUF load leaves a quantizer behind; the weights are already plain f32 tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def greedy(path: str, prompts_path: str, n: int, new_tokens: int) -> None:
    torch.manual_seed(0)
    folder, source = path, {}
    if path.endswith(".gguf"):
        folder, name = os.path.split(os.path.abspath(path))
        source = {"gguf_file": name}
    tokenizer = AutoTokenizer.from_pretrained(folder, **source)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, **source).eval()
    prompts = [json.loads(line)["prompt"] for line in open(prompts_path) if line.strip()][:n]
    cases = []
    for prompt in prompts:
        if tokenizer.chat_template is None:
            ids = tokenizer(prompt)["input_ids"]
        else:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        with torch.no_grad():
            last_logits = model(torch.tensor([ids])).logits[0, -1].tolist()
            out = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id)
        answer = out[0, len(ids):].tolist()
        cases.append({"prompt": prompt, "ids": list(ids), "last_logits": last_logits, "greedy": answer, "text": tokenizer.decode(answer, skip_special_tokens=True)})
    json.dump({"eos_token_id": tokenizer.eos_token_id, "cases": cases}, sys.stdout, indent=1)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "convert":
        convert(*args)
    elif command == "greedy":
        greedy(args[0], args[1], int(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown command {command!r}: use convert or greedy")
