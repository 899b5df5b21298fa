"""Build the course model and load the pretrained weights, with errors that say what to do."""
from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.config import CARD_PATH, COURSE, WEIGHTS_PATH, HParams

REGENERATE = "Regenerate them with `make weights` (python -m deepngrams train)."


class WeightsError(RuntimeError):
    """The pretrained weights or the model card cannot be used."""


def build_model(vocab_size: int, hp: HParams = COURSE) -> solution.GRULM:
    """A GRULM with its variables created (Keras builds lazily; loading needs them)."""
    model = solution.GRULM(vocab_size=vocab_size, embedding_dim=hp.embedding_dim, rnn_units=hp.rnn_units)
    model(tf.zeros((1, 1), dtype=tf.int64))
    return model


def load_card(card_path: Path = CARD_PATH) -> dict:
    if not Path(card_path).is_file():
        raise WeightsError(f"model card not found: {card_path}. {REGENERATE}")
    try:
        card = json.loads(Path(card_path).read_text())
        card["vocab"], card["hparams"]
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"model card {card_path} is corrupt ({e}). {REGENERATE}") from None
    return card


def load_pretrained(weights_path: Path = WEIGHTS_PATH, card_path: Path = CARD_PATH,
                    vocab: list[str] | None = None) -> tuple[solution.GRULM, list[str], dict]:
    """The pretrained GRULM, its vocabulary and its model card.

    `vocab`, when given, must be the vocabulary the weights were trained with.
    """
    card = load_card(card_path)
    if vocab is not None and list(vocab) != card["vocab"]:
        raise WeightsError(
            f"the vocabulary ({len(vocab)} entries) does not match the one {weights_path} was trained "
            f"with ({len(card['vocab'])} entries, from {card_path}): the corpus changed since training. "
            + REGENERATE)
    if not Path(weights_path).is_file():
        raise WeightsError(f"weights not found: {weights_path}. {REGENERATE}")
    hp = HParams(**{k: v for k, v in card["hparams"].items() if k in HParams.__dataclass_fields__})
    model = build_model(len(card["vocab"]), hp)
    try:
        model.load_weights(weights_path)
    except Exception as e:  # h5py/Keras raise many types for a bad file
        raise WeightsError(f"cannot load {weights_path}: {type(e).__name__}: {e}. {REGENERATE}") from None
    return model, card["vocab"], card


def load_model_dir(folder: Path) -> tuple[solution.GRULM, list[str], dict]:
    """The GRULM, vocabulary and model card kept in `folder`, laid out as model/ is."""
    folder = Path(folder)
    needed = (WEIGHTS_PATH.name, CARD_PATH.name)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        what = "no such folder" if not folder.is_dir() else "it lacks " + " and ".join(missing)
        raise WeightsError(f"cannot load a model from {folder}: {what}. A model folder holds {needed[0]} and "
                           f"{needed[1]}, as model/ does; `python -m deepngrams train --out DIR` writes one.")
    return load_pretrained(folder / WEIGHTS_PATH.name, folder / CARD_PATH.name)
