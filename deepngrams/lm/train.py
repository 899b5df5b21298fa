"""Train the course GRULM and write the pretrained weights, the model card, the curve and samples.

    python -m deepngrams train            # the full course run (resumes if interrupted)
    python -m deepngrams train --smoke    # a few steps on a slice, for tests

Every epoch ends with a checkpoint (weights, Adam state, weight average, history) written atomically, so
an interrupted run loses at most the epoch in progress and `train` picks up where it
stopped. The data order of each epoch is seeded from (seed, epoch), so a resumed run
sees the same batches as an uninterrupted one. After each epoch the model writes from one prompt
at several temperatures, printed side by side and kept in the run's samples file (samples_path).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import textwrap
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from deepngrams.lm import fastgru
from deepngrams.lm import solution
from deepngrams.atomic import atomic_path
from deepngrams.config import (CHECKPOINT_DIR, CORPUS_PATH, COURSE, SAMPLE_LENGTH, SAMPLE_PROMPT, SAMPLE_SEED,
                               SAMPLE_TEMPERATURES, HParams)
from deepngrams.lm.data import encode, stream_batches
from deepngrams.lm.generate import check_vocabulary, generate_at_temperatures, temperature_table
from deepngrams.lm.run_record import (LAST_WEIGHTS, as_float32, averaging_note, corpus_run, cpu_name, end_epoch,
                                      curve_title, model_card, output_paths, plot_curve, record_samples, resume_checkpoint, run_id,
                                      samples_path, save_checkpoint, update_mean, write_card)
from deepngrams.lm.weights import build_model


def compiled_forward(model) -> tf.types.experimental.GenericFunction:
    """The model's inference pass under XLA: run eagerly, the GRU's 44,000-step loop takes minutes."""
    return tf.function(lambda x: model(x, training=False), jit_compile=True)


def evaluate_log_perplexity(model, lines: list[str], vocab: list[str], forward=None) -> float:
    """Log perplexity on the eval lines, read as one sequence (the notebook's evaluation).

    Pass the same `forward` (from `compiled_forward`) on every call of a loop: a fresh one per call
    recompiles the whole pass each time.
    """
    ids = solution.line_to_tensor(["\n".join(lines)], vocab).to_tensor()
    inputs, targets = ids[:, :-1], ids[:, 1:]
    return solution.log_perplexity((forward or compiled_forward(model))(inputs), targets)


def epoch_samples(model, vocab: list[str], prompt: str = SAMPLE_PROMPT) -> str:
    """The table of what the model writes now from the sample prompt at each sample temperature.

    Read after every epoch, the tables show what training changes; across one, what the temperature does.
    """
    texts = generate_at_temperatures(model, vocab, prompt, SAMPLE_LENGTH, SAMPLE_TEMPERATURES, SAMPLE_SEED)
    return temperature_table(prompt, SAMPLE_TEMPERATURES, texts, SAMPLE_SEED)


def samples_preamble(run: str, prompt: str = SAMPLE_PROMPT) -> str:
    """The samples file's opening: what its tables show, and which run wrote them (see record_samples)."""
    return (f"# Samples while training\n\nRun {run}: after each epoch, {SAMPLE_LENGTH} characters after the prompt "
            f"{prompt!r} at temperatures {', '.join(map(str, SAMPLE_TEMPERATURES))} (seed {SAMPLE_SEED}), "
            "written with the weights the run would ship then (the weight mean once it has begun). Read a table "
            "across for the temperature, and down the file for the training.\n\n")


@contextlib.contextmanager
def weights_set_to(model, weights: list[np.ndarray] | None):
    """Within the block the model holds `weights` (None: its own); its own are back afterwards."""
    if weights is None:
        yield
        return
    own = model.get_weights()
    model.set_weights(weights)
    try:
        yield
    finally:
        model.set_weights(own)


def train(hp: HParams = COURSE, *, out_dir: Path | None = None, checkpoint_dir: Path | None = None,
          max_lines: int | None = None, max_steps: int | None = None, fresh: bool = False,
          precision: str = "bfloat16", progress: bool = True, corpus: Path | None = None) -> dict:
    """Train, checkpointing and writing samples every epoch; write weights, model card and learning curve.

    `max_lines` / `max_steps` make the smoke run: a slice of the corpus, a few steps an epoch.
    `corpus` trains on another text (see `run_record.corpus_run`); `out_dir` is then required.
    Returns the model card.
    """
    weights_path, card_path, curve_path = output_paths(out_dir)
    vocab, train_lines, eval_lines, prompt, corpus_id = corpus_run(corpus, out_dir, "GRULM", hp, max_lines)
    check_vocabulary([prompt], vocab)  # now, rather than after the first epoch

    tf.keras.utils.set_random_seed(hp.seed)
    model = build_model(len(vocab), hp)
    optimizer = solution.compile_model(model).optimizer  # the students' Adam, at the recipe's rate
    optimizer.learning_rate.assign(hp.learning_rate)
    optimizer.build(model.trainable_variables)
    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    train_step = fastgru.make_train_step(model, optimizer, dtype, hp.output_dropout)
    train_ids = encode("\n".join(train_lines), vocab)
    eval_forward = compiled_forward(model)  # one compilation for every epoch's evaluation

    checkpoint_dir = CHECKPOINT_DIR if checkpoint_dir is None else Path(checkpoint_dir)
    ckpt = checkpoint_dir / f"{run_id(hp, max_lines, max_steps, precision, *corpus_id)}.npz"
    samples_file = samples_path(out_dir, ckpt)
    state, average = {"epoch": 0, "history": [], "wall_time_s": 0.0, "averaged_steps": 0}, None
    if ckpt.exists() and not fresh:
        state, average = resume_checkpoint(ckpt, model, optimizer, hp)

    for epoch in range(state["epoch"] + 1, hp.epochs + 1):
        epoch_seed = hp.seed * 1000 + epoch  # this epoch's windows and dropout, same after a resume
        batches = stream_batches(train_ids, hp.batch_size, hp.seq_length, epoch_seed)
        total = (len(train_ids) - 1) // (hp.batch_size * hp.seq_length)
        if max_steps:
            batches, total = itertools.islice(batches, max_steps), max_steps
        start = time.perf_counter()
        losses, h = [], tf.zeros((hp.batch_size, hp.rnn_units))
        bar = tqdm(batches, desc=f"epoch {epoch}/{hp.epochs}", unit="step", disable=not progress,
                   total=total, dynamic_ncols=True)
        averaging = hp.averages_at(epoch)
        for step, (inputs, targets) in enumerate(bar):
            loss, h = train_step(tf.constant(inputs), tf.constant(targets), h, tf.constant([epoch_seed, step]))
            losses.append(float(loss))
            if averaging:
                state["averaged_steps"] += 1
                average = update_mean(average, model.get_weights(), state["averaged_steps"])
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        seconds = time.perf_counter() - start
        record = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5)}
        if average is not None:  # what ships is the average; the last weights are recorded beside it
            record[LAST_WEIGHTS] = round(
                evaluate_log_perplexity(model, eval_lines, vocab, eval_forward), 5)
        with weights_set_to(model, as_float32(average)):
            log_ppx = evaluate_log_perplexity(model, eval_lines, vocab, eval_forward)
            samples = epoch_samples(model, vocab, prompt)
        record.update({"eval_log_perplexity": round(log_ppx, 5), "steps": len(losses), "seconds": round(seconds, 1)})
        end_epoch(state, record)
        # Before the checkpoint: an epoch that must be redone after a crash between the two replaces its entry.
        record_samples(samples_file, samples_preamble(ckpt.stem, prompt), epoch,
                       f"\neval log-perplexity {log_ppx:.4f}\n\n{textwrap.indent(samples, '    ')}\n\n")
        save_checkpoint(ckpt, model, optimizer, state, average)
        print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, eval log-perplexity "
              f"{log_ppx:.4f} (perplexity {np.exp(log_ppx):.2f}), {seconds:.0f} s", flush=True)
        print(samples, flush=True)

    (out_dir or weights_path.parent).mkdir(parents=True, exist_ok=True)
    # Export from an uncompiled twin: the shipped file holds the model's weights only, no Adam state.
    export = build_model(len(vocab), hp)
    export.set_weights(as_float32(average) or model.get_weights())
    with atomic_path(weights_path) as tmp:
        export.save_weights(tmp)
    card = model_card(
        vocab=vocab, hp=hp, parameters=int(model.count_params()), train_lines=len(train_lines),
        eval_lines=len(eval_lines), state=state, weights_path=weights_path,
        training={"hardware": f"CPU: {cpu_name()} ({os.cpu_count()} cores)",
                  "device": "cpu",
                  "note": "Trained on a CPU: no GPU was available. The same recipe on a GPU takes minutes.",
                  "backend": f"tensorflow {tf.__version__}, keras {tf.keras.version()}",
                  "method": f"deepngrams.lm.fastgru training step, {precision} matrix products, float32 weights; "
                            f"{hp.batch_size} streams read in order with the GRU state carried across "
                            f"batches, output dropout {hp.output_dropout}"
                            + averaging_note(hp, average),
                  "smoke": bool(max_lines or max_steps)},
        corpus=corpus or CORPUS_PATH)
    write_card(card, card_path)
    if state["history"]:
        plot_curve(state["history"], curve_path, curve_title("GRULM", corpus))
    print(f"Wrote {weights_path}, {card_path} and {curve_path}."
          + (f" The samples of each epoch are in {samples_file}." if samples_file.exists() else ""))
    return card
