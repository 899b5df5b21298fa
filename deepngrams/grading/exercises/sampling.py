"""The sampling exercise: its cases (drawn for one submission) and its judge."""
from __future__ import annotations

import numpy as np

from deepngrams.grading.exercises.common import array, frequencies_fail, hoeffding_eps, is_int, log_softmax, raised, separated_distribution, tempered


# graded cell -> (probe, hidden)
CELLS = {"test_temperature_random_sampling": ("temperature_random_sampling", False)}


SAMPLING_DRAWS = 20000  # ids drawn per temperature_random_sampling case


def cases_temperature_random_sampling(rng, sizes):
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
        cases.append({"log_probs": log_p.tolist(), "repeat": SAMPLING_DRAWS, "temperature": t,
                      "seed": int(rng.integers(2**31))})
        expected.append({"p": tempered(log_p, t).tolist(), "eps": eps,
                         "about": f"at temperature {t:g}, ids drawn from softmax(log_probs / temperature)"})
    return cases, expected


def judge(check, observations):
    fails = []
    for case, want, o in zip(check["inputs"]["cases"], check["expected"], observations):
        label = f"temperature_random_sampling(temperature={case['temperature']:g})"
        ids = array(o, np.int64) if is_int(o) else None
        if "error" in o:
            fails.append(f"{label} {raised(o, check['hidden'])}")
        elif ids is None or ids.ndim != 1:
            fails.append(f"{label}: expected integer ids of shape (batch,), got {o.get('dtype')} {o.get('shape')}")
        elif "argmax" in want:
            if ids.tolist() != want["argmax"]:
                fails.append(f"{label}: temperature 0 should give the most likely id of each row")
        else:
            p = np.asarray(want["p"])
            if ids.shape != (case["repeat"],) or ids.min() < 0 or ids.max() >= len(p):
                fails.append(f"{label}: one id per row, each an index into the row")
            elif frequencies_fail(np.bincount(ids, minlength=len(p)), p, want["eps"]):
                fails.append(f"{label}: the ids are not drawn from softmax(log_probs / temperature) (their "
                             f"frequencies over {case['repeat']} rows are off)")
    return fails


def cases(probe: str, rng, course, hidden: bool):
    """(inputs of each case, expected of each case) of one graded cell."""
    vocab, sizes, lines = course
    return cases_temperature_random_sampling(rng, sizes)
