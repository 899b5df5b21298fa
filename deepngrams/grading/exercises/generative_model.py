"""The generative_model exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import itertools

import numpy as np

from deepngrams.config import PADDING_ID, UNK_ID
from deepngrams.grading.exercises.common import (FALSE_FAILURE_PER_CASE, char_ids, frequencies_fail, hoeffding_eps,
                                                 log_softmax, one_character_all_along, raised,
                                                 separated_distribution, tempered, unquotable)


# graded cell -> (probe, hidden)
CELLS = {"test_GenerativeModel": ("GenerativeModel", False), "test_GenerativeModel_hidden": ("GenerativeModel", True)}


GENERATED_ROWS, GENERATED_STEPS = 2000, 2  # generate_one_step on 2000 prompts, twice, per sampling case


# generate_n_chars at temperature 1 on a model none of whose characters is likelier than SAMPLED_TEXT_TOP: n
# characters, the least for which a correct sampler writes one character all along with a chance under
# FALSE_FAILURE_PER_CASE. Each character is a call of the student's generate_one_step: a flatter model needs
# fewer of them.
SAMPLED_TEXT_TOP = 0.35
SAMPLED_TEXT = next(n for n in itertools.count(2)
                    if one_character_all_along(SAMPLED_TEXT_TOP, n) <= FALSE_FAILURE_PER_CASE)


STATE_UNITS = 16  # width of the state vector of the table models handed to GenerativeModel


# generate_n_chars at temperature 0: characters written, drawn in this range; the case is drawn again
# until the text tells the right generator from each of the MISTAKES.
GREEDY_TEXT = (5, 9)


CONTINUED_STEPS = 2  # greedy generate_one_step calls in a row, the second given the states the first returned


def _table_model(rng, vocab: list[str], states: int, peaked: bool, unknown_first: bool) -> dict:
    """A language model given as tables (the next state from the state and the id read; the log
    probabilities from the state), as the probes build it in the sandbox. When `peaked`, every state
    has one clear favourite character (4 nats ahead of the next); when `unknown_first`, '[UNK]' or the
    padding is even more likely in some states, which a generator must never emit."""
    V = len(vocab)
    transitions = rng.integers(0, states, size=(states, V))
    logits = rng.normal(size=(states, V))
    if peaked:
        for s in range(states):
            logits[s, int(rng.integers(2, V))] = logits[s].max() + 4.0 + rng.uniform(0, 2)
            if unknown_first and rng.random() < 0.6:
                logits[s, int(rng.integers(0, 2))] = logits[s].max() + 3.0
    return {"transitions": transitions.tolist(), "log_probs": log_softmax(logits).astype(np.float32).tolist(),
            "units": STATE_UNITS}


# The usual ways a generator goes wrong that only its text shows (tests/wrong_solutions/ex6_generative_model.py):
# it forgets the state between steps, reads the log probabilities after the prefix's first character
# rather than its last, feeds the prefix again at every step, or starts from the prefix's last character.
MISTAKES = ("forgets_state", "first_position", "refeeds_prefix", "reads_last_prefix_char")


def _greedy_text(model: dict, vocab: list[str], prefix: str, n: int, mistake: str | None = None,
                 start: int = 0) -> str:
    """What greedy generation writes with a table model (never '[UNK]' or padding) from its state
    `start`, or what a generator that makes one of the MISTAKES writes."""
    T, L = np.asarray(model["transitions"]), np.asarray(model["log_probs"], np.float64)
    state, text = start, prefix
    feed = char_ids(prefix[-1:] if mistake == "reads_last_prefix_char" else prefix, vocab)
    for _ in range(n):
        read = []  # the state after each id fed in this step
        for i in feed:
            read.append(T[read[-1] if read else (0 if mistake == "forgets_state" else state), i])
        state = read[-1]
        row = L[read[0] if mistake == "first_position" else state].copy()
        row[[UNK_ID, PADDING_ID]] = -np.inf
        best = int(np.argmax(row))
        text += vocab[best]
        feed = char_ids(prefix, vocab) if mistake == "refeeds_prefix" else [best]
    return text


# A mistake generate_n_chars can hide, so that only generate_one_step called with states shows it:
# generate_one_step starts from zero whatever states it is given (generate_n_chars then writes the
# right text by feeding the whole text so far at every step).
STEP_MISTAKES = ("one_step_ignores_states",)


def _greedy_steps(model: dict, vocab: list[str], prefix: str, steps: int, mistake: str | None = None,
                  start: int = 0) -> list[str]:
    """The characters greedy generate_one_step returns when called `steps` times in a row, first on the
    prefix with the states of table state `start` (0: states=None), then each time on the character it
    just returned with the states it just returned; or what a generate_one_step that makes one of the
    STEP_MISTAKES returns (starting from zero at every call is what `_greedy_text` calls forgetting the
    state)."""
    if mistake == "one_step_ignores_states":
        return list(_greedy_text(model, vocab, prefix, steps, "forgets_state")[len(prefix):])
    return list(_greedy_text(model, vocab, prefix, steps, start=start)[len(prefix):])


def _memoryless_model(vocab: list[str], chars: list[int], p: np.ndarray) -> dict:
    """A table model that always gives the same distribution: `p` over `chars`, next to nothing on the
    rest, and '[UNK]' and padding above everything (a generator must skip them)."""
    logits = np.full(len(vocab), -40.0)
    logits[chars] = np.log(p)
    logits[[UNK_ID, PADDING_ID]] = np.log(p).max() + 1.0
    return {"transitions": np.zeros((1, len(vocab)), dtype=int).tolist(),
            "log_probs": log_softmax(logits[None]).astype(np.float32).tolist(), "units": STATE_UNITS}


def cases_GenerativeModel(rng, vocab, hidden: bool):
    cases, expected = [], []
    alphabet = vocab[2:]
    letters = np.arange(2, len(vocab))
    for _ in range(1 if hidden else 2):
        while True:  # a model and a prefix whose greedy text tells the right generator from each mistake
            model = _table_model(rng, vocab, int(rng.integers(4, 8)), peaked=True, unknown_first=True)
            prefix = "".join(rng.choice(alphabet, size=int(rng.integers(2, 9))))
            n = int(rng.integers(GREEDY_TEXT[0], GREEDY_TEXT[1] + 1))
            text = _greedy_text(model, vocab, prefix, n)
            if all(text != _greedy_text(model, vocab, prefix, n, mistake) for mistake in MISTAKES):
                break
        cases.append({"model": model, "vocab": vocab, "call": "n_chars", "temperature": 0.0, "prefix": prefix,
                      "n": n})
        expected.append({"text": text, "about": "greedy text (temperature 0) from a model whose next character "
                                                "depends on its state and on the character it just read: is the "
                                                "state carried from step to step, the generated character fed "
                                                "back, and '[UNK]' and padding never chosen?"})
    if not hidden:
        model = _table_model(rng, vocab, 3, peaked=False, unknown_first=False)
        cases.append({"model": model, "vocab": vocab, "call": "one_step", "temperature": 1.0,
                      "prefix": "".join(rng.choice(alphabet, size=5))})
        expected.append({"states_shape": [1, STATE_UNITS], "about": "generate_one_step returns one character and "
                                                                    "the new state"})
        # generate_n_chars samples at temperature 1: not the same character all along.
        k = int(rng.integers(3, 6))
        while (p := np.sort(rng.dirichlet(np.ones(k)))[::-1])[0] > SAMPLED_TEXT_TOP:
            pass
        chars = [int(i) for i in rng.choice(letters, size=k, replace=False)]
        cases.append({"model": _memoryless_model(vocab, chars, p), "vocab": vocab, "call": "n_chars",
                      "temperature": 1.0, "prefix": "".join(rng.choice(alphabet, size=3)), "n": SAMPLED_TEXT,
                      "seed": int(rng.integers(2**31))})
        expected.append({"length": SAMPLED_TEXT, "top": float(p[0]), "chars": [vocab[c] for c in chars],
                         "about": "generate_n_chars at temperature 1 samples from the model (it does not always "
                                  "take the most likely character) and never writes '[UNK]' or padding"})
    temperatures = [round(float(rng.uniform(1.6, 2.4)), 3)] if hidden else [1.0, round(float(rng.uniform(0.4, 0.6)), 3)]
    for t in temperatures:
        k = int(rng.integers(3, 5))
        eps = hoeffding_eps(GENERATED_ROWS * GENERATED_STEPS, k + 1)
        p = separated_distribution(rng, k, (t,), 2.2 * eps)
        chars = [int(i) for i in rng.choice(letters, size=k, replace=False)]
        cases.append({"model": _memoryless_model(vocab, chars, p), "vocab": vocab, "call": "batch", "temperature": t,
                      "prefix": "".join(rng.choice(alphabet, size=3)), "rows": GENERATED_ROWS,
                      "steps": GENERATED_STEPS, "seed": int(rng.integers(2**31))})
        expected.append({"chars": [vocab[c] for c in chars], "p": tempered(np.log(p), t).tolist(), "eps": eps,
                         "about": "generate_one_step on a batch: characters drawn from the model's "
                                  "softmax(log_probs / temperature), never '[UNK]' or padding"})
    while True:  # a model and a prefix where continuing from the states given differs from starting from zero
        model = _table_model(rng, vocab, int(rng.integers(4, 8)), peaked=True, unknown_first=True)
        prefix = "".join(rng.choice(alphabet, size=int(rng.integers(2, 9))))
        chars = _greedy_steps(model, vocab, prefix, CONTINUED_STEPS)
        if all(chars[1] != _greedy_steps(model, vocab, prefix, CONTINUED_STEPS, mistake)[1]
               for mistake in STEP_MISTAKES):
            break
    cases.append({"model": model, "vocab": vocab, "call": "continue", "temperature": 0.0, "prefix": prefix,
                  "rows": 1, "steps": CONTINUED_STEPS})
    expected.append({"continued": chars,
                     "about": "generate_one_step(next_chars, states=states) must continue from the states it is "
                              "given (those the call before returned), not start from zero: greedy characters "
                              "(temperature 0) from a model whose next character depends on its state, each call "
                              "given the character and the states the call before returned."})
    # The same on a fresh generator, first given states the model never returned (a table state drawn
    # here): a generator that ignores them and answers from what it was fed before has nothing to go on.
    while True:
        model = _table_model(rng, vocab, int(rng.integers(4, 8)), peaked=True, unknown_first=True)
        start = int(rng.integers(1, len(model["transitions"])))
        char = str(rng.choice(alphabet))
        chars = _greedy_steps(model, vocab, char, CONTINUED_STEPS, start=start)
        if chars[0] != _greedy_steps(model, vocab, char, CONTINUED_STEPS)[0]:
            break
    cases.append({"model": model, "vocab": vocab, "call": "continue", "temperature": 0.0, "prefix": char,
                  "rows": 1, "steps": CONTINUED_STEPS, "start_state": start})
    expected.append({"continued": chars,
                     "about": "generate_one_step(next_chars, states=states) must continue from the states it is "
                              "given, also on its first call and when they come from elsewhere (here: states the "
                              "model never returned), not start from zero or from what it read before."})
    return cases, expected


def _wrong_count(steps, rows: int, quiet: bool) -> str:
    """': call N returned M' for the first call that returned a wrong number of characters, or "" (M is
    the code's choice: `quiet`, not said)."""
    for call, chars in enumerate(steps if isinstance(steps, list) else [], start=1):
        if isinstance(chars, list) and len(chars) != rows:
            return f": call {call} returned {'another number' if quiet else len(chars)}"
    return ""


def judge(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = "GenerativeModel (a hidden case)" if check["hidden"] else \
            f"GenerativeModel(temperature={case['temperature']:g})"
        if "error" in o:
            fails.append(f"{label} {raised(o, unquotable(check))}")
        elif case["call"] == "one_step":
            chars = o.get("chars", {})
            value = chars.get("value")
            char = value[0] if isinstance(value, list) and len(value) == 1 else value
            char = char[0] if isinstance(char, list) and len(char) == 1 else char
            # A tf.string tensor reads as numpy's object dtype (numpy's own strings are str32, bytes8...), one
            # per prompt: shape (1,) or (1, 1), as w1_unittest says (not squeezed, not a numpy array).
            if not chars.get("tensor") or chars.get("dtype") != "object" or chars.get("shape") not in ([1], [1, 1]) \
                    or not isinstance(char, str) or len(char) != 1 or o.get("states_shape") != want["states_shape"]:
                got = f"{chars.get('kind')} and states of another shape" if unquotable(check) else \
                    f"{chars.get('kind')} of shape {chars.get('shape')} and states of shape {o.get('states_shape')}"
                fails.append(f"{label}.generate_one_step should return a string tensor of one character per "
                             f"prompt, shape (1,) or (1, 1), and states of shape {want['states_shape']}; got {got}")
        elif case["call"] == "continue":
            steps = o.get("steps")
            if not isinstance(steps, list) or len(steps) != case["steps"] or not all(
                    isinstance(chars, list) and len(chars) == 1 and isinstance(chars[0], str) for chars in steps):
                fails.append(f"{label}.generate_one_step on one string should return one character and the "
                             f"states (and take them back with the character it returned)"
                             f"{_wrong_count(steps, 1, unquotable(check))}")
            elif any(len(chars[0]) != 1 for chars in steps):
                fails.append(f"{label}.generate_one_step should return one character per string, never '[UNK]' "
                             f"or the padding '' (add self.prediction_mask to the log probabilities)")
            elif [chars[0] for chars in steps] != want["continued"]:
                fails.append(f"{label}: {want['about']} The characters differ from the expected ones.")
        elif case["call"] == "batch":
            steps = o.get("steps")
            rows, n = case["rows"], case["rows"] * case["steps"]
            if not isinstance(steps, list) or len(steps) != case["steps"] or not all(
                    isinstance(chars, list) and len(chars) == rows for chars in steps):
                fails.append(f"{label}.generate_one_step on a batch of {rows} strings should return {rows} "
                             f"characters, one per string (and take them back with the states it returned)"
                             f"{_wrong_count(steps, rows, unquotable(check))}")
                continue
            drawn = [c for chars in steps for c in chars]
            if any(not isinstance(c, str) or len(c) != 1 for c in drawn):
                fails.append(f"{label}.generate_one_step should return one character per string, never "
                             f"'[UNK]' or the padding ''")
                continue
            counts = np.array([drawn.count(c) for c in want["chars"]] + [n - sum(map(drawn.count, want["chars"]))])
            if frequencies_fail(counts, np.append(want["p"], 0.0), want["eps"]):
                fails.append(f"{label}: the characters are not drawn from softmax(log_probs / temperature) "
                             f"(their frequencies over {n} draws are off: is the temperature used, and is it "
                             f"sampling rather than always taking the most likely?)")
        elif not isinstance(o.get("text"), str):
            fails.append(f"{label}.generate_n_chars should return a string, got {o.get('text', {}).get('kind')}")
        elif "text" in want:
            if o["text"] != want["text"]:
                fails.append(f"{label}: {want['about']} The text differs from the expected one.")
        else:
            text, prefix = o["text"], case["prefix"]
            if not text.startswith(prefix) or len(text) != len(prefix) + want["length"] or "[UNK]" in text:
                fails.append(f"{label}.generate_n_chars(n, prefix) should return the prefix and n characters, "
                             f"never '[UNK]' or padding")
            elif not set(text[len(prefix):]) <= set(want["chars"]):
                # the model gives every other character e**-40 of the likeliest's chance
                fails.append(f"{label}.generate_n_chars: at temperature 1 each character should be drawn from the "
                             f"model's predictions, which leave all but {len(want['chars'])} characters next to "
                             f"impossible; the text has others")
            elif len(set(text[len(prefix):])) < 2:
                fails.append(f"{label}.generate_n_chars: at temperature 1 it should sample, not always take the "
                             f"most likely character")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_GenerativeModel(rng, vocab, hidden)
