"""Train the course GRULM and write the pretrained weights, the model card and the curve.

    python -m deepngrams train            # the full course run (resumes if interrupted)
    python -m deepngrams train --smoke    # a few steps on a slice, for tests

Every epoch ends with a checkpoint (weights, Adam state, history) written atomically, so
an interrupted run loses at most the epoch in progress and `train` picks up where it
stopped. The data order of each epoch is seeded from (seed, epoch), so a resumed run
sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import fastgru, solution
from .config import CARD_PATH, CHECKPOINT_DIR, CORPUS_PATH, CURVE_PATH, COURSE, WEIGHTS_PATH, HParams
from .data import build_vocab, load_lines, split_lines
from .atomic import atomic_path
from .weights import build_model


def evaluate_log_perplexity(model, lines: list[str], vocab: list[str]) -> float:
    """Log perplexity on the eval lines, read as one sequence (the notebook's evaluation)."""
    ids = solution.line_to_tensor(["\n".join(lines)], vocab).to_tensor()
    inputs, targets = ids[:, :-1], ids[:, 1:]
    # Compiled: run eagerly, the GRU's 44,000-step loop takes minutes instead of seconds.
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
    return solution.log_perplexity(forward(inputs), targets)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    """One .npz with model variables, optimizer variables and the run state; atomic."""
    arrays = {f"model/{i}": v.numpy() for i, v in enumerate(model.weights)}
    arrays.update({f"opt/{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays["state"] = np.array(json.dumps(state))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load_checkpoint(path: Path, model, optimizer) -> dict:
    with np.load(path) as z:
        state = json.loads(str(z["state"]))
        for i, v in enumerate(model.weights):
            v.assign(z[f"model/{i}"])
        for i, v in enumerate(optimizer.variables):
            v.assign(z[f"opt/{i}"])
    return state


def plot_curve(history: list[dict], path: Path) -> None:
    """Train loss and eval log-perplexity per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss (mean of epoch)")
    ax.plot(epochs, [h["eval_log_perplexity"] for h in history], "s-", label="eval log-perplexity")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per character")
    ax.set_title("GRULM on Shakespeare")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def train(hp: HParams = COURSE, *, out_dir: Path | None = None, checkpoint_dir: Path = CHECKPOINT_DIR,
          max_lines: int | None = None, max_steps: int | None = None, fresh: bool = False,
          precision: str = "bfloat16", progress: bool = True) -> dict:
    """Train, checkpointing every epoch; write weights, model card and learning curve.

    `max_lines` / `max_steps` make the smoke run: a slice of the corpus, a few steps an epoch.
    Returns the model card.
    """
    weights_path = (out_dir / WEIGHTS_PATH.name) if out_dir else WEIGHTS_PATH
    card_path = (out_dir / CARD_PATH.name) if out_dir else CARD_PATH
    curve_path = (out_dir / CURVE_PATH.name) if out_dir else CURVE_PATH

    lines = load_lines()
    vocab = build_vocab(lines)
    train_lines, eval_lines = split_lines(lines)
    if max_lines:
        train_lines, eval_lines = train_lines[:max_lines], eval_lines[: max(10, max_lines // 100)]

    tf.keras.utils.set_random_seed(hp.seed)
    model = build_model(len(vocab), hp)
    optimizer = solution.compile_model(model).optimizer
    optimizer.build(model.trainable_variables)
    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    train_step = fastgru.make_train_step(model, optimizer, dtype)

    # The number of epochs is not part of the run's identity: a run can be extended or cut short.
    recipe = {k: v for k, v in hp.to_dict().items() if k != "epochs"}
    run_id = hashlib.sha256(json.dumps([recipe, max_lines, max_steps, precision]).encode()).hexdigest()[:12]
    ckpt = checkpoint_dir / f"{run_id}.npz"
    state = {"epoch": 0, "history": [], "wall_time_s": 0.0}
    if ckpt.exists() and not fresh:
        state = _load_checkpoint(ckpt, model, optimizer)
        print(f"Resuming from {ckpt} after epoch {state['epoch']}.")

    for epoch in range(state["epoch"] + 1, hp.epochs + 1):
        tf.random.set_seed(hp.seed * 1000 + epoch)  # this epoch's shuffle, same after a resume
        ds = solution.create_batch_dataset(train_lines, vocab, hp.seq_length, hp.batch_size)
        if max_steps:
            ds = ds.take(max_steps)
        start = time.perf_counter()
        losses = []
        bar = tqdm(ds, desc=f"epoch {epoch}/{hp.epochs}", unit="step", disable=not progress,
                   total=max_steps or None, dynamic_ncols=True)
        for inputs, targets in bar:
            losses.append(float(train_step(inputs, targets)))
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        seconds = time.perf_counter() - start
        log_ppx = evaluate_log_perplexity(model, eval_lines, vocab)
        record = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5),
                  "eval_log_perplexity": round(log_ppx, 5), "steps": len(losses),
                  "seconds": round(seconds, 1)}
        state["history"].append(record)
        state["epoch"] = epoch
        state["wall_time_s"] += seconds
        _save_checkpoint(ckpt, model, optimizer, state)
        print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, eval log-perplexity "
              f"{log_ppx:.4f} (perplexity {np.exp(log_ppx):.2f}), {seconds:.0f} s", flush=True)

    (out_dir or weights_path.parent).mkdir(parents=True, exist_ok=True)
    # Export from an uncompiled twin: the shipped file holds the model's weights only, no Adam state.
    export = build_model(len(vocab), hp)
    export.set_weights(model.get_weights())
    with atomic_path(weights_path) as tmp:
        export.save_weights(tmp)
    history = state["history"]
    card = {
        "model": "GRULM",
        "vocab": vocab,
        "vocab_size": len(vocab),
        "hparams": hp.to_dict(),
        "parameters": int(model.count_params()),
        "corpus": {"path": CORPUS_PATH.relative_to(CORPUS_PATH.parent.parent).as_posix(),
                   "sha256": sha256_file(CORPUS_PATH),
                   "train_lines": len(train_lines), "eval_lines": len(eval_lines)},
        "epochs": state["epoch"],
        "steps_per_epoch": history[-1]["steps"] if history else 0,
        "training": {
            "hardware": f"CPU: {cpu_name()} ({os.cpu_count()} cores)",
            "device": "cpu",
            "note": "Trained on a CPU: no GPU was available. The same recipe on a GPU takes minutes.",
            "backend": f"tensorflow {tf.__version__}, keras {tf.keras.version()}",
            "method": f"deepngrams.fastgru custom training step, {precision} matrix products, float32 weights",
            "wall_time_s": round(state["wall_time_s"], 1),
            "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
            "smoke": bool(max_lines or max_steps),
        },
        "history": history,
        "final": {"eval_log_perplexity": history[-1]["eval_log_perplexity"] if history else None,
                  "eval_perplexity": round(float(np.exp(history[-1]["eval_log_perplexity"])), 4) if history else None},
        "weights_sha256": sha256_file(weights_path),
    }
    with atomic_path(card_path) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=1) + "\n")
    if history:
        plot_curve(history, curve_path)
    print(f"Wrote {weights_path}, {card_path} and {curve_path}.")
    return card
