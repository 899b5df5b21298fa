"""Reference values that w1_unittest.py compares student outputs against.

Computed from the pretrained weights with the reference solutions, and chosen to hold
on any machine: log probabilities are compared with a tolerance, greedy generation
probes are kept only while the top two choices stay clearly apart, and no sampled text
is ever compared.

    python -m deepngrams reference-values           # rewrite model/reference_values.json
    python -m deepngrams reference-values --check   # recompute and compare with the committed file
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.config import GREEDY_MARGIN, PADDING_ID, REFERENCE_PATH
from deepngrams.lm.data import build_vocab, load_lines, split_lines
from deepngrams.lm.train import evaluate_log_perplexity
from deepngrams.atomic import atomic_path
from deepngrams.lm.weights import load_pretrained

LOG_PROB_ATOL = 2e-3  # float32 on different CPUs/GPUs, different op orders
PERPLEXITY_ATOL = 2e-3

MAX_PROBES = 3
LINE_CASES = ["abc xyz", "To be, or not to be: that is the question.", "HAMLET\tWho's there?",
              "Ünïcödé ✓ maps to [UNK]", ""]
# The second opens with a typographic quote, which the vocabulary lacks: an '[UNK]' (id 0) the model must
# read like any other id (an Embedding with mask_zero=True would skip it).
PROBE_TEXTS = ["ROMEO\tBut soft, what light", "\u201cTo be, or not to be, that is"]
# Candidates: the longest clear greedy continuations are kept. Many, because which prefixes a
# model continues clearly changes with every training run.
GREEDY_PREFIXES = ["[Exeunt", "[Exeunt.]\n", "Farewell, ", "The king ", "What say you", "I do beseech you",
                   "QUEEN ELIZABETH\t", "Here comes ", "Thou art ", "I thank you", "I'll ", "Now, by my ",
                   "Well, ", "Let me see", "I pray you, ", "Good morrow, ", "What's the matter", "How now, ",
                   "God save ", "I warrant ", "give me your hand", "With all my heart", "Come, come, ",
                   "Ay, my lord", "I beseech your ", "God be with you", "Good night", "Welcome, "]


def _ids(text: str, vocab: list[str]) -> list[int]:
    return [int(i) for i in solution.line_to_tensor(text, vocab).numpy()]


def greedy_probe(model, vocab: list[str], prefix: str, max_chars: int = 12) -> tuple[str, float]:
    """Greedy continuation of `prefix`, stopped before the first step whose top-two margin is small."""
    ids = tf.constant([_ids(prefix, vocab)])
    log_probs, state = model(ids, return_state=True)
    out, margins = [], []
    step = log_probs[0, -1].numpy()
    for _ in range(max_chars):
        step[:2] = -np.inf  # never [UNK] or padding
        top2 = np.sort(step)[-2:]
        if top2[1] - top2[0] < GREEDY_MARGIN:
            break
        best = int(np.argmax(step))
        out.append(vocab[best])
        margins.append(float(top2[1] - top2[0]))
        log_probs, state = model(tf.constant([[best]]), states=state, return_state=True)
        step = log_probs[0, -1].numpy()
    return "".join(out), (min(margins) if margins else 0.0)


def compute_reference(model, vocab: list[str], lines: list[str]) -> dict:
    """All reference values, as plain JSON-able data."""
    ref: dict = {"vocab_size": len(vocab),
                 "vocab_sha256": hashlib.sha256(json.dumps(vocab).encode()).hexdigest()}

    ref["line_to_tensor"] = [{"line": s, "ids": _ids(s, vocab)} for s in LINE_CASES]

    ref["parameters"] = {name: int(getattr(model, name).count_params()) for name in ("embedding", "gru", "dense")}
    ref["parameters"]["total"] = int(model.count_params())

    probe_ids = [_ids(t, vocab) for t in PROBE_TEXTS]
    width = max(map(len, probe_ids))
    probe = tf.constant([p + [PADDING_ID] * (width - len(p)) for p in probe_ids])
    log_probs, state = model(probe, return_state=True)
    positions = [[0, 0], [0, 5], [0, len(probe_ids[0]) - 1], [1, 3], [1, len(probe_ids[1]) - 1]]
    ref["grulm"] = {
        "inputs": probe.numpy().tolist(),
        "positions": positions,
        "log_probs": [np.round(log_probs[b, t].numpy(), 5).tolist() for b, t in positions],
        "state_rows": np.round(state.numpy()[:, :8], 5).tolist(),
        "atol": LOG_PROB_ATOL,
    }

    # log_perplexity on the model's own predictions, with and without padding.
    targets = probe.numpy()[:, 1:]
    preds = log_probs[:, :-1]
    padded = targets.copy()
    padded[0, -6:] = PADDING_ID
    ref["log_perplexity"] = [
        {"name": "probe batch", "targets": targets.tolist(), "value": round(solution.log_perplexity(preds, targets), 5)},
        {"name": "probe batch with padding", "targets": padded.tolist(), "value": round(solution.log_perplexity(preds, padded), 5)},
    ]

    train_lines, eval_lines = split_lines(lines)
    ref["eval"] = {"lines": len(eval_lines),
                   "log_perplexity": round(evaluate_log_perplexity(model, eval_lines, vocab), 4),
                   "atol": PERPLEXITY_ATOL}

    probes = []
    for prefix in GREEDY_PREFIXES:
        continuation, margin = greedy_probe(model, vocab, prefix)
        if len(continuation) >= 4:
            probes.append({"prefix": prefix, "continuation": continuation, "min_margin": round(margin, 3)})
    # A few short probes (students' generators make one call per character, and grading time
    # counts): the longest, then the clearest.
    probes.sort(key=lambda p: (len(p["continuation"]), p["min_margin"]), reverse=True)
    ref["greedy"] = {"margin": GREEDY_MARGIN, "probes": probes[:MAX_PROBES]}
    return ref


def write_reference(path: Path = REFERENCE_PATH) -> dict:
    lines = load_lines()
    model, vocab, card = load_pretrained(vocab=build_vocab(lines))
    ref = compute_reference(model, vocab, lines)
    ref["weights_sha256"] = card.get("weights_sha256")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"Wrote {path}: {len(ref['greedy']['probes'])} greedy probes, eval log-perplexity {ref['eval']['log_perplexity']}.")
    return ref


def compare(expected: dict, actual: dict) -> list[str]:
    """Differences between two reference dicts beyond their tolerances (empty if they agree)."""
    problems = []
    for key in ("vocab_size", "vocab_sha256", "line_to_tensor", "parameters", "greedy"):
        if expected.get(key) != actual.get(key):
            problems.append(f"{key}: committed {str(expected.get(key))[:120]} != recomputed {str(actual.get(key))[:120]}")
    for name, atol in (("log_probs", LOG_PROB_ATOL), ("state_rows", LOG_PROB_ATOL)):
        a, b = np.array(expected["grulm"][name]), np.array(actual["grulm"][name])
        if a.shape != b.shape or not np.allclose(a, b, atol=atol):
            problems.append(f"grulm.{name} differ by more than {atol}")
    for e, a in zip(expected["log_perplexity"], actual["log_perplexity"]):
        if abs(e["value"] - a["value"]) > PERPLEXITY_ATOL:
            problems.append(f"log_perplexity {e['name']}: {e['value']} != {a['value']}")
    if abs(expected["eval"]["log_perplexity"] - actual["eval"]["log_perplexity"]) > PERPLEXITY_ATOL:
        problems.append(f"eval log-perplexity {expected['eval']['log_perplexity']} != {actual['eval']['log_perplexity']}")
    return problems


def main(check: bool = False) -> int:
    if not check:
        write_reference()
        return 0
    lines = load_lines()
    model, vocab, card = load_pretrained(vocab=build_vocab(lines))
    committed = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
    problems = compare(committed, compute_reference(model, vocab, lines))
    for p in problems:
        print(f"stale: {p}", file=sys.stderr)
    if problems:
        print(f"{REFERENCE_PATH} does not match the weights; run `make reference-values`.", file=sys.stderr)
        return 1
    print(f"{REFERENCE_PATH} matches the weights.")
    return 0
