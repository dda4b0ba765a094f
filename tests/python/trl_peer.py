"""Transformers + PEFT's logits for an adapter TRL trained, for the Rust round-trip test.

usage: trl_peer.py BASE_DIR ADAPTER_DIR IDS_JSON
BASE_DIR: the model TRL started from; ADAPTER_DIR: what `trl dpo` saved (PEFT's layout);
IDS_JSON: one sequence of token ids. Prints {"logits": [[...] per position], "moved": the largest
logit difference the adapter makes over the base}.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
with torch.no_grad():
    before = base(torch.tensor([ids])).logits[0]
adapted = PeftModel.from_pretrained(base, adapter_dir).eval()
with torch.no_grad():
    after = adapted(torch.tensor([ids])).logits[0]
json.dump({"logits": after.tolist(), "moved": (after - before).abs().max().item()}, sys.stdout)
