"""Train the course model with plain Keras 3 on any backend: how the weights are made on a GPU.

The lent GPU machines have JAX and PyTorch but no TensorFlow, so this file needs only Keras,
numpy, h5py, tqdm and matplotlib (no tf.data, no tf.strings):

    KERAS_BACKEND=jax python -m deepngrams.lm.train_keras            # the course run, on the GPU
    KERAS_BACKEND=jax python -m deepngrams.lm.train_keras --smoke    # a few steps, to check the setup

It follows the recipe of deepngrams.lm.train (same model, loss and optimizer at its constant rate, the
joined training lines read as 64 streams with the GRU state carried across batches, output
dropout, a seeded window offset per epoch, the mean of the weights over the last epochs),
checkpoints every epoch, resumes, and writes the same files: model/grulm.weights.h5 (Keras
stores variables by attribute path, embedding/gru/dense, so the file loads into the
TensorFlow notebook's GRULM), model/model_card.json and model/learning_curve.png. Then run
`make reference-values` on the CPU machine.

On the TensorFlow backend it also writes each epoch's samples, as deepngrams.lm.train does (beside
the checkpoint for the course run). With `corpus` and `cell` it trains a model of any text, GRU or LSTM (`python -m deepngrams train
--corpus FILE --cell lstm --out DIR` runs it for the LSTM, which the fast GRU step does not cover).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from deepngrams.atomic import atomic_path
from deepngrams.config import CHECKPOINT_DIR, CORPUS_PATH, COURSE, PADDING_ID, HParams
from deepngrams.lm.charlm import CELLS, build, layer_weights, set_layer_weights
from deepngrams.lm.data import encode, stream_batches
from deepngrams.lm.run_record import (LAST_WEIGHTS, as_float32, averaging_note, corpus_run, curve_title,
                                      end_epoch, model_card, output_paths, plot_curve, record_samples, resume_checkpoint,
                                      run_id, samples_path, save_checkpoint, update_mean, write_card)


def eval_log_perplexity(model, ids: np.ndarray) -> float:
    """Mean negative log probability of each next id of the eval text, read as one sequence.

    Through Keras' compiled predict step: an eager call would run the recurrent layer one Python
    step a character, minutes an epoch on the course's held-out text."""
    preds = keras.ops.convert_to_numpy(model.predict_on_batch(ids[None, :-1]))[0]
    target = ids[1:]
    picked = preds[np.arange(len(target)), target]
    return float(-picked[target != PADDING_ID].mean())


def accelerator() -> tuple[str, str]:
    """(device kind, description) of what Keras computes on."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            dev = jax.devices()[0]
            return dev.platform, f"{dev.platform.upper()}: {dev.device_kind}"
        if backend == "torch":
            import torch
            if torch.cuda.is_available():
                return "gpu", f"GPU: {torch.cuda.get_device_name(0)}"
        if backend == "tensorflow":
            import tensorflow as tf
            if tf.config.list_physical_devices("GPU"):
                return "gpu", "GPU (TensorFlow)"
    except Exception:
        pass
    from deepngrams.lm.run_record import cpu_name
    return "cpu", f"CPU: {cpu_name()} ({os.cpu_count()} cores)"


def train(hp: HParams = COURSE, *, out_dir: Path | None = None, checkpoint_dir: Path | None = None,
          max_lines: int | None = None, max_steps: int | None = None, fresh: bool = False,
          corpus: Path | None = None, cell: str = "gru") -> dict:
    """Train with model.train_on_batch, checkpointing every epoch; write weights, card and curve.

    `corpus` trains on another text and `cell="lstm"` swaps the GRU for an LSTM (both need `out_dir`:
    see run_record.corpus_run). On the TensorFlow backend each epoch also writes its samples, as
    deepngrams.lm.train does (elsewhere the generator, which is TensorFlow's, is not there).
    """
    model_name = CELLS[cell]
    weights_path, card_path, curve_path = output_paths(out_dir, model_name)
    vocab, train_lines, eval_lines, prompt, corpus_id = corpus_run(corpus, out_dir, model_name, hp, max_lines)
    train_ids, eval_ids = encode("\n".join(train_lines), vocab), encode("\n".join(eval_lines), vocab)
    # The samples each epoch writes need the generator, which is TensorFlow's: the GPU machines have none.
    samples_on = keras.backend.backend() == "tensorflow"
    if samples_on:
        from deepngrams.lm.train import epoch_samples, samples_preamble

    keras.utils.set_random_seed(hp.seed)
    model, shipped = build(len(vocab), hp, training=True, cell=cell), build(len(vocab), hp, cell=cell)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=hp.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)

    checkpoint_dir = CHECKPOINT_DIR if checkpoint_dir is None else Path(checkpoint_dir)
    ckpt = checkpoint_dir / f"keras-{keras.backend.backend()}-{run_id(hp, max_lines, max_steps, *corpus_id)}.npz"
    samples_file = samples_path(out_dir, ckpt)
    state, average = {"epoch": 0, "history": [], "wall_time_s": 0.0, "averaged_steps": 0}, None
    if ckpt.exists() and not fresh:
        state, average = resume_checkpoint(ckpt, model, model.optimizer, hp)

    from tqdm import tqdm
    steps_per_epoch = (len(train_ids) - 1) // (hp.batch_size * hp.seq_length)
    for epoch in range(state["epoch"] + 1, hp.epochs + 1):
        start, losses = time.perf_counter(), []
        total = min(steps_per_epoch, max_steps or steps_per_epoch)
        model.rnn.reset_state()  # each epoch starts its streams afresh
        batches = stream_batches(train_ids, hp.batch_size, hp.seq_length, hp.seed * 1000 + epoch)
        bar = tqdm(batches, total=total, desc=f"epoch {epoch}/{hp.epochs}", unit="step")
        averaging = hp.averages_at(epoch)
        for inputs, targets in bar:
            losses.append(float(model.train_on_batch(inputs, targets)))
            if averaging:
                state["averaged_steps"] += 1
                average = update_mean(average, layer_weights(model), state["averaged_steps"])
            if len(losses) == total:
                break
        seconds = time.perf_counter() - start
        record = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5)}
        set_layer_weights(shipped, layer_weights(model))
        if average is not None:  # what ships is the average; the last weights are recorded beside it
            record[LAST_WEIGHTS] = round(eval_log_perplexity(shipped, eval_ids), 5)
            set_layer_weights(shipped, as_float32(average))
        log_ppx = eval_log_perplexity(shipped, eval_ids)
        record.update({"eval_log_perplexity": round(log_ppx, 5), "steps": len(losses), "seconds": round(seconds, 1)})
        end_epoch(state, record)
        table = epoch_samples(shipped, vocab, prompt) if samples_on else None
        if table is not None:  # before the checkpoint, as deepngrams.lm.train does
            record_samples(samples_file, samples_preamble(ckpt.stem, prompt), epoch,
                           f"\neval log-perplexity {log_ppx:.4f}\n\n{textwrap.indent(table, '    ')}\n\n")
        save_checkpoint(ckpt, model, model.optimizer, state, average)
        print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, eval log-perplexity {log_ppx:.4f}, {seconds:.0f} s",
              flush=True)
        if table is not None:
            print(table, flush=True)

    set_layer_weights(shipped, as_float32(average) or layer_weights(model))  # weights only: no optimizer or random state
    with atomic_path(weights_path) as tmp:
        shipped.save_weights(tmp)
    device, hardware = accelerator()
    card = model_card(
        vocab=vocab, hp=hp, parameters=int(model.count_params()), train_lines=len(train_lines), model_name=model_name,
        corpus=corpus or CORPUS_PATH,
        eval_lines=len(eval_lines), state=state, weights_path=weights_path,
        training={"hardware": hardware, "device": device,
                  "backend": f"keras {keras.__version__} on {keras.backend.backend()}, python {platform.python_version()}",
                  "method": f"deepngrams.lm.train_keras: Keras train_on_batch, float32; {hp.batch_size} streams "
                            f"read in order, stateful {cell.upper()}, output dropout {hp.output_dropout}"
                            + averaging_note(hp, average),
                  "smoke": bool(max_lines or max_steps)})
    write_card(card, card_path)
    if state["history"]:
        plot_curve(state["history"], curve_path, curve_title(model_name, corpus))
    after = " Now run `make reference-values` (needs TensorFlow)." if out_dir is None else ""
    print(f"Wrote {weights_path}, {card_path} and {curve_path}.{after}")
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepngrams.lm.train_keras", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, help=f"number of epochs (default: the recipe's {COURSE.epochs})")
    p.add_argument("--smoke", action="store_true", help="2 epochs of 3 steps on a slice")
    p.add_argument("--out", type=Path, help="write the files here instead of model/")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    args = p.parse_args(argv)
    hp = COURSE if args.epochs is None else replace(COURSE, epochs=args.epochs)
    if args.smoke:
        train(replace(hp, epochs=args.epochs or 2), out_dir=args.out or Path("model-smoke"), max_lines=2000,
              max_steps=3, fresh=args.fresh)
    else:
        train(hp, out_dir=args.out, fresh=args.fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
