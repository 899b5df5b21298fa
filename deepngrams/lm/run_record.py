"""What a training run leaves behind: checkpoints, the model card and the learning curve.

Shared by both trainers (train.py on a CPU with TensorFlow, train_keras.py on any Keras 3
backend), so it imports neither TensorFlow nor a backend.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

from deepngrams.atomic import atomic_path, write_bytes
from deepngrams.config import CARD_PATH, CORPUS_PATH, COURSE, CURVE_PATH, MODEL_DIR, ROOT, SAMPLE_PROMPT, WEIGHTS_PATH, HParams
from deepngrams.lm.corpus import sha256_of
from deepngrams.lm.data import check_long_enough, sample_prompt, training_data


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


RECENT_NS = 2 * 10**9  # a file changed this recently is hashed afresh (sha256_file)


def sha256_file(path: Path) -> str:
    """sha256 of a file; computed once while the file stays as it was (a run asks for its corpus's
    several times: to check --out, to name its checkpoint, for the model card).

    "As it was": the same file (device, inode), size, modification and change times. A file changed
    within the last seconds is hashed afresh every time, as git does, since a rewrite in the same
    tick of the file system's clock would leave its times as they were."""
    st = os.stat(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RECENT_NS:
        return sha256_of(Path(path))
    return _sha256_as_of(str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_as_of(path: str, *identity: int) -> str:
    return sha256_of(Path(path))


SAMPLES_NAME = "samples.md"  # the samples a run writes after each epoch, in its --out folder (see samples_path)


def weights_name(model_name: str = "GRULM") -> str:
    """The weights file of a model folder: grulm.weights.h5 for the course's GRULM, lstmlm.weights.h5 for an LSTM."""
    return f"{model_name.lower()}.weights.h5"


def output_paths(out_dir: Path | None, model_name: str = "GRULM") -> tuple[Path, Path, Path]:
    """Where a run writes its weights, model card and curve: model/, unless told otherwise."""
    if out_dir is None:
        return WEIGHTS_PATH, CARD_PATH, CURVE_PATH
    return Path(out_dir) / weights_name(model_name), Path(out_dir) / CARD_PATH.name, Path(out_dir) / CURVE_PATH.name


class OutputError(RuntimeError):
    """The folder a run was told to write holds something it must not replace."""


def corpus_record(corpus: Path = CORPUS_PATH) -> dict:
    """How a model card names its corpus: the path (within the bundle, relative to it) and its sha256."""
    path = Path(corpus).absolute()
    shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path.resolve())
    return {"path": shown, "sha256": sha256_file(path)}


def inside_model_dir(out_dir: Path) -> bool:
    """Whether a folder is model/ or lies within it, however it is named (.., links)."""
    return Path(out_dir).resolve().is_relative_to(MODEL_DIR.resolve())


def course_out_dir(out_dir: Path | None) -> Path | None:
    """None (the course's own run) where `out_dir` names model/ itself, however it is named: that run
    also rewrites what depends on the weights. Any other folder as given."""
    return None if out_dir is None or Path(out_dir).resolve() == MODEL_DIR.resolve() else Path(out_dir)


def check_own_folder(course_model: bool, out_dir: Path | None, what: str = "a model other than the course's") -> None:
    """Refuse to write anything but the course's own model into model/ (or nowhere): the notebook
    and the grader read that folder."""
    if not course_model and (out_dir is None or inside_model_dir(out_dir)):
        raise OutputError(f"{what} needs a folder of its own: give --out DIR (not model/, which holds the "
                          "course's model that the notebook and the grader read)")


def check_out_dir(out_dir: Path, corpus: Path, model_name: str) -> None:
    """Refuse an --out the run could not write, or whose model (of another corpus or kind) or corpus it
    would write over: a run replaces only its own results.

    Called before training, so a mistaken --out costs nothing.
    """
    out = Path(out_dir)
    if out.is_symlink() and not out.exists():
        raise OutputError(f"--out {out} is a link to nothing: name a folder to write the model into.")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder: name a folder to write the model into.")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out} cannot be made: {existing} is " + (
            "not a folder" if not existing.is_dir() else "a folder you cannot write in") + ". Name another --out.")
    written = {p.resolve() for p in (*output_paths(out, model_name), out / SAMPLES_NAME)}
    if Path(corpus).resolve() in written:
        raise OutputError(f"--corpus {corpus} is one of the files the run writes into --out {out}: move the text "
                          "out of that folder, or give another --out.")
    card_path = out / CARD_PATH.name
    if not (card_path.exists() or card_path.is_symlink()):
        return
    try:
        if not card_path.is_file():
            raise ValueError("not a regular file")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        theirs, kind = card["corpus"], card.get("model", "GRULM")
        theirs["sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise OutputError(f"--out {out} holds a {CARD_PATH.name} that cannot be read: give another --out, or "
                          "remove that folder if nothing in it is needed.") from None
    ours = corpus_record(corpus)
    if theirs["sha256"] != ours["sha256"]:
        raise OutputError(
            f"--out {out} holds a model of another corpus ({theirs.get('path', '?')}, sha256 "
            f"{str(theirs['sha256'])[:12]}...; this run trains on {ours['path']}, sha256 {ours['sha256'][:12]}...): "
            "give another --out, or remove that folder to replace its model.")
    if kind != model_name:
        raise OutputError(f"--out {out} holds a model of kind {kind} and this run trains one of kind "
                          f"{model_name}: give another --out, or remove that folder to replace its model.")


def corpus_run(corpus: Path | None, out_dir: Path | None, model_name: str, hp: HParams,
               max_lines: int | None = None) -> tuple[list[str], list[str], list[str], str, tuple]:
    """(vocabulary, training lines, eval lines, sample prompt, identity for the checkpoint) of a run.

    Without `corpus`, the course's corpus and sample prompt, and the course's checkpoint names.
    With one: read the course's way, checked (UTF-8, not empty, long enough for one batch), the
    sample prompt taken from its held-out text, and `out_dir` checked not to hold a model of another
    corpus or kind. All before training starts, so a mistake costs nothing.
    """
    check_own_folder(corpus is None and model_name == "GRULM" and same_model(hp, COURSE), out_dir)
    vocab, train_lines, eval_lines = training_data(max_lines, corpus)
    check_long_enough(train_lines, eval_lines, hp.batch_size, hp.seq_length, corpus or CORPUS_PATH)
    if out_dir is not None:
        check_out_dir(out_dir, corpus or CORPUS_PATH, model_name)
    if corpus is None:  # the course's checkpoint names, as before there were other corpora and cells
        return vocab, train_lines, eval_lines, SAMPLE_PROMPT, () if model_name == "GRULM" else (model_name,)
    return vocab, train_lines, eval_lines, sample_prompt(eval_lines), (model_name, corpus_record(corpus)["sha256"])


def same_model(hp: HParams, other: HParams) -> bool:
    """Whether two recipes make models of the same shape (the course's sizes: model/'s weights fit both)."""
    return (hp.embedding_dim, hp.rnn_units) == (other.embedding_dim, other.rnn_units)


def samples_path(out_dir: Path | None, checkpoint: Path) -> Path:
    """Where a run keeps the samples it writes after each epoch: in its folder, or, for a run that
    writes model/ (whose files are the bundle's), beside its checkpoint."""
    return Path(out_dir) / SAMPLES_NAME if out_dir is not None else checkpoint.with_suffix(f".{SAMPLES_NAME}")


EPOCH_HEADING = re.compile(r"^## Epoch (\d+)\n", re.M)  # the trainer indents the samples: none can look like one


def record_samples(path: Path, preamble: str, epoch: int, body: str) -> None:
    """Write `epoch`'s samples after those of the epochs before it, atomically.

    Entries of this epoch and later ones are dropped: they were written by an attempt that a
    resumed or restarted run is redoing, so no epoch is in the file twice. A file whose
    preamble is not `preamble` (another run, another prompt) is started afresh.
    """
    parts = EPOCH_HEADING.split(path.read_text(encoding="utf-8") if path.exists() else "")
    entries = zip(parts[1::2], parts[2::2]) if parts[0] == preamble else []
    kept = "".join(f"## Epoch {n}\n{text}" for n, text in entries if int(n) < epoch)
    write_bytes(path, (preamble + kept + f"## Epoch {epoch}\n{body}").encode("utf-8"))


def run_id(hp: HParams, *extra) -> str:
    """A run's identity, for its checkpoint: the recipe without the number of epochs and the
    weight average (so a run can be extended or cut short and still resume, and the epoch its average
    starts at changed while that epoch is still ahead: see resume_checkpoint)."""
    late = ("epochs", "average_from_epoch")
    recipe = {k: v for k, v in hp.to_dict().items() if k not in late}
    return hashlib.sha256(json.dumps([recipe, *extra]).encode()).hexdigest()[:12]


def update_mean(mean: list[np.ndarray] | None, weights: list[np.ndarray], count: int) -> list[np.ndarray]:
    """Add the `count`-th weights to the running mean of the weights, in place; None starts it.

    The mean is kept in float64: in float32, 10,000 small steps would round away their last digits.
    """
    if mean is None:
        return [np.array(w, dtype=np.float64) for w in weights]
    for m, w in zip(mean, weights):
        m += (w - m) / count
    return mean


def as_float32(weights: list[np.ndarray] | None) -> list[np.ndarray] | None:
    """The model's dtype for a mean kept in float64 (None stays None)."""
    return None if weights is None else [np.asarray(w, dtype=np.float32) for w in weights]


def save_checkpoint(path: Path, model, optimizer, state: dict,
                    average: list[np.ndarray] | None = None) -> None:
    """One .npz with model variables, optimizer variables, the weight average and the run state; atomic."""
    arrays = {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(model.weights)}
    arrays.update({f"opt/{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    arrays.update({f"average/{i}": a for i, a in enumerate(average or [])})
    arrays["state"] = np.array(json.dumps(state))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore what save_checkpoint saved into a built model and optimizer; returns the run state."""
    with np.load(path) as z:
        state = json.loads(str(z["state"]))
        for i, v in enumerate(model.weights):
            v.assign(z[f"model/{i}"])
        for i, v in enumerate(optimizer.variables):
            v.assign(z[f"opt/{i}"])
    return state


def checkpoint_arrays(path: Path, prefix: str) -> list[np.ndarray]:
    """The arrays save_checkpoint stored under `prefix` ("model/", "opt/", "average/"), in order."""
    with np.load(path) as z:
        keys = sorted((k for k in z.files if k.startswith(prefix)), key=lambda k: int(k.split("/")[1]))
        return [z[k] for k in keys]


def load_average(path: Path) -> list[np.ndarray] | None:
    """The weight average a checkpoint holds, or None if its run had not started one."""
    return checkpoint_arrays(path, "average/") or None


LAST_WEIGHTS = "eval_log_perplexity_last_weights"  # a record's eval of the unaveraged weights, once a mean ships


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed under the current recipe."""


def mean_start(history: list[dict]) -> int | None:
    """The epoch a run's weight mean began: the first whose record evaluates the last weights beside it."""
    return next((r["epoch"] for r in history if LAST_WEIGHTS in r), None)


def resume_checkpoint(path: Path, model, optimizer, hp: HParams) -> tuple[dict, list[np.ndarray] | None]:
    """A run's state and weight mean from its checkpoint, the model and optimizer restored.

    Older checkpoints are brought up to date: a decayed learning rate goes back to the recipe's,
    and an average of another kind (an EMA, without a step count) restarts. A mean that began at
    another epoch than the recipe's is dropped, with the evaluations it added to the history, when
    the recipe's mean has not begun yet; when it has, the mean cannot be rebuilt and this refuses.
    """
    state, average = load_checkpoint(path, model, optimizer), load_average(path)
    optimizer.learning_rate.assign(hp.learning_rate)
    if "averaged_steps" not in state:  # an average of another kind (an EMA, no step count): the mean starts afresh
        state["averaged_steps"], average = 0, None
    began, wanted = mean_start(state["history"]), hp.average_from_epoch or None
    if began != wanted:
        if wanted is not None and wanted <= state["epoch"]:
            raise CheckpointError(
                f"{path} has trained epochs 1 to {state['epoch']} with "
                + (f"a weight mean from epoch {began}" if began else "no weight mean")
                + f", but the recipe averages from epoch {wanted}: that mean cannot be rebuilt. Set "
                f"average_from_epoch in deepngrams/config.py "
                + (f"back to {began}" if began else f"to 0 or to an epoch after {state['epoch']}")
                + ", or start over with --fresh.")
        state["averaged_steps"], average = 0, None
        for record in state["history"]:  # what the recipe records before its mean: the last weights
            if LAST_WEIGHTS in record:
                record["eval_log_perplexity"] = record.pop(LAST_WEIGHTS)
    print(f"Resuming from {path} after epoch {state['epoch']}.")
    return state, average


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")


def end_epoch(state: dict, record: dict) -> None:
    """Add a finished epoch to the run state, with the date: a later export without training keeps it."""
    state["history"].append(record)
    state["epoch"] = record["epoch"]
    state["wall_time_s"] += record["seconds"]
    state["finished"] = today()


def averaging_note(hp: HParams, average: list[np.ndarray] | None) -> str:
    """The model card's words for the weight average, empty when the shipped weights are the last ones."""
    return "" if average is None else (f", the mean of the weights after every step of epochs "
                                       f"{hp.average_from_epoch} to {hp.epochs}")


def curve_figure(history: list[dict], title: str = "GRULM on Shakespeare"):
    """Train loss and eval log-perplexity per epoch, and the run's second half zoomed in.

    Late epochs gain a few thousandths of a nat, invisible on the whole run's scale, yet that is
    where the weight mean and the last weights part ways.
    """
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    starts = [epochs[0]] + ([epochs[len(epochs) // 2]] if len(epochs) >= 8 else [])
    fig = Figure(figsize=(5.5 * len(starts), 4))
    began = mean_start(history)
    for ax, start in zip(fig.subplots(1, len(starts), squeeze=False)[0], starts):
        shown = [h for h in history if h["epoch"] >= start]
        x = [h["epoch"] for h in shown]
        ax.plot(x, [h["train_loss"] for h in shown], "o-", ms=3, label="train loss (mean of epoch)")
        ax.plot(x, [h["eval_log_perplexity"] for h in shown], "s-", ms=3, label="eval log-perplexity (shipped weights)")
        averaged = [h for h in shown if LAST_WEIGHTS in h]
        if averaged:  # the shipped curve is the weight mean's from there on; the last weights beside it
            ax.plot([h["epoch"] for h in averaged], [h[LAST_WEIGHTS] for h in averaged], "x--", ms=4,
                    label="eval, last weights (not averaged)")
        if began is not None and began >= start:  # a marker left of the panel's epochs would stretch it
            ax.axvline(began - 0.5, color="gray", ls=":", label=f"weight mean from epoch {began}")
        ax.set_title("whole run" if start == epochs[0] else f"epochs {start} to {epochs[-1]}, zoomed")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per character")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curve_title(model_name: str, corpus: Path | None) -> str:
    return f"{model_name} on " + ("Shakespeare" if corpus is None else Path(corpus).name)


def plot_curve(history: list[dict], path: Path, title: str = "GRULM on Shakespeare") -> None:
    """The learning curve as a PNG, written whole or not at all."""
    with atomic_path(path) as tmp:
        curve_figure(history, title).savefig(tmp, format="png", dpi=100)


def model_card(*, vocab: list[str], hp: HParams, parameters: int, train_lines: int, eval_lines: int,
               state: dict, training: dict, weights_path: Path, corpus: Path = CORPUS_PATH,
               model_name: str = "GRULM") -> dict:
    """The model card: what was trained, on what, where, how long, and how well."""
    history = state["history"]
    last = history[-1]["eval_log_perplexity"] if history else None
    return {
        "model": model_name,
        "vocab": vocab,
        "vocab_size": len(vocab),
        "hparams": hp.to_dict(),
        "parameters": parameters,
        "corpus": {**corpus_record(corpus), "train_lines": train_lines, "eval_lines": eval_lines},
        "epochs": state["epoch"],
        "steps_per_epoch": history[-1]["steps"] if history else 0,
        "training": {**training, "wall_time_s": round(state["wall_time_s"], 1),
                     "finished": state.get("finished") or today()},
        "history": history,
        "final": {"eval_log_perplexity": last,
                  "eval_perplexity": round(float(np.exp(last)), 4) if last is not None else None},
        "weights_sha256": sha256_file(weights_path),
    }


def write_card(card: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=1) + "\n")
