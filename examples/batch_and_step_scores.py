"""Several prompts in one call, a different attributed function, and step scores.

    python examples/batch_and_step_scores.py

Shows: a batch of prompts (left padding handled inside), ``attributed_fn="probability"``,
per-step scores (probability and entropy of each generated token), a chat-formatted prompt,
and saving to ``.safetensors`` instead of ``.json``.
"""

from __future__ import annotations

from pathlib import Path

import genattrib

PROMPTS = ["The capital of France is", "Water boils at a temperature of"]


def describe(seq) -> None:
    print(f"\n{seq.prompt_tokens} -> {seq.generated_text!r}")
    prob, ent = seq.step_scores["probability"], seq.step_scores["entropy"]
    for j, token in enumerate(seq.target_tokens):
        row = seq.scores[j].nan_to_num(nan=0.0).abs()
        top = int(row.argmax())
        print(f"  {token!r:>14}  p={prob[j]:.3f}  H={ent[j]:.2f} nats  most from {seq.tokens[top]!r}")


def main() -> None:
    model = genattrib.load_model(method="input_x_gradient")
    out = model.attribute(
        PROMPTS,
        max_new_tokens=6,
        batch_size=2,
        attributed_fn="probability",
        step_scores=["probability", "entropy"],
    )
    for seq in out.sequences:
        describe(seq)
    out[1].show()  # only the second prompt

    # Instruct models: pass chat messages; the tokenizer's chat template formats them.
    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    chat = model.attribute(messages, chat=True, max_new_tokens=4, step_scores=["probability"])
    print(f"\nchat reply: {chat.sequences[0].generated_text!r}")

    path = Path("artifacts/batch.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    print(f"saved {path}; reload equal: {genattrib.FeatureAttributionOutput.load(path).equals(out)}")


if __name__ == "__main__":
    main()
