"""model/reference_values.json is what the weights give, recomputed here on the CPU."""
import copy
import json

import pytest

from deepngrams.course import reference_values as reference
from deepngrams.config import REFERENCE_PATH
from deepngrams.lm.data import build_vocab, load_lines
from deepngrams.lm.weights import load_pretrained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recomputed():
    lines = load_lines()
    model, vocab, _ = load_pretrained(vocab=build_vocab(lines))
    return reference.compute_reference(model, vocab, lines)


def test_committed_reference_values_match_the_weights(recomputed):
    committed = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
    assert reference.compare(committed, recomputed) == []


def test_compare_notices_a_changed_value(recomputed):
    changed = copy.deepcopy(recomputed)
    changed["grulm"]["log_probs"][0][5] += 0.01
    changed["eval"]["log_perplexity"] += 0.01
    changed["greedy"]["probes"][0]["continuation"] += "x"
    problems = reference.compare(recomputed, changed)
    assert len(problems) == 3, problems


def test_greedy_probes_are_clear_and_long_enough(recomputed):
    probes = recomputed["greedy"]["probes"]
    assert len(probes) >= 3
    for p in probes:
        assert p["min_margin"] >= reference.GREEDY_MARGIN and len(p["continuation"]) >= 4
