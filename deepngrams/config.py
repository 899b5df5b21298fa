"""Paths, hyperparameters and limits: the single place every tool and test reads them from."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS_PATH = ROOT / "data" / "shakespeare_data.txt"
# Held-out log perplexity of the n-gram baseline at each order: slow to compute (half a minute),
# so `make weights` (or `python -m deepngrams ngram-baseline`) writes it for the notebook to plot.
NGRAM_BASELINE_PATH = ROOT / "data" / "ngram_baseline.json"
MODEL_DIR = ROOT / "model"
WEIGHTS_PATH = MODEL_DIR / "grulm.weights.h5"
CARD_PATH = MODEL_DIR / "model_card.json"
REFERENCE_PATH = MODEL_DIR / "reference_values.json"
CURVE_PATH = MODEL_DIR / "learning_curve.png"
CHECKPOINT_DIR = ROOT / ".cache" / "checkpoints"
SOLUTION_PY = ROOT / "deepngrams" / "lm" / "solution.py"

# The nbgrader course and its one assignment
ASSIGNMENT = "deep_ngrams"
COURSE_DIR = ROOT / "grader"
SOURCE_NB = COURSE_DIR / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
RELEASE_NB = ROOT / "assignment" / f"{ASSIGNMENT}.ipynb"
SOLUTION_NB = ROOT / "solutions" / f"{ASSIGNMENT}.ipynb"

EVAL_LINES = 1000  # the last lines of the corpus are held out for evaluation
MAX_CORPUS_BYTES = 2 * 2**30  # a text of one's own (train --corpus) is read whole into memory
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
    # improve late in the run, so the mean of its last quarter beats one that starts earlier
    # (docs/training-notes.md).
    average_from_epoch: int = 54

    def to_dict(self) -> dict:
        return asdict(self)

    def averages_at(self, epoch: int) -> bool:
        """Whether epoch `epoch` (1-based) adds its steps' weights to the shipped mean."""
        return 0 < self.average_from_epoch <= epoch <= self.epochs


COURSE = HParams()

# The samples a training run writes after every epoch, one column per temperature: the same prompt
# and seed each time, so the columns change only with training and, across a table, with the
# temperature. `generate --temperatures` without a list sweeps the same temperatures.
SAMPLE_PROMPT = "ROMEO\tHe jests at scars"  # the start of a line of the corpus (Romeo and Juliet, II.2)
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0, 1.2)
SAMPLE_LENGTH = 120  # characters: short, so that an epoch's samples take a moment
SAMPLE_SEED = 0


# Greedy text is only compared where the model's best next character beats the second best by
# this many nats at every step: elsewhere float noise of a correct model could flip the choice.
GREEDY_MARGIN = 0.5


@dataclass(frozen=True)
class Limits:
    """What one submission may use when it is graded. The defaults suit the course notebook on a slow CPU."""

    cell_timeout: float = 120.0  # seconds a cell may run before it is interrupted (plain nbgrader too)
    interrupt_grace: float = 10.0  # seconds an interrupted cell may go on (it ignores SIGINT) before its kernel is killed
    wall_timeout: float = 600.0  # seconds for the whole notebook, then the sandbox is killed
    # Memory: the resident memory of all the sandbox's processes together (above it the whole
    # sandbox is stopped), and the address space of each process (an allocation over it fails
    # with a MemoryError the notebook survives; TensorFlow reserves ~2 GiB it never touches).
    memory_gib: float = 6.0
    processes: int = 512  # processes and threads of the sandbox (its user; without root, its user namespace)
    open_files: int = 1024  # descriptors each of its processes may hold (pipes and sockets included)
    output_mib: float = 64.0  # what the notebook may send back, outputs included
    file_mib: float = 512.0  # largest file it may write
    scratch_mib: float = 256.0  # size of its working folder and of its /tmp (both in memory)


# The least memory the grader's command accepts: TensorFlow reserves about 2 GiB of address space at
# import, so a correct notebook's kernel dies under 2.5 GiB (it passes at 2.5); the margin is for
# machines whose many cores give TensorFlow more threads, each with its own stack.
MIN_GRADING_MEMORY_GIB = 3.0
MAX_HANDED_IN_BYTES = 50 * 2**20  # a handed-in file larger than this is refused unread
MAX_NOTEBOOK_BYTES = 20 * 2**20  # the notebook that is graded, once its saved outputs are dropped
# A file nested deeper than Python's recursion limit is read only up to this size: its reader holds
# about 150 bytes of Python objects for each byte of such a file, in the grader's own process.
MAX_DEEP_JSON_BYTES = 4 * 2**20
# What nbgrader's submit writes beside the notebook: the time of handing in (late penalties) and the
# secret release_feedback files the feedback under (30 and 128 bytes). Larger ones are not read.
TIMESTAMP, SECRET = "timestamp.txt", "submission_secret.txt"
MAX_SUBMIT_FILE_BYTES = 1024
MAX_CELLS = 2000  # the assignment has 55; nbgrader's steps slow down with every cell
# Checking a markdown cell renders it in the grader's own process, at a cost that grows with its length
# (faster than linearly for nested tags): what is not checked is shown as text, which is always safe.
MAX_CHECKED_MARKDOWN = 16 * 2**10  # characters of one markdown cell
MAX_MARKDOWN_TAGS = 256  # HTML tags in one markdown cell
MAX_CHECKED_MARKDOWN_TOTAL = 64 * 2**10  # characters of a notebook's markdown cells, in order (the course's: 13 K)
# What comes back from the sandbox is parsed, judged and drawn outside it, where its memory and time are
# not counted: each of these keeps that cost small whatever a notebook sends back.
# A correct notebook's largest observations (a dataset's batches) take about 0.5 MB of JSON.
MAX_OBSERVATION_CHARS = 4 * 2**20  # of one graded cell's observations, as the probe displayed them
MAX_NOTEBOOK_OBSERVATION_CHARS = 8 * 2**20  # of all of a notebook's (a correct one's: about 1.2 MB)
# The executed notebook comes back as each cell's prompt number and outputs, as text: text costs the
# grader what it weighs, where millions of small lists or dicts (in an output's data) would cost it
# gigabytes. Outputs past MAX_OUTPUTS, and lines of a traceback past MAX_TRACEBACK_ENTRIES, are left out.
MAX_OUTPUTS = 5_000  # of a notebook (the course's solved notebook makes about 30)
MAX_TRACEBACK_ENTRIES = 50
# A verdict after a hidden test strikes out every name the code chose (`exercises.judge`): a correct
# notebook's observations hold a few thousand lists and dicts and a few dozen such names.
MAX_WALKED = 200_000  # lists and dicts looked at in one cell's observations
MAX_DESCRIPTIONS = 2_000  # names struck out; with more, the verdict says only that the outputs are wrong
MAX_PROBLEMS = 20  # failures shown in one graded cell; the rest are counted
MAX_PROBLEM_CHARS = 2_000  # of one failure shown: it may quote what the code returned or raised
# nbconvert's ansi2html (the Formgrader's pages, the feedback) takes time as the number of colours times
# the text's length, and as the square of one colour's codes.
MAX_COLOUR_CHARS = 40  # of one colour sequence: bold with 24-bit fore- and background takes 37
MAX_COLOURED_TEXT = 100_000  # characters: a longer output keeps its text and loses its colours
MAX_COLOURS = 2_000  # colours kept in one notebook's outputs
WORKER_MARGIN_S = 300.0  # nbgrader's own steps around the sandbox (autograde, feedback), beyond its wall limit
# Set by the batch grader in each submission's nbgrader run (JSON: the sandbox's limits, slot and
# scratch, and the file holding the student's key); never passed on to the notebook.
GRADE_JOB_ENV = "DEEPNGRAMS_GRADE_JOB"
