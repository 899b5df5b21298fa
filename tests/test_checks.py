"""The grader's verdicts (deepngrams.checks on deepngrams.probes' observations), without a sandbox.

The same right and wrong answers that test w1_unittest.py (tests/wrong_solutions/) go
through the grader's probes and judgement here: the reference and the other correct
answers pass every graded cell, each wrong answer fails at least one cell of its exercise.
"""
import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deepngrams.config import COURSE, PADDING_ID, UNK_ID  # noqa: E402
from deepngrams.grading.inside import probes
from deepngrams.course import release
from deepngrams.lm import solution  # noqa: E402
from deepngrams.grading import exercises  # noqa: E402
from deepngrams.grading.exercises import common  # noqa: E402
from wrong_solutions import (ex1_line_to_tensor, ex2_create_batch_dataset, ex3_grulm,  # noqa: E402
                             ex4_compile_model, ex5_log_perplexity, ex6_generative_model, ex6_sampling)


# w1_unittest's test -> (the name the notebook defines, the graded cells the grader checks it with)
CELLS = {
    "test_line_to_tensor": ("line_to_tensor", ["test_line_to_tensor", "test_line_to_tensor_hidden"]),
    "test_create_batch_dataset": ("create_batch_dataset", ["test_create_batch_dataset",
                                                           "test_create_batch_dataset_hidden"]),
    "test_GRULM_layers": ("GRULM", ["test_GRULM_layers"]),
    "test_GRULM_outputs": ("GRULM", ["test_GRULM_outputs", "test_GRULM_hidden"]),
    "test_compile_model": ("compile_model", ["test_compile_model", "test_compile_model_hidden"]),
    "test_log_perplexity": ("log_perplexity", ["test_log_perplexity", "test_log_perplexity_hidden"]),
    "test_temperature_random_sampling": ("temperature_random_sampling", ["test_temperature_random_sampling"]),
    "test_GenerativeModel": ("GenerativeModel", ["test_GenerativeModel", "test_GenerativeModel_hidden"]),
}
MODULES = (ex1_line_to_tensor, ex2_create_batch_dataset, ex3_grulm, ex4_compile_model, ex5_log_perplexity,
           ex6_sampling, ex6_generative_model)
WRONG = [pytest.param(answer, tests, id=f"{m.__name__.split('.')[-1]}-{name}")
         for m in MODULES for name, (answer, tests) in m.WRONG.items()]
CORRECT = [pytest.param(answer, m.TESTS, id=f"{m.__name__.split('.')[-1]}-{name}")
           for m in MODULES for name, answer in m.CORRECT.items()]


KEY = bytes(range(32))


@pytest.fixture(scope="module")
def prepared():
    return exercises.draw_cases(exercises.secret_for(KEY, "alice", b"her notebook"))


def observe(monkeypatch, check: dict, namespace: dict) -> dict:
    """Run one probe in this process, as the sandbox's kernel would, and return what it displays."""
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    probes.run(check["probe"], namespace, json.dumps(check["inputs"]))
    return json.loads(shown[-1][probes.MIME])


def failures(monkeypatch, prepared, w1_tests, answer) -> dict:
    found = {}
    for test in w1_tests:
        name, cells = CELLS[test]
        for cell in cells:
            found[cell] = exercises.judge(prepared[cell], observe(monkeypatch, prepared[cell], {name: answer}))
    return found


def test_every_graded_cell_of_the_source_notebook_has_a_check(prepared):
    import nbformat
    graded = [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(str(release.SOURCE_NB), 4).cells
              if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
    assert sorted(graded) == sorted(prepared) == sorted(exercises.CELLS)
    assert all(check["inputs"]["cases"] and len(check["expected"]) == len(check["inputs"]["cases"])
               for check in prepared.values())


def test_the_seed_of_a_submission_is_the_documented_pair_of_hmacs():
    """The scheme, spelled out (README, exercises' doc): a change to it draws new cases for every
    submission, so it is pinned here rather than only compared with itself."""
    import hashlib
    import hmac
    student = hmac.new(KEY, b"student\0alice", hashlib.sha256).digest()
    assert exercises.student_key(KEY, "alice") == student
    seed = hmac.new(student, hashlib.sha256(b"her notebook").digest(), hashlib.sha256).digest()[:8]
    assert exercises.secret_for(KEY, "alice", b"her notebook") == int.from_bytes(seed, "big")


def test_the_seed_reads_the_notebooks_code_and_nothing_an_editor_or_nbgrader_changes_beside_it():
    """Cell ids (nbformat makes up random ones for a repeated or missing id, nbgrader for a test cell it
    puts back), metadata, outputs and markdown leave the cases as they are; any change to the code, its
    order or the cells that hold it draws others."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    nb = new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("x = 1"), new_code_cell("def f():\n    return 2")])
    code = exercises.graded_code(nb)
    edited = copy.deepcopy(nb)
    for cell in edited.cells:
        cell.id, cell.metadata["tags"] = "other-" + cell.id, ["mine"]
    edited.cells[1].outputs, edited.cells[1].execution_count = [new_output("stream", text="1")], 3
    edited.cells[0].source = "# Another title"
    edited.cells.insert(2, new_markdown_cell("notes"))
    edited.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    as_lines = copy.deepcopy(nb)
    as_lines.cells[2].source = ["def f():\n", "    return 2"]
    assert exercises.graded_code(edited) == exercises.graded_code(as_lines) == code
    repeated = json.loads(nbformat.writes(nb))
    repeated["cells"][2]["id"] = repeated["cells"][1]["id"]
    del repeated["cells"][0]["id"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat says it repaired the ids: that is the point here
        reads = [nbformat.reads(json.dumps(repeated), 4) for _ in range(2)]
    assert reads[0].cells[2].id != reads[1].cells[2].id  # nbformat's repair is random
    assert {exercises.graded_code(r) for r in reads} == {code}
    for change in (lambda n: setattr(n.cells[1], "source", "x = 2"), lambda n: n.cells.reverse(),
                   lambda n: n.cells.append(new_code_cell("")),
                   lambda n: setattr(n.cells[2], "source", n.cells[1].source + "\n" + n.cells[2].source),
                   lambda n: setattr(n.cells[1], "cell_type", "raw")):
        other = copy.deepcopy(nb)
        change(other)
        assert exercises.graded_code(other) != code


def test_the_seed_reads_which_code_cells_run_as_graded_tests():
    """The kernel is given a probe in place of each graded test cell, and can tell which copy of a source
    ran as one (by its execution count, by what ran before): a file that keeps its code but moves a test
    cell's metadata to another copy of that cell, or gives it another grade_id, draws other cases. The
    nbgrader metadata of other cells (a solution, a task) is not given to the kernel: it does not count."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("check(f)"), new_code_cell("x = 2"),
                             new_code_cell("check(f)")])

    def marked(i, **meta):
        other = copy.deepcopy(nb)
        other.cells[i].metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "test_f", "points": 1,
                                               "schema_version": 3, **meta}
        return other

    codes = [exercises.graded_code(n) for n in (nb, marked(1), marked(3), marked(1, grade_id="test_g"))]
    assert len(set(codes)) == 4
    assert exercises.graded_code(marked(1, solution=True)) == exercises.graded_code(marked(2, grade=False, task=True)) \
        == exercises.graded_code(nb)
    assert exercises.graded_code(marked(1)) == exercises.graded_code(nbformat.reads(nbformat.writes(marked(1)), 4))


def test_a_students_key_draws_that_students_cases_and_no_one_elses():
    """A worker gets one student's key (never the course's): with it, that student's cases for any
    file, as the course's key draws them; another student's key, or another course's, draws others."""
    alice = exercises.student_key(KEY, "alice")
    for notebook in (b"her notebook", b"her notebook ", b""):
        assert exercises.secret_from(alice, notebook) == exercises.secret_for(KEY, "alice", notebook)
        assert exercises.secret_from(alice, notebook) != exercises.secret_for(KEY, "bob", notebook)
    others = {exercises.student_key(KEY, "bob"), exercises.student_key(bytes(32), "alice"),
              exercises.student_key(KEY, "alice\0"), exercises.student_key(KEY, "Alice")}
    assert alice not in others and len(others) == 4 and KEY not in {alice, *others}


def test_every_case_is_drawn_for_one_student_and_one_file(prepared):
    """Another student, or another file of the same student, gets other inputs in every graded cell
    (public ones too: a table of answers copied from someone's feedback is worth nothing); the same
    file of the same student gets the same cases, so grading again gives the same verdicts."""
    same = exercises.draw_cases(exercises.secret_for(KEY, "alice", b"her notebook"))
    assert json.dumps(same) == json.dumps(prepared)  # (json: NaN expected values compare equal)
    for other in (exercises.secret_for(KEY, "bob", b"her notebook"), exercises.secret_for(KEY, "alice", b"her notebook "),
                  exercises.secret_for(bytes(32), "alice", b"her notebook")):
        drawn = exercises.draw_cases(other)
        for cell, check in prepared.items():
            if cell != "test_GRULM_layers":  # its first case is the course's fixed sizes; the others vary
                assert drawn[cell]["inputs"] != check["inputs"], cell
            assert drawn[cell]["expected"] != check["expected"] or cell == "test_GRULM_layers", cell
        assert drawn["test_GRULM_layers"]["inputs"]["cases"][1:] != prepared["test_GRULM_layers"]["inputs"]["cases"][1:]


def test_a_correct_sampler_fails_less_than_once_in_a_million_gradings():
    """The bound is Hoeffding's, from the numbers of draws and the tolerances the cases carry."""
    bounds = [exercises.false_failure_bound(exercises.draw_cases(secret)) for secret in range(20)]
    assert max(bounds) < 1e-6
    assert min(bounds) > 0  # the bound counts the sampling cases: there are some


def test_the_bound_covers_a_sampled_text_of_one_character_all_along():
    """generate_n_chars at temperature 1 fails a correct sampler when it writes one character n times,
    whichever character: the bound counts that chance, not only the likeliest character's."""
    for secret in range(5):
        prepared = exercises.draw_cases(secret)
        for check in prepared.values():
            for case, want in zip(check["inputs"]["cases"], check["expected"]):
                if "top" not in want:
                    continue
                p = np.exp(np.asarray(case["model"]["log_probs"], np.float64)[0])
                p[[UNK_ID, PADDING_ID]] = 0.0  # a generator never writes them
                p /= p.sum()
                one_character = float(np.sum(p ** case["n"]))
                alone = {"only": dict(check, inputs=dict(check["inputs"], cases=[case]), expected=[want])}
                assert one_character <= exercises.false_failure_bound(alone) < common.FALSE_FAILURE_PER_CASE


def test_sampling_cases_separate_the_usual_wrong_temperatures(prepared):
    """Every sampling case's distribution is more than twice its tolerance away from what a sampler
    that ignores the temperature, inverts it or never samples would draw from."""
    for cell in ("test_temperature_random_sampling", "test_GenerativeModel", "test_GenerativeModel_hidden"):
        for case, want in zip(prepared[cell]["inputs"]["cases"], prepared[cell]["expected"]):
            if "eps" not in want:
                continue
            p, t = np.asarray(want["p"]), case["temperature"]
            base = np.asarray(common.tempered(np.log(p), 1 / t), np.float64)  # back to temperature 1
            wrongs = [np.eye(len(p))[np.argmax(p)], common.tempered(np.log(base), 1.0),
                      common.tempered(np.log(base), 1 / t)]
            for wrong in wrongs[: 1 if t == 1.0 else 3]:
                assert np.abs(wrong - p).max() > 2 * want["eps"], (cell, t)


def _ids_observation(ids: np.ndarray) -> dict:
    return {"kind": "ndarray", "tensor": False, "dtype": "int64", "shape": list(ids.shape), "value": ids.tolist()}


def test_the_sampling_cell_fails_a_sampler_that_repeats_its_draws_and_passes_one_that_does_not_whatever_the_draw():
    """Over many draws: Gumbel-max on fresh numbers at every call passes; the same sampler with the same
    numbers at every call (a fixed seed) fails the second call on the same rows, and only that; so does
    a sampler with no randomness whose frequencies are right (row i's quantile (i + 0.5) / rows)."""
    from deepngrams.grading.exercises import sampling
    numbers = np.random.default_rng(5)
    fixed = {}

    def gumbel(case, fresh: bool):
        rows = np.asarray(case["log_probs"], np.float64)
        if "rows_seed" in case:
            rows = probes.shuffled_rows(case["log_probs"], case["rows"], case["rows_seed"])[0].astype(np.float64)
        if not fresh:
            u = fixed.setdefault(rows.shape, numbers.uniform(1e-6, 1 - 1e-6, size=rows.shape))
        else:
            u = numbers.uniform(1e-6, 1 - 1e-6, size=rows.shape)
        return np.argmax(rows / max(case["temperature"], 1e-9) - np.log(-np.log(u)) * (case["temperature"] > 0),
                         axis=-1)

    def quantiles(case):
        rows = np.asarray(case["log_probs"], np.float64)
        if "rows_seed" in case:
            rows = probes.shuffled_rows(case["log_probs"], case["rows"], case["rows_seed"])[0].astype(np.float64)
        return ex6_sampling.quantiles_not_samples(rows, case["temperature"])

    for seed in range(40):
        check = _drawn(sampling, "test_temperature_random_sampling", seed)
        cases = check["inputs"]["cases"]
        assert sum("again" in case for case in cases) == 1
        for name, sampler in (("fresh", lambda c: gumbel(c, True)), ("fixed", lambda c: gumbel(c, False)),
                              ("quantiles", quantiles)):
            fails = sampling.judge(check, [_ids_observation(sampler(case)) for case in cases])
            if name == "fresh":
                assert fails == [], (seed, fails)
            else:
                assert len(fails) == 1 and "called again on the same rows" in fails[0] \
                    and "draw new random numbers at every call" in fails[0], (seed, name, fails)


def test_the_sampling_rows_order_is_plain_integer_arithmetic_the_same_on_every_machine():
    """The probe (on a worker) and the judge (on the client) rebuild each row's order from the seed: it is
    splitmix64 on Python's own integers, sorted, so no numpy generator (whose algorithms may change
    between versions) decides it. Every order comes about equally often."""
    mask = 2**64 - 1

    def mix(x: int) -> int:
        z = (x * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    log_p = np.log([0.4, 0.3, 0.2, 0.1])
    for seed in (0, 1, 2**31 - 1, 987654321):
        rows, order = probes.shuffled_rows(log_p, 50, seed)
        by_hand = [sorted(range(4), key=lambda j: mix(seed + 4 * r + j)) for r in range(50)]
        assert order.tolist() == by_hand
        assert np.array_equal(rows, np.asarray(log_p, np.float32)[order])
    counts = np.unique(probes.shuffled_rows(log_p, 48000, 7)[1], axis=0, return_counts=True)[1]
    assert len(counts) == 24 and np.all(np.abs(counts - 2000) < 5 * np.sqrt(2000))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["keras_integer_seed", "generator_seeded_at_every_call", "stateless_uniform",
                                  "quantiles_not_samples"])
def test_a_real_sampler_that_repeats_its_draws_fails_the_second_call_only(monkeypatch, prepared, name):
    found = failures(monkeypatch, prepared, ["test_temperature_random_sampling"], ex6_sampling.WRONG[name][0])
    fails = found["test_temperature_random_sampling"]
    assert len(fails) == 1 and "called again on the same rows" in fails[0], fails


@pytest.mark.slow
def test_a_sampler_that_is_greedy_unless_its_rows_are_copies_fails_the_frequencies(monkeypatch, prepared):
    """The grader's rows each hold the distribution in an order of their own: no row copies another."""
    found = failures(monkeypatch, prepared, ["test_temperature_random_sampling"],
                     ex6_sampling.WRONG["greedy_unless_identical_rows"][0])
    fails = found["test_temperature_random_sampling"]
    assert fails and all("frequencies over" in f for f in fails), fails


def test_char_ids_reads_each_character_as_a_lookup_in_the_vocabulary_would():
    """The judges' ids of a text: each character's last index in the vocabulary from id 2 on, '[UNK]'
    for any other (beyond the vocabulary's highest code point too, a lone surrogate, an entry of two
    characters, which no single character is); as a dictionary lookup gives them."""
    import random
    rng = random.Random(0)
    pool = "abc \n\t\u00e9\U0001F600\ud800" + "".join(chr(rng.randrange(32, 0x110000)) for _ in range(60))
    for _ in range(3000):
        vocab = ["[UNK]", ""] + [rng.choice(pool + "xy") for _ in range(rng.randrange(0, 12))] + ["ab"] * rng.randrange(2)
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 40)))
        index = {c: i for i, c in enumerate(vocab) if i >= 2}
        assert common.char_ids(text, vocab) == [index.get(c, 0) for c in text], (text, vocab)
    assert common.char_ids("ab", ["[UNK]", ""]) == [0, 0] and common.char_ids("", ["[UNK]", "", "a"]) == []


def _drawn(module, cell: str, seed: int) -> dict:
    """One graded cell's check, drawn from `seed` as draw_cases draws it."""
    probe, hidden = module.CELLS[cell]
    course = exercises.course_files(str(exercises.CARD_PATH), str(exercises.CORPUS_PATH))
    inputs, expected = module.cases(probe, np.random.default_rng(seed), course, hidden)
    return {"probe": probe, "hidden": hidden, "inputs": {"cases": inputs}, "expected": expected}


def _case_alone(check: dict, k: int) -> dict:
    """The cell's check with its case k only: a judge reads each case apart from the others."""
    return dict(check, inputs={"cases": [check["inputs"]["cases"][k]]}, expected=[check["expected"][k]])


def _number(value: float) -> dict:
    """A plain number, as the probes report one."""
    return {"kind": "float", "tensor": False, "dtype": "float64", "shape": [], "value": value}


def test_no_constant_passes_a_log_perplexity_cell_whatever_the_draw():
    """A function that returns one number whatever its input (NaN, 0, the uniform model's value) fails
    both cells for every seed: a case whose sequences are all padding by chance would expect NaN,
    and a hidden cell made of that case alone would give NaN its points."""
    from deepngrams.grading.exercises import log_perplexity
    constants = [float("nan"), 0.0, 1.0, float(np.log(10))]
    for seed in range(4000):
        for cell, (_, hidden) in log_perplexity.CELLS.items():
            check = _drawn(log_perplexity, cell, seed)
            for value in constants:
                assert log_perplexity.judge(check, [_number(value)] * len(check["expected"])), (seed, cell, value)
            nan = [np.isnan(want["value"]) for want in check["expected"]]
            assert nan == ([False, False, False, True] if not hidden else [False, False]), (seed, cell)


def _greedy_cases(seeds) -> list:
    """(case, expected) of every greedy-text case of GenerativeModel's cells drawn from these seeds."""
    from deepngrams.grading.exercises import generative_model
    found = []
    for seed in seeds:
        for cell in generative_model.CELLS:
            check = _drawn(generative_model, cell, seed)
            found += [(case, want) for case, want in zip(check["inputs"]["cases"], check["expected"]) if "text" in want]
    return found


MISTAKES = {"forgets_state": ex6_generative_model.IgnoresStates,
            "first_position": ex6_generative_model.FirstPositionLogProbs,
            "refeeds_prefix": ex6_generative_model.RefeedsPrefix,
            "reads_last_prefix_char": ex6_generative_model.StartsFromLastPrefixChar}


def test_every_greedy_case_tells_the_right_text_from_each_mistakes_whatever_the_draw():
    """A greedy case where a generator's mistake happens to write the right text (a one-character
    prefix read at its first position, two states with the same favourite) would give that
    generator the cell's points for some students and not for others."""
    from deepngrams.grading.exercises import generative_model
    assert set(MISTAKES) == set(generative_model.MISTAKES)
    for case, want in _greedy_cases(range(300)):
        assert len(case["prefix"]) >= 2
        for mistake in MISTAKES:
            written = generative_model._greedy_text(case["model"], case["vocab"], case["prefix"], case["n"], mistake)
            assert written != want["text"], (mistake, case["prefix"])


STEP_MISTAKES = {"one_step_ignores_states": ex6_generative_model.OneStepIgnoresStatesFeedsWholeText}


def _continued_cases(seeds) -> list:
    """(case, expected) of every case of GenerativeModel's cells, drawn from these seeds, that calls
    generate_one_step with the states the call before returned."""
    from deepngrams.grading.exercises import generative_model
    found = []
    for seed in seeds:
        for cell in generative_model.CELLS:
            check = _drawn(generative_model, cell, seed)
            continued = [(case, want) for case, want in zip(check["inputs"]["cases"], check["expected"])
                         if case["call"] == "continue"]
            # in every cell, hidden or not: one from states=None, one from states the model never returned
            assert sorted("start_state" in case for case, _ in continued) == [False, True], (cell, seed)
            found += continued
    return found


def test_every_continued_case_tells_the_states_given_from_zero_whatever_the_draw():
    """A generate_one_step that starts from zero whatever states it is given writes the right text
    when generate_n_chars feeds it the whole text at every step: only a call given states shows it.
    The first call given states (the case's second) answers otherwise than starting from zero would,
    in every draw, so the mistake never gets a cell's points by luck. The case that starts from states
    the model never returned answers otherwise from its first call on than starting from zero does, so a
    generator that ignores states and replays what it read before gets nothing from it either."""
    from deepngrams.grading.exercises import generative_model
    assert set(STEP_MISTAKES) == set(generative_model.STEP_MISTAKES)
    for case, want in _continued_cases(range(300)):
        assert case["temperature"] == 0.0 and case["rows"] == 1 and case["steps"] >= 2
        start = case.get("start_state", 0)
        right = generative_model._greedy_steps(case["model"], case["vocab"], case["prefix"], case["steps"],
                                               start=start)
        assert want["continued"] == right
        assert all(c in case["vocab"][2:] for c in right)
        if start:
            assert 0 < start < len(case["model"]["transitions"]) and len(case["prefix"]) == 1
            from_zero = generative_model._greedy_steps(case["model"], case["vocab"], case["prefix"], case["steps"])
            assert from_zero[0] != right[0], case["prefix"]
        for mistake in STEP_MISTAKES:
            wrong = generative_model._greedy_steps(case["model"], case["vocab"], case["prefix"], case["steps"],
                                                   mistake)
            assert wrong != right and (start or (wrong[0] == right[0] and wrong[1] != right[1])), \
                (mistake, case["prefix"])


@pytest.mark.slow
def test_a_generate_one_step_that_ignores_the_states_given_fails_for_real(monkeypatch):
    """Run for real: a generate_one_step that ignores the states it is given returns the characters
    the case builder predicts for that mistake and fails every continued case (though its
    generate_n_chars, fed the whole text, writes every greedy text right); the right ones pass."""
    from deepngrams.grading.exercises import generative_model
    greedy, continued = _greedy_cases(range(1)), _continued_cases(range(2))  # the whole text at every step: slow
    runs = [(None, solution.GenerativeModel), (None, ex6_generative_model.GraphModeStep),
            ("one_step_ignores_states", ex6_generative_model.IgnoresStates), *STEP_MISTAKES.items()]
    for mistake, answer in runs:
        check = {"probe": "GenerativeModel", "hidden": True, "inputs": {"cases": [c for c, _ in continued]},
                 "expected": [w for _, w in continued]}
        observations = observe(monkeypatch, check, {"GenerativeModel": answer})["observations"]
        for (case, want), o in zip(continued, observations):
            predicted = generative_model._greedy_steps(case["model"], case["vocab"], case["prefix"], case["steps"],
                                                       mistake, start=case.get("start_state", 0))
            assert o.get("steps") == [[c] for c in predicted], (answer.__name__, case["prefix"])
            fails = generative_model.judge({"inputs": {"cases": [case]}, "expected": [want], "hidden": True}, [o])
            assert bool(fails) == (mistake is not None), answer.__name__
    check = {"probe": "GenerativeModel", "hidden": True, "inputs": {"cases": [c for c, _ in greedy]},
             "expected": [w for _, w in greedy]}
    observations = observe(monkeypatch, check, {"GenerativeModel": STEP_MISTAKES["one_step_ignores_states"]})
    assert generative_model.judge(check, observations["observations"]) == []


@pytest.mark.slow
def test_the_generators_mistakes_write_what_the_grader_predicts_and_fail(monkeypatch):
    """Run for real: each wrong generator writes the text the case builder predicts for its mistake
    (so the draws above are checked against the real mistakes), and fails every greedy case."""
    from deepngrams.grading.exercises import generative_model
    greedy = _greedy_cases(range(4))
    check = {"probe": "GenerativeModel", "hidden": True, "inputs": {"cases": [c for c, _ in greedy]},
             "expected": [w for _, w in greedy]}
    for mistake, answer in [(None, solution.GenerativeModel), *MISTAKES.items()]:
        observations = observe(monkeypatch, check, {"GenerativeModel": answer})["observations"]
        for (case, want), o in zip(greedy, observations):
            predicted = generative_model._greedy_text(case["model"], case["vocab"], case["prefix"], case["n"], mistake)
            assert o.get("text") == predicted, (mistake, case["prefix"])
            fails = generative_model.judge({"inputs": {"cases": [case]}, "expected": [want], "hidden": True}, [o])
            assert bool(fails) == (mistake is not None), mistake


def test_every_draw_holds_what_tells_a_mistake_apart():
    """What a cell needs to tell a usual mistake apart is in every draw, not in most: both special
    ids among compile_model's targets (a loss with ignore_class), '[UNK]' among both GRULM output
    cells' ids (an embedding with mask_zero) and the hidden log_perplexity's real targets (masking ids 0
    and 1), rows that read differently backwards (a GRU with go_backwards), and a character outside
    the vocabulary in the hidden line_to_tensor (a split into bytes rather than characters)."""
    from deepngrams.config import PADDING_ID, UNK_ID
    from deepngrams.grading.exercises import compile_model, grulm, line_to_tensor, log_perplexity
    for seed in range(400):
        for cell in compile_model.CELLS:
            y = np.asarray(_drawn(compile_model, cell, seed)["inputs"]["cases"][0]["y"])
            assert {UNK_ID, PADDING_ID} <= set(y.flat), (cell, seed)
        for cell in ("test_GRULM_outputs", "test_GRULM_hidden"):
            assert (np.asarray(_drawn(grulm, cell, seed)["inputs"]["cases"][0]["ids"]) == UNK_ID).any(), (cell, seed)
        for case in _drawn(grulm, "test_GRULM_layers", seed)["inputs"]["cases"]:
            assert all(row != row[::-1] for row in case["ids"]), seed
        for case in _drawn(log_perplexity, "test_log_perplexity_hidden", seed)["inputs"]["cases"]:
            assert (np.asarray(case["targets"]) == UNK_ID).any(), seed
        lines = [c["line"] for c in _drawn(line_to_tensor, "test_line_to_tensor_hidden", seed)["inputs"]["cases"]]
        assert any(ch in line_to_tensor.UNKNOWN_CHARS for ch in lines[-2]), seed


def test_the_usual_wrong_perplexities_fail_the_hidden_cell_whatever_the_draw():
    """Masking '[UNK]' as well as padding, masking nothing, or averaging over all real tokens of the
    batch (rather than per sequence) is wrong in every draw of the hidden cell, never within the
    tolerance by chance."""
    from deepngrams.config import PADDING_ID
    from deepngrams.grading.exercises import log_perplexity

    def wrong(preds, targets, formula):
        preds, targets = np.asarray(preds, np.float64), np.asarray(targets)
        picked = np.take_along_axis(preds, targets[..., None], axis=-1)[..., 0]
        real = {"masks_unknown_too": targets > PADDING_ID, "no_mask": np.ones(targets.shape, bool),
                "mean_over_all_tokens": targets != PADDING_ID}[formula]
        if formula == "mean_over_all_tokens":
            return float(-(picked * real).sum() / real.sum())
        with np.errstate(invalid="ignore"):  # a row left without a real target gives NaN: wrong as well
            return float(-np.mean((picked * real).sum(-1) / real.sum(-1)))

    for seed in range(3000):
        check = _drawn(log_perplexity, "test_log_perplexity_hidden", seed)
        for formula in ("masks_unknown_too", "no_mask", "mean_over_all_tokens"):
            observed = [_number(wrong(case["preds"], case["targets"], formula)) for case in check["inputs"]["cases"]]
            assert log_perplexity.judge(check, observed), (seed, formula)


def _grulm_with(mask_zero=False, go_backwards=False):
    import tensorflow as tf

    class GRULM(solution.GRULM):
        def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
            super().__init__(vocab_size, embedding_dim, rnn_units)
            self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero)
            self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True,
                                           go_backwards=go_backwards)
    return GRULM


def _compile_ignoring(ignored: int):
    import tensorflow as tf

    def compile_model(model):
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignored)
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=COURSE.learning_rate), loss=loss)
        return model
    return compile_model


@pytest.mark.slow
def test_the_mistakes_every_draw_tells_apart_fail_for_real(monkeypatch):
    """Run for real on a few draws: a loss that ignores '[UNK]' or padding fails both compile_model
    cells, an embedding with mask_zero fails both GRULM output cells, a GRU that reads backwards fails
    the layers cell; the right answers pass the same draws."""
    from deepngrams.config import PADDING_ID, UNK_ID
    from deepngrams.grading.exercises import compile_model, grulm
    runs = [(compile_model, cell, "compile_model", _compile_ignoring(ignored))
            for cell in compile_model.CELLS for ignored in (UNK_ID, PADDING_ID)]
    runs += [(grulm, cell, "GRULM", _grulm_with(mask_zero=True)) for cell in ("test_GRULM_outputs", "test_GRULM_hidden")]
    runs += [(grulm, "test_GRULM_layers", "GRULM", _grulm_with(go_backwards=True))]
    for seed in range(2):
        for module, cell, name, answer in runs:
            check = _drawn(module, cell, seed)
            right = getattr(solution, name)
            assert exercises.judge(check, observe(monkeypatch, check, {name: right})) == [], (cell, seed)
            assert exercises.judge(check, observe(monkeypatch, check, {name: answer})), (cell, seed)


@pytest.mark.slow
def test_adams_epsilon_of_other_libraries_passes_every_draw_and_a_large_one_fails_every_draw(monkeypatch):
    """The verdict on an epsilon does not depend on the student's draw: 1e-8 (PyTorch, Adam's paper) and
    1e-6 pass both compile_model cells in every draw, 1e-4 fails both in every draw."""
    import tensorflow as tf
    from deepngrams.grading.exercises import compile_model

    def with_epsilon(epsilon):
        def answer(model):
            model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.00125, epsilon=epsilon),
                          loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model
        return answer

    for seed in range(6):
        for cell in compile_model.CELLS:
            check = _drawn(compile_model, cell, seed)
            for epsilon in (1e-8, 1e-6):
                assert exercises.judge(check, observe(monkeypatch, check, {"compile_model": with_epsilon(epsilon)})) \
                    == [], (cell, seed, epsilon)
            assert exercises.judge(check, observe(monkeypatch, check, {"compile_model": with_epsilon(1e-4)})), \
                (cell, seed)


def test_a_weight_whose_adam_step_depends_on_epsilon_is_never_compared_again():
    """Id 5 is all but impossible at the first step (its bias -20) and not a target: its bias gets a
    gradient of about 1e-9, where Adam's step depends on epsilon. At the second step it is a target and
    its gradient is large, yet its bias is not compared; id 1's, a target at both steps, is."""
    import numpy as np
    from deepngrams.grading.exercises import compile_model
    rng = np.random.default_rng(0)
    V = 8
    weights = [rng.normal(size=(V, 4)), rng.normal(size=(4, V)) * 0.5, rng.normal(size=V) * 0.1]
    weights[2][5] = -20.0
    batches = [(np.array([[0, 2, 3]]), np.array([[1, 2, 3]])), (np.array([[0, 2, 4]]), np.array([[1, 5, 5]]))]
    _, versions = compile_model._adam_steps(weights, batches, [0, 1])
    for version in versions:
        (first, second) = (np.asarray(step[2], bool) for step in version["compared"])  # the dense layer's bias
        assert not first[5] and not second[5]
        assert first[1] and second[1]


def test_a_chunk_that_the_text_holds_twice_may_come_twice_but_no_more():
    """When the text repeats itself, its chunks repeat: each may be used as often as the text holds
    it, and a dataset that repeats one chunk more often (its first, say) still fails."""
    from deepngrams.grading.exercises import create_batch_dataset
    vocab = exercises.course_files(str(exercises.CARD_PATH), str(exercises.CORPUS_PATH))[0]
    check = {"hidden": True, "inputs": {"cases": [{"lines": ["abc ab", "c abc a"], "vocab": vocab, "seq_length": 2,
                                                   "batch_size": 2}]},
             "expected": [{"ids": common.char_ids("abc ab\nc abc a", vocab), "seq_length": 2, "batch_size": 2}]}
    ids = check["expected"][0]["ids"]
    chunks = [ids[k * 3:(k + 1) * 3] for k in range(len(ids) // 3)]
    assert len({tuple(c) for c in chunks}) < len(chunks)  # the text's chunks repeat

    def observed(order):
        batches = [[[chunks[k][:2] for k in pair], [chunks[k][1:] for k in pair]] for pair in zip(order[::2], order[1::2])]
        return [{"dataset": True, "spec": [["int64", [2, 2]], ["int64", [2, 2]]], "runs": [batches]}]
    every = list(range(len(chunks)))[: len(chunks) // 2 * 2]
    assert create_batch_dataset.judge(check, observed(every)) == []
    assert create_batch_dataset.judge(check, observed([every[0]] * len(every))) == \
        ["create_batch_dataset (a hidden case): a chunk is used twice"]


def _dataset_observation(ids: list[int], case: dict, rng) -> dict:
    """What the probe reports of a dataset that cuts `ids` as the exercise says, shuffles the chunks
    with `rng` and drops the remainders: one run per iteration the case asks for."""
    return _ordered_observation(ids, case, rng.permutation)


def test_a_newline_after_the_last_line_fails_both_dataset_cells_whatever_the_draw_and_the_shuffle():
    """A dataset of the lines joined with '\\n' and one more '\\n' at the end fails every draw of both
    cells, however it shuffles: the draw makes the extra id complete whole batches, so the chunk that
    ends in it is never among the remainders dropped. The right text passes the same draws."""
    from deepngrams.grading.exercises import create_batch_dataset
    shuffles = np.random.default_rng(0)
    for seed in range(80):
        for cell in create_batch_dataset.CELLS:
            check = _drawn(create_batch_dataset, cell, seed)
            first = check["inputs"]["cases"][0]
            assert create_batch_dataset.extra_id_fills_the_batches(first["lines"], first["seq_length"],
                                                                   first["batch_size"]), (cell, seed)
            for text_end, verdict in (("", False), ("\n", True)):
                observed = [_dataset_observation(common.char_ids("\n".join(case["lines"]) + text_end, case["vocab"]),
                                                 case, shuffles) for case in check["inputs"]["cases"]]
                assert bool(create_batch_dataset.judge(check, observed)) is verdict, (cell, seed, text_end)


def _each_copied(observations: list[dict]) -> list[dict]:
    """A copy of each observation whose keys can be replaced; the values are shared (judges only read them)."""
    return [dict(o) for o in observations]


def test_a_size_tensorflow_cannot_know_passes_and_a_kept_remainder_fails_whatever_the_draw():
    """element_spec may leave a size unknown (None: chunks cut another way than the notebook's) when the
    batches themselves are right; keeping the short last batch fails every draw of both cells on what the
    dataset yields, whatever the spec says, and so does a spec of another size, rank or dtype."""
    from deepngrams.grading.exercises import create_batch_dataset
    shuffles = np.random.default_rng(1)
    for seed in range(80):
        for cell in create_batch_dataset.CELLS:
            check = _drawn(create_batch_dataset, cell, seed)
            cases = check["inputs"]["cases"]
            right = [_dataset_observation(common.char_ids("\n".join(c["lines"]), c["vocab"]), c, shuffles)
                     for c in cases]
            assert create_batch_dataset.judge(check, right) == [], (cell, seed)
            for unknown in ("both", "time", "batch"):
                observed = _each_copied(right)
                for o, c in zip(observed, cases):
                    T, B = c.get("seq_length", 100), c.get("batch_size", 64)
                    shape = {"both": [None, None], "time": [B, None], "batch": [None, T]}[unknown]
                    o["spec"] = [["int64", shape], ["int64", shape]]
                assert create_batch_dataset.judge(check, observed) == [], (cell, seed, unknown)
            # What follows changes the first case only, and that case alone must fail.
            first_alone = _case_alone(check, 0)
            first, ids = cases[0], common.char_ids("\n".join(cases[0]["lines"]), cases[0]["vocab"])
            T, B = first["seq_length"], first["batch_size"]
            chunks = np.asarray(ids[: len(ids) // (T + 1) * (T + 1)]).reshape(-1, T + 1)
            assert len(chunks) % B, (cell, seed)  # a short last batch to keep
            kept = dict(right[0], runs=[[[chunks[i:i + B, :-1].tolist(), chunks[i:i + B, 1:].tolist()]
                                         for i in range(0, len(chunks), B)]],
                        spec=[["int64", [None, T]], ["int64", [None, T]]])
            assert create_batch_dataset.judge(first_alone, [kept]), (cell, seed)
            for spec in ([B, T + 1], [B], [B, T, 1], None):
                observed = dict(right[0], spec=[["int64", spec], ["int64", spec]])
                assert create_batch_dataset.judge(first_alone, [observed]), (cell, seed, spec)
            observed = dict(right[0], spec=[["int32", [B, T]], ["int32", [B, T]]])
            assert create_batch_dataset.judge(first_alone, [observed]), (cell, seed)


def _ordered_observation(ids: list[int], case: dict, order) -> dict:
    """What the probe reports of a dataset that cuts `ids` as the exercise says, reads its chunks in
    `order(n)` (the indices of the n chunks, a new call for each run) and drops the remainders."""
    T, B = case.get("seq_length", 100), case.get("batch_size", 64)
    chunks = np.asarray(ids[: len(ids) // (T + 1) * (T + 1)]).reshape(-1, T + 1)
    runs = []
    for _ in range(case.get("iterations", 1)):
        kept = chunks[np.asarray(order(len(chunks)), dtype=int)][: len(chunks) // B * B].reshape(-1, B, T + 1)
        runs.append([[batch[:, :-1].tolist(), batch[:, 1:].tolist()] for batch in kept])
    return {"dataset": True, "spec": [["int64", [B, T]], ["int64", [B, T]]], "runs": runs}


def _shuffle_buffer(n: int, size: int, rng) -> list[int]:
    """The order tf.data's shuffle(size) reads 0..n-1 in: fill a buffer of `size`, take one at random,
    refill it from the stream."""
    stream, buffer, out = iter(range(n)), [], []
    for k in stream:
        buffer.append(k)
        if len(buffer) == size:
            out.append(buffer.pop(int(rng.integers(len(buffer)))))
    while buffer:
        out.append(buffer.pop(int(rng.integers(len(buffer)))))
    return out


def _variants_of_a_run(run: list, B: int, rng) -> dict:
    """A run as a right dataset yields it, and as wrong or forged ones would: the judge must say of each
    what it says when it reads the run batch by batch."""
    x0, y0 = (np.asarray(t) for t in run[0])
    extra = np.asarray(run[-1][0])[: max(1, B // 2)]
    return {
        "right": run,
        "reversed": run[::-1],
        "short last batch kept": run + [[extra.tolist(), np.asarray(run[-1][1])[: len(extra)].tolist()]],
        "a batch twice": run + run[:1],
        "target not shifted": [[x0.tolist(), x0.tolist()]] + run[1:],
        "an id changed": [[(x0 + (np.arange(x0.size).reshape(x0.shape) == 0)).tolist(), y0.tolist()]] + run[1:],
        "float ids": [[np.asarray(x, float).tolist(), np.asarray(y, float).tolist()] for x, y in run],
        "half ids": [[(np.asarray(x) + 0.5).tolist(), (np.asarray(y) + 0.5).tolist()] for x, y in run],
        "last targets a little off": [[x, (np.asarray(y) + (np.arange(np.shape(y)[1]) == np.shape(y)[1] - 1) * 0.4)
                                           .tolist()] for x, y in run],
        "text ids": [[np.asarray(x).astype(str).tolist(), np.asarray(y).astype(str).tolist()] for x, y in run],
        "ragged rows": [[x0.tolist()[:-1] + [x0.tolist()[-1][:-1]], y0.tolist()]] + run[1:],
        "three tensors a batch": [[x0.tolist(), y0.tolist(), y0.tolist()]] + run[1:],
        "numbers too large": [[(x0.astype(object) * 10**30).tolist(), y0.tolist()]] + run[1:],
        "shuffled rows": [[np.asarray(x)[order].tolist(), np.asarray(y)[order].tolist()]
                          for x, y in run for order in [rng.permutation(B)]],
        "empty": [],
        "not a list": 7,
    }


def test_reading_a_run_at_once_gives_the_verdicts_of_reading_it_batch_by_batch(monkeypatch):
    """The judge reads a run of whole, right batches in one step (an integer array): for every kind of run,
    right, wrong or forged, it says what it says when it reads the run one batch at a time."""
    from deepngrams.grading.exercises import create_batch_dataset
    read_at_once = create_batch_dataset._examples_of_whole_batches
    rng = np.random.default_rng(3)

    def verdict(check, observations, at_once: bool):
        monkeypatch.setattr(create_batch_dataset, "_examples_of_whole_batches",
                            read_at_once if at_once else (lambda run, B, T: None))
        return exercises.judge(check, {"observations": observations})

    fast = 0
    for seed in range(2):
        for cell in create_batch_dataset.CELLS:
            check = _drawn(create_batch_dataset, cell, seed)
            cases = check["inputs"]["cases"]
            right = [_dataset_observation(common.char_ids("\n".join(c["lines"]), c["vocab"]), c, rng) for c in cases]
            for k, case in enumerate(cases):
                B, T = case.get("batch_size", 64), case.get("seq_length", 100)
                for name, run in _variants_of_a_run(right[k]["runs"][0], B, rng).items():
                    observations = _each_copied(right)
                    observations[k] = dict(right[k], runs=[run] + right[k]["runs"][1:])
                    assert verdict(check, observations, True) == verdict(check, observations, False), (cell, k, name)
                    fast += read_at_once(run, B, T) is not None
    assert fast >= 2 * 2 * 3  # the right runs, and the reversed and shuffled ones, were read at once


def test_the_visible_dataset_cell_fails_a_fixed_order_or_a_small_shuffle_buffer_whatever_the_draw():
    """The visible cell's shuffled case passes a uniform shuffle of its chunks and fails any order tied to
    the text's: the text's own order, its reverse, shuffle(2) to shuffle(10) (the rank correlation test,
    on at least MIN_SHUFFLED_CHUNKS chunks). An order with no tie to the text's fails too when every pass
    over the dataset repeats it: one uniform order drawn once, or a fixed stride through the chunks."""
    from deepngrams.grading.exercises import create_batch_dataset
    rng = np.random.default_rng(1)
    drawn_once: dict = {}
    orders = {"uniform": lambda n: rng.permutation(n), "text": lambda n: range(n),
              "reversed": lambda n: range(n)[::-1], "buffer_2": lambda n: _shuffle_buffer(n, 2, rng),
              "buffer_10": lambda n: _shuffle_buffer(n, 10, rng),
              "uniform_drawn_once": lambda n: drawn_once.setdefault(n, rng.permutation(n)),
              "stride": ex2_create_batch_dataset.stride_order}
    for seed in range(60):
        check = _drawn(create_batch_dataset, "test_create_batch_dataset", seed)
        cases = check["inputs"]["cases"]
        [k] = [k for k, case in enumerate(cases) if case.get("shuffled")]
        assert create_batch_dataset.kept_chunks(cases[k]["lines"], 10, 4) >= create_batch_dataset.MIN_SHUFFLED_CHUNKS
        # The other cases, read in a uniform order, pass: so each order is judged on the shuffled case alone.
        shuffled_alone = _case_alone(check, k)
        for name, order in orders.items():
            judged = check if name == "uniform" else shuffled_alone
            observed = [_ordered_observation(common.char_ids("\n".join(case["lines"]), case["vocab"]), case,
                                             order if case.get("shuffled") else orders["uniform"])
                        for case in judged["inputs"]["cases"]]
            fails = create_batch_dataset.judge(judged, observed)
            if name == "uniform":
                assert fails == [], (seed, fails)
            elif name == "text":
                assert [f.endswith("the examples are not shuffled") for f in fails] == [True], (seed, fails)
            elif name in ("uniform_drawn_once", "stride"):
                assert len(fails) == 1 and "same order at every pass" in fails[0], (seed, name, fails)
            else:
                assert len(fails) == 1 and "must be in a random order" in fails[0], (seed, name, fails)


@pytest.mark.slow
def test_feedback_never_shows_hidden_inputs_or_expected_values(monkeypatch, prepared):
    """Wrong answers fail the hidden cells with messages that name the property, not the data."""
    def leaky(*args, **kwargs):
        raise ValueError("SECRET-INPUT " + repr(args)[:200])

    namespace = {"line_to_tensor": lambda line, vocab: solution.line_to_tensor(line[::-1], vocab),
                 "log_perplexity": lambda preds, target: 1.0,
                 "GRULM": ex3_grulm.WRONG["ignores_incoming_state"][0],
                 "compile_model": leaky, "create_batch_dataset": leaky,
                 "GenerativeModel": ex6_generative_model.AlwaysGreedy}
    for cell, check in prepared.items():
        if not check["hidden"]:
            continue
        name = [n for n in namespace if exercises.CELLS[cell][1].startswith(n)][0]
        messages = " ".join(exercises.judge(check, observe(monkeypatch, check, {name: namespace[name]})))
        assert messages, cell
        assert "SECRET-INPUT" not in messages, cell
        for case, want in zip(check["inputs"]["cases"], check["expected"]):
            for value in _leaf_values(case) + _leaf_values({k: v for k, v in want.items() if k != "about"}):
                assert repr(value) not in messages and (not isinstance(value, str) or len(value) < 4
                                                        or value not in messages), (cell, value)


def test_nothing_a_student_raised_in_a_hidden_case_but_a_known_type_reaches_the_feedback(monkeypatch, prepared):
    """The student's code saw the hidden inputs and chose what it raised: the name of a type of its own,
    the message and the line that raised could each carry them out. A hidden case's verdict names a
    Python or TensorFlow exception type, nothing else; a visible case's says all of it."""
    def leaky(*args, **kwargs):
        hidden_text = repr(args)[:40]
        raise type("Leak_" + hidden_text.encode().hex(), (Exception,), {})("SECRET-INPUT " + hidden_text)

    def plain(*args, **kwargs):
        raise ValueError("SECRET-INPUT " + repr(args)[:40])

    names = [n for n, _ in CELLS.values()]
    for fn, named in ((leaky, "raised an exception of a type of its own"), (plain, "raised ValueError")):
        for cell, check in prepared.items():
            name = [n for n in names if exercises.CELLS[cell][1].startswith(n)][0]
            messages = " ".join(exercises.judge(check, observe(monkeypatch, check, {name: fn})))
            assert messages, cell
            if check["hidden"]:
                assert named in messages and "SECRET-INPUT" not in messages, (cell, messages)
                assert "Leak_" not in messages and "your code" not in messages, (cell, messages)
            else:
                assert "SECRET-INPUT" in messages, (cell, messages)
    o = {"error": "InvalidArgumentError: SECRET-INPUT", "where": {"cell": 3, "line": 1234}}  # where, in the sandbox
    assert common.raised(o, hidden=True) == "raised InvalidArgumentError"
    assert "SECRET-INPUT" in common.raised(o, hidden=False) and "In [3], line 1234" in common.raised(o, hidden=False)


def test_a_hidden_cases_verdict_quotes_no_type_or_shape_the_students_code_chose(monkeypatch, prepared):
    """What the code returned is described in a verdict (its type, dtype, shape); in a hidden case the
    code chose it having seen the inputs, so only the names of Python's, NumPy's, TensorFlow's and Keras'
    own types are quoted. A visible case's verdict quotes all of it."""
    def leaky(*args, **kwargs):
        code = sum(map(ord, repr(args)[:40])) % 50 + 3  # a number the inputs give
        return type(f"Leak_{code}", (), {"shape": (code, 7), "__array__": lambda self, *a, **k: np.zeros((code, 7))})()

    def shaped(*args, **kwargs):
        return np.zeros((sum(map(ord, repr(args)[:40])) % 50 + 3, 7), dtype=np.float16)

    for cell, check in prepared.items():
        name = [n for n, _ in CELLS.values() if exercises.CELLS[cell][1].startswith(n)][0]
        if name in ("GRULM", "GenerativeModel"):
            continue  # classes: what they return is probed through their methods (raised, above)
        for fn in (leaky, shaped):
            result = observe(monkeypatch, check, {name: fn})
            observed = [o.get("shape") for o in result.get("observations", []) if isinstance(o, dict)]
            messages = " ".join(exercises.judge(check, result))
            assert messages, cell
            if check["hidden"]:
                assert "Leak_" not in messages, (cell, messages)
                assert not any(str(s) in messages or str(tuple(s)) in messages for s in observed if s), (cell, messages)
            elif name in ("line_to_tensor", "log_perplexity"):  # verdicts that describe what came back
                assert "Leak_" in messages if fn is leaky else name == "line_to_tensor" or str(observed[0]) in messages


def test_a_visible_checks_verdict_after_a_hidden_one_quotes_nothing_the_code_chose(monkeypatch, prepared):
    """Once a hidden check has run, the student's code has seen its inputs: a later visible check's verdict
    could carry them out in what the code raised (its message, type, line) or returned (its type, shape,
    learning rate, states' shape, number of characters). Such a verdict quotes none of it, as a hidden
    check's; the same verdict before any hidden check quotes it all."""
    def leaky(*args, **kwargs):
        raise type("Leak_" + repr(args)[:20].encode().hex(), (ValueError,), {})("SECRET-INPUT " + repr(args)[:40])

    def plain(*args, **kwargs):
        raise ValueError("SECRET-INPUT " + repr(args)[:40])

    def shaped(*args, **kwargs):
        return type("Leak_shaped", (), {"shape": (4321, 7), "__array__": lambda self, *a, **k: np.zeros((4321, 7))})()

    import tensorflow as tf

    def compile_rate(model):
        return model.compile(optimizer=tf.keras.optimizers.Adam(0.00777),
                             loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)) or model

    class StatesOfItsOwn(ex6_generative_model.Reference):
        def generate_one_step(self, inputs, states=None):
            chars, _ = super().generate_one_step(inputs, states=states)
            return tf.repeat(chars, 37, axis=0), tf.zeros((1, 4321))

    names = [n for n, _ in CELLS.values()]
    told = ("SECRET-INPUT", "Leak_", "your code", "4321")  # what the answers below put in what they raise or return
    for cell, check in prepared.items():
        if check["hidden"]:
            continue
        name = [n for n in names if exercises.CELLS[cell][1].startswith(n)][0]
        answers = {plain, leaky, shaped} if name not in ("GRULM", "GenerativeModel") else {plain, leaky}
        answers |= {compile_rate} if name == "compile_model" else {StatesOfItsOwn} if name == "GenerativeModel" else set()
        for answer in answers:
            result = observe(monkeypatch, check, {name: answer})
            before, after = (" ".join(exercises.judge(check, result, after_hidden=a)) for a in (False, True))
            assert before and after, (cell, answer)
            for text in told:
                assert text not in after, (cell, answer.__name__, after)
            if answer in (plain, leaky):
                assert "SECRET-INPUT" in before and ("raised ValueError" in after or "type of its own" in after)
            if answer is compile_rate:
                assert "0.00777" in before and "0.00777" not in after and "Adam(learning_rate=0.00125)" in after
            if answer is StatesOfItsOwn:
                assert "4321" in before and "37" in before and "4321" not in after and "returned 37" not in after


def _leaf_values(data) -> list:
    """Strings and numbers (other than small integers) inside nested lists and dicts."""
    if isinstance(data, dict):
        return [v for value in data.values() for v in _leaf_values(value)]
    if isinstance(data, list):
        if data and all(isinstance(x, int) for x in data) and len(data) > 3:
            return [data] + [v for value in data for v in _leaf_values(value)]
        return [v for value in data for v in _leaf_values(value)]
    if isinstance(data, float) or isinstance(data, int) and abs(data) > 100:
        return [data]
    return [data] if isinstance(data, str) and data not in ("[UNK]", "") else []


@pytest.mark.slow
def test_the_reference_solution_passes_every_cell(monkeypatch, prepared):
    """And its observations stay well under what the harness accepts of one cell (`MAX_OBSERVATION_CHARS`)."""
    from deepngrams import config
    namespace = {name: getattr(solution, name) for name, _ in CELLS.values()}
    for cell, check in prepared.items():
        observed = observe(monkeypatch, check, namespace)
        assert exercises.judge(check, observed) == [], cell
        assert len(json.dumps(observed)) < config.MAX_OBSERVATION_CHARS / 4, cell


@pytest.mark.slow
@pytest.mark.parametrize("answer, tests", WRONG)
def test_a_wrong_answer_fails_a_cell_of_its_exercise(monkeypatch, prepared, answer, tests):
    """And the grader's visible cell of each public test the answer fails fails too: a student never
    sees a test fail in the notebook that then gets its points."""
    found = failures(monkeypatch, prepared, tests, answer)
    assert any(found.values()), found
    assert all(found[test] for test in tests if not prepared[test]["hidden"]), found


@pytest.mark.slow
@pytest.mark.parametrize("answer, tests", CORRECT)
def test_another_correct_answer_passes(monkeypatch, prepared, answer, tests):
    found = failures(monkeypatch, prepared, tests, answer)
    assert not any(found.values()), found


def test_missing_names_and_malformed_observations_fail(monkeypatch, prepared):
    check = prepared["test_log_perplexity"]
    assert "'log_perplexity' is not defined" in exercises.judge(check, observe(monkeypatch, check, {}))[0]
    assert exercises.judge(check, None)  # the cell never ran
    assert exercises.judge(check, {"observations": "all good"})
    assert exercises.judge(check, {"observations": [{"value": 1.0}]})  # too few
    faked = {"observations": [_number(0.0) for _ in check["inputs"]["cases"]]}
    assert exercises.judge(check, faked)


def test_observations_equal_to_the_expected_answers_pass(prepared):
    """The verdict depends only on the values: right values pass, however they were produced."""
    check = prepared["test_log_perplexity_hidden"]
    right = {"observations": [_number(e["value"]) for e in check["expected"]]}
    assert exercises.judge(check, right) == []
    wrong = {"observations": [dict(o, value=o["value"] + 0.01) for o in right["observations"]]}
    assert exercises.judge(check, wrong)


def test_a_state_of_another_shape_fails_even_where_its_numbers_would_broadcast(prepared):
    """Each state the GRULM returns is compared in shape first: (1, batch, units) holds the right numbers
    but is not the state, and numpy would broadcast it into a pass."""
    check = prepared["test_GRULM_outputs"]
    tensor = lambda a: {"kind": "EagerTensor", "tensor": True, "dtype": "float32",  # noqa: E731
                        "shape": list(np.shape(a)), "value": np.asarray(a).tolist()}
    right = []
    for case, want in zip(check["inputs"]["cases"], check["expected"]):
        full, state = np.asarray(want["full"]), np.asarray(want["state"])
        right.append({"full": tensor(full), "pair": {"kind": "tuple", "items": [tensor(full), tensor(state)]},
                      "tail": tensor(full[:, case["split"]:]), "tail_state": tensor(state),
                      "given": tensor(want["given"]), "given_state": tensor(want["given_state"]),
                      "again": tensor(want["again"])})
    assert exercises.judge(check, {"observations": right}) == []
    for key in ("tail_state", "given_state"):
        wrapped = [dict(o, **{key: tensor(np.asarray(o[key]["value"])[None])}) for o in right]
        fails = exercises.judge(check, {"observations": wrapped})
        assert len(fails) == len(right) and all("state" in f for f in fails), (key, fails)


def test_flags_a_process_reports_about_itself_are_not_enough(prepared):
    """compile_model and the layers pass only with numbers that take a working model to produce."""
    check = prepared["test_compile_model_hidden"]
    case, want = check["inputs"]["cases"][0], check["expected"][0]
    forged = {"same": True, "loss_is": True, "from_logits": True, "optimizer_is": True, "learning_rate": COURSE.learning_rate,
              "step": {"loss": {"kind": "float", "dtype": "float64", "shape": [], "value": want["loss"]},
                       "weights": {"items": [{"dtype": "float32", "shape": list(np.shape(w)), "value": w}
                                             for w in case["weights"]]}}}  # weights never moved
    assert exercises.judge(check, {"observations": [forged]})
    check = prepared["test_GRULM_layers"]
    forged = []
    for case, want in zip(check["inputs"]["cases"], check["expected"]):
        v = case["sizes"][0]
        uniform = np.full(want["preds_shape"], -np.log(v)).tolist()
        forged.append({"layers": {"model": True, "gru_flags": [case["sizes"][2], True, True],
                                  **{name: {"kind": name, "is": True, "shapes": shapes}
                                     for name, shapes in want["shapes"].items()}},
                       "preds": {"dtype": "float32", "shape": want["preds_shape"], "value": uniform}})
    assert exercises.judge(check, {"observations": forged})
