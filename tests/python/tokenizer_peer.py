"""Encodes and decodes with Hugging Face's Python `tokenizers`, for the Rust interop test.

usage: tokenizer_peer.py TOKENIZER_JSON STRINGS_JSON
Prints {"ids": [[...], ...], "decoded": [...]} for the list of strings in STRINGS_JSON.
"""
import json
import sys

from tokenizers import Tokenizer

tokenizer = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as f:
    strings = json.load(f)
ids = [tokenizer.encode(s, add_special_tokens=False).ids for s in strings]
decoded = [tokenizer.decode(i, skip_special_tokens=False) for i in ids]
json.dump({"ids": ids, "decoded": decoded}, sys.stdout)
