"""The sampling exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import numpy as np

from deepngrams.grading.exercises.common import (array, frequencies_fail, hoeffding_eps, is_int, log_softmax, raised,
                                                 separated_distribution, tempered, unquotable)
from deepngrams.grading.inside.probes import shuffled_rows


# graded cell -> (probe, hidden)
CELLS = {"test_temperature_random_sampling": ("temperature_random_sampling", False)}


SAMPLING_DRAWS = 20000  # rows, so ids drawn, per temperature_random_sampling case


def cases_temperature_random_sampling(rng, sizes):
    """Temperature 0 on rows of the vocabulary's size; then, at three temperatures, SAMPLING_DRAWS rows
    that hold one distribution each in an order of its own (so no two rows need look alike, and always
    taking one column is no sample); the temperature-1 rows are given twice in a row: a sampler must
    draw afresh at every call, so the two calls agree only as often as chance makes them."""
    V = sizes[0]
    rows = log_softmax(rng.normal(size=(64, V)) * 3.0).astype(np.float32)
    cases = [{"log_probs": rows.tolist(), "temperature": 0.0, "seed": int(rng.integers(2**31))}]
    expected = [{"argmax": rows.argmax(-1).tolist(), "about": "temperature 0 picks the most likely id of each row"}]
    temperatures = (1.0, round(float(rng.uniform(0.4, 0.6)), 3), round(float(rng.uniform(1.8, 2.5)), 3))
    k = int(rng.integers(4, 7))
    eps = hoeffding_eps(SAMPLING_DRAWS, k)
    p = separated_distribution(rng, k, temperatures, 2.2 * eps)
    log_p = np.log(p).astype(np.float32)
    for t in temperatures:
        cases.append({"log_probs": log_p.tolist(), "rows": SAMPLING_DRAWS, "rows_seed": int(rng.integers(2**31)),
                      "temperature": t, "seed": int(rng.integers(2**31))})
        expected.append({"p": tempered(log_p, t).tolist(), "eps": eps,
                         "about": f"at temperature {t:g}, ids drawn from softmax(log_probs / temperature)"})
    # Right after the temperature-1 case, with no new seed in between: setting one restarts the random
    # ops of a function TensorFlow traced (@tf.function), which would then repeat its numbers.
    first = 1
    again = {key: value for key, value in cases[first].items() if key != "seed"}
    q = np.asarray(expected[first]["p"])
    cases.insert(first + 1, dict(again, again=first))
    expected.insert(first + 1, dict(expected[first], agree=float(q @ q), agree_eps=hoeffding_eps(SAMPLING_DRAWS, 1),
                                    about="called again on the same rows, ids drawn afresh"))
    return cases, expected


def _drawn_ids(case, o, label: str, quiet: bool, fails: list[str]):
    """The ids observed, or None (with the reason in `fails`)."""
    ids = array(o, np.int64) if is_int(o) else None
    if "error" in o:
        fails.append(f"{label} {raised(o, quiet)}")
    elif ids is None or ids.ndim != 1:
        fails.append(f"{label}: expected integer ids of shape (batch,), got {o.get('dtype')} {o.get('shape')}")
    elif ids.shape != (case.get("rows", len(case["log_probs"])),) or ids.min() < 0 \
            or ids.max() >= np.shape(case["log_probs"])[-1]:
        fails.append(f"{label}: one id per row, each an index into the row")
    else:
        return ids
    return None


def judge(check, observations):
    fails = []
    cases, drawn = check["inputs"]["cases"], {}
    for i, (case, want, o) in enumerate(zip(cases, check["expected"], observations)):
        label = f"temperature_random_sampling(temperature={case['temperature']:g})"
        if "again" in case:
            label += ", called again on the same rows"
        ids = _drawn_ids(case, o, label, unquotable(check), fails)
        if ids is None:
            continue
        if "argmax" in want:
            if ids.tolist() != want["argmax"]:
                fails.append(f"{label}: temperature 0 should give the most likely id of each row")
            continue
        p = np.asarray(want["p"])
        order = shuffled_rows(case["log_probs"], case["rows"], case["rows_seed"])[1]
        drawn[i] = ids
        if frequencies_fail(np.bincount(order[np.arange(len(ids)), ids], minlength=len(p)), p, want["eps"]):
            fails.append(f"{label}: the ids are not drawn from softmax(log_probs / temperature) (their "
                         f"frequencies over {case['rows']} rows are off)")
        elif "again" in case and case["again"] in drawn:
            agree = float(np.mean(ids == drawn[case["again"]]))
            if abs(agree - want["agree"]) > want["agree_eps"]:
                how_often = "" if unquotable(check) else f" in {agree:.0%} of the rows"  # a number the code chose
                fails.append(f"{label}: the two calls picked the same id{how_often}, where independent draws "
                             f"agree in {want['agree']:.0%}: draw new random numbers at every call (a fixed seed "
                             f"repeats the same noise)")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_temperature_random_sampling(rng, sizes)
