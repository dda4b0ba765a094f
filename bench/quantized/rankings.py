"""Rankings of fixed length for the memory benchmark, so every run trains on the same tokens:
for the first N prompts of a prompts file, K answers of W words drawn (seeded) from a small word
list, ranked in the order written. Answers a random-weight model samples are noise whose length
varies with the vocabulary; these are text of a known size.

    python bench/quantized/rankings.py PROMPTS.jsonl N K W > rankings.jsonl
"""

import json
import random
import sys

WORDS = (
    "the a model answer helps people when it is short clear and kind so that readers can follow each "
    "step of the idea without losing track of what matters most in daily life at home or work"
).split()


def main():
    prompts_file, n, k, n_words = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(0)
    prompts = [json.loads(line)["prompt"] for line in open(prompts_file)][:n]
    for prompt in prompts:
        answers = [" ".join(rng.choice(WORDS) for _ in range(n_words)) + "." for _ in range(k)]
        print(json.dumps({"prompt": prompt, "completions": answers, "ranking": list(range(k)), "finished": [True] * k}))


if __name__ == "__main__":
    main()
