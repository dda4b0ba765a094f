"""Loads what a LoRA run wrote with Hugging Face transformers and PEFT, for the Rust interop test.

usage: peft_peer.py BASE_DIR RUN_DIR
BASE_DIR: the model the run started from; RUN_DIR: the run's output (the merged model, and the
adapter alone in RUN_DIR/adapter). Prints {"peft_vs_merged", "merged_vs_base"}: the largest logit
differences on the chat template's rendering of one prompt (made by transformers from our
tokenizer_config.json).
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_dir, run_dir = sys.argv[1], sys.argv[2]
# AutoModelForCausalLM: GPT-2 and the Llama family (Llama, Qwen2, Qwen3) alike, by config.json's model_type.
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
merged = AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch.float32).eval()
adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), f"{run_dir}/adapter").eval()
tokenizer = AutoTokenizer.from_pretrained(run_dir)
ids = tokenizer.apply_chat_template([{"role": "user", "content": "What does a dictionary map?"}], add_generation_prompt=True, return_tensors="pt")
ids = ids["input_ids"] if hasattr(ids, "keys") else ids
with torch.no_grad():
    b, m, a = base(ids).logits, merged(ids).logits, adapted(ids).logits
json.dump({"peft_vs_merged": (a - m).abs().max().item(), "merged_vs_base": (m - b).abs().max().item()}, sys.stdout)
