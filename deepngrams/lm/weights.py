"""Build the course model and load the pretrained weights, with errors that say what to do."""
from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from deepngrams.lm import solution
from deepngrams.config import CARD_PATH, COURSE, WEIGHTS_PATH, HParams
from deepngrams.lm.run_record import weights_name

REGENERATE = "Regenerate them with `make weights` (python -m deepngrams train)."


class WeightsError(RuntimeError):
    """The pretrained weights or the model card cannot be used."""


def build_model(vocab_size: int, hp: HParams = COURSE) -> solution.GRULM:
    """A GRULM with its variables created (Keras builds lazily; loading needs them)."""
    model = solution.GRULM(vocab_size=vocab_size, embedding_dim=hp.embedding_dim, rnn_units=hp.rnn_units)
    model(tf.zeros((1, 1), dtype=tf.int64))
    return model


def model_for_card(card: dict):
    """A built model of the kind and sizes `card` records: the course's GRULM, or an LSTM model
    (deepngrams.lm.charlm), whose weights file is named for it."""
    hp = HParams(**{k: v for k, v in card["hparams"].items() if k in HParams.__dataclass_fields__})
    kind = card.get("model", "GRULM")
    if kind == "GRULM":
        return build_model(len(card["vocab"]), hp)
    from deepngrams.lm.charlm import CELLS, build
    cells = {name: cell for cell, name in CELLS.items()}
    if kind not in cells:
        raise WeightsError(f"the model card names a model {kind!r}: this bundle builds {', '.join(CELLS.values())}")
    return build(len(card["vocab"]), hp, cell=cells[kind])


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
    model = model_for_card(card)
    try:
        model.load_weights(weights_path)
    except Exception as e:  # h5py/Keras raise many types for a bad file
        raise WeightsError(f"cannot load {weights_path}: {type(e).__name__}: {e}. {REGENERATE}") from None
    return model, card["vocab"], card


def load_model_dir(folder: Path) -> tuple[solution.GRULM, list[str], dict]:
    """The GRULM, vocabulary and model card kept in `folder`, laid out as model/ is."""
    folder = Path(folder)
    needed = [CARD_PATH.name, WEIGHTS_PATH.name]
    try:  # an LSTM's weights file is named for it; a card that cannot be read is reported by load_pretrained
        kind = str(json.loads((folder / CARD_PATH.name).read_text()).get("model", "GRULM"))
        needed[1] = weights_name(kind if kind.isalnum() else "GRULM")
    except (OSError, ValueError, AttributeError):
        pass
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        what = "no such folder" if not folder.is_dir() else "it lacks " + " and ".join(missing)
        raise WeightsError(f"cannot load a model from {folder}: {what}. A model folder holds a weights file and "
                           f"{needed[0]}, as model/ does; `python -m deepngrams train --out DIR` writes one.")
    return load_pretrained(folder / needed[1], folder / needed[0])
