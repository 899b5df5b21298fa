"""Paths and hyperparameters: the single place every tool and test reads them from."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS_PATH = ROOT / "data" / "shakespeare_data.txt"
MODEL_DIR = ROOT / "model"
WEIGHTS_PATH = MODEL_DIR / "grulm.weights.h5"
CARD_PATH = MODEL_DIR / "model_card.json"
REFERENCE_PATH = MODEL_DIR / "reference_values.json"
CURVE_PATH = MODEL_DIR / "learning_curve.png"
CHECKPOINT_DIR = ROOT / ".cache" / "checkpoints"

EVAL_LINES = 1000  # the last lines of the corpus are held out for evaluation
PADDING_ID = 1  # id of the empty string '' in the vocabulary
UNK_ID = 0  # id of '[UNK]'


@dataclass(frozen=True)
class HParams:
    """The course model and its training recipe."""

    embedding_dim: int = 256
    rnn_units: int = 512
    seq_length: int = 100
    batch_size: int = 64
    learning_rate: float = 0.00125
    epochs: int = 72
    seed: int = 1
    # The pretrained weights read the text as long streams (each batch row continues the previous
    # batch's row, the GRU state carried over, as the evaluation reads the held-out text) and drop
    # the GRU's outputs at this rate before the dense layer during training. Neither adds weights;
    # the students' create_batch_dataset and compile_model (Adam at the constant rate above) stay
    # the course's.
    output_dropout: float = 0.35
    # And they ship the mean of the weights after every step from this epoch on (0 turns it off),
    # which smooths out the noise of the updates. It adds no weights either. The weights still
    # improve late in the run, so the mean of its last quarter beats one that starts earlier.
    average_from_epoch: int = 54

    def to_dict(self) -> dict:
        return asdict(self)

    def averages_at(self, epoch: int) -> bool:
        """Whether epoch `epoch` (1-based) adds its steps' weights to the shipped mean."""
        return 0 < self.average_from_epoch <= epoch <= self.epochs


COURSE = HParams()
