"""w1_unittest.py: the reference solutions pass, plausible wrong answers fail, other right answers pass.

The wrong and alternative answers live in tests/wrong_solutions/.
"""
import ast
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import w1_unittest as w1  # noqa: E402
from deepngrams.lm import solution  # noqa: E402
from wrong_solutions import (ex1_line_to_tensor, ex2_create_batch_dataset, ex3_grulm,  # noqa: E402
                             ex4_compile_model, ex5_log_perplexity, ex6_generative_model, ex6_sampling)

REFERENCE = {
    "test_line_to_tensor": solution.line_to_tensor,
    "test_create_batch_dataset": solution.create_batch_dataset,
    "test_GRULM_layers": solution.GRULM,
    "test_GRULM_outputs": solution.GRULM,
    "test_compile_model": solution.compile_model,
    "test_log_perplexity": solution.log_perplexity,
    "test_temperature_random_sampling": solution.temperature_random_sampling,
    "test_GenerativeModel": solution.GenerativeModel,
}
ANSWER_NAMES = {test: answer.__name__ for test, answer in REFERENCE.items()}
MODULES = (ex1_line_to_tensor, ex2_create_batch_dataset, ex3_grulm, ex4_compile_model, ex5_log_perplexity,
           ex6_sampling, ex6_generative_model)
WRONG = [pytest.param(test, answer, id=f"{m.__name__.split('.')[-1]}-{name}-{test}")
         for m in MODULES for name, (answer, tests) in m.WRONG.items() for test in tests]
CORRECT = [pytest.param(test, answer, id=f"{m.__name__.split('.')[-1]}-{name}-{test}")
           for m in MODULES for name, answer in m.CORRECT.items() for test in m.TESTS]
# Characters test_GenerativeModel samples at temperature 1 for the variants (the reference runs with
# w1_unittest's default). That case checks the prefix and the length, which a variant gets right or
# wrong at any length, and that no '[UNK]' is written (the masks are caught by the cases with made-up
# models that prefer '[UNK]' and padding). Each character is one model call.
SHORT_SAMPLE = 5


@pytest.fixture
def short_sample(monkeypatch):
    monkeypatch.setattr(w1, "_SAMPLE_LENGTH", SHORT_SAMPLE)


@pytest.fixture(scope="module")
def keras_pretrained():
    """The pretrained GRULM built by Keras, its vocabulary and card: loaded once, only read by the tests."""
    from deepngrams.lm.weights import load_pretrained
    return load_pretrained()


def _process_state():
    return (list(warnings.filters), logging.root.manager.disable, os.fstat(2).st_ino, sys.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("test", list(REFERENCE))
def test_reference_solution_passes_quietly(test, capfd):
    before = _process_state()
    getattr(w1, test)(REFERENCE[test])
    out, err = capfd.readouterr()
    assert "All tests passed" in out
    assert err == ""
    assert _process_state() == before  # nothing global outlives the test


@pytest.mark.slow
@pytest.mark.parametrize("test, answer", WRONG)
def test_wrong_answer_fails(test, answer, short_sample, capfd):
    with pytest.raises(AssertionError) as failure:
        getattr(w1, test)(answer)
    message = str(failure.value)
    assert "Failed case" in message and "Expected:" in message and "Got:" in message, message
    assert "All tests passed" not in capfd.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("test, answer", CORRECT)
def test_other_correct_answer_passes(test, answer, short_sample, capfd):
    getattr(w1, test)(answer)
    out, err = capfd.readouterr()
    assert "All tests passed" in out
    assert err == ""


@pytest.mark.slow
def test_no_stderr_in_a_fresh_process_with_tensorflow_logging_on():
    """nbgrader scores 0 for any stderr output; the notebook does not lower TensorFlow's log level."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import tensorflow as tf
        import w1_unittest as w1
        from deepngrams.lm import solution
        print("--- start", file=sys.stderr, flush=True)
        answers = {{test: getattr(solution, name) for test, name in {ANSWER_NAMES!r}.items()}}
        for test in answers:
            getattr(w1, test)(answers[test])
        for test in ("test_create_batch_dataset", "test_log_perplexity", "test_line_to_tensor"):
            getattr(w1, test)(answers[test])  # a second run, in another order
        sys.stderr.flush()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                         cwd=str(ROOT))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("All tests passed") == len(REFERENCE) + 3, run.stdout
    assert "--- start" in run.stderr, run.stderr[-3000:]
    assert run.stderr.split("--- start", 1)[1].strip() == "", run.stderr[-3000:]


def test_the_trusted_model_matches_keras(keras_pretrained):
    model, vocab, _ = keras_pretrained
    assert vocab == w1.vocab()
    inputs = tf.constant(w1.load_reference()["grulm"]["inputs"], dtype=tf.int64)
    expected, expected_state = model(inputs, return_state=True)
    got, state = w1.pretrained_lm()(inputs, return_state=True)
    # float32, other op order: log-probabilities of -40 differ in the 6th significant digit
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(state.numpy(), expected_state.numpy(), atol=1e-5)
    k = 9
    _, head = w1.pretrained_lm()(inputs[:, :k], return_state=True)
    tail = w1.pretrained_lm()(inputs[:, k:], states=head)
    np.testing.assert_allclose(tail.numpy(), expected.numpy()[:, k:], rtol=1e-5, atol=1e-4)
    assert w1.pretrained_lm() is w1.pretrained_lm()


def _accepts(model, *args, **kwargs) -> bool:
    try:
        model(*args, **kwargs)
    except ValueError as e:
        assert "Only input tensors may be passed as positional arguments" in str(e), e
        return False
    return True


def test_the_models_handed_to_student_code_take_the_calls_a_keras_model_takes(keras_pretrained):
    """Keras 3 refuses anything but tensors (or None) passed by position: a generator written against
    the tests' models or the grader's (deepngrams.grading.inside.probes.TableLM) must not get away with
    a call that the course's GRULM refuses, nor be refused one it takes."""
    from deepngrams.grading.inside.probes import TableLM
    model, vocab, _ = keras_pretrained
    ids = tf.constant([[3, 4, 5], [6, 7, 8]], dtype=tf.int64)
    _, state = model(ids, return_state=True)
    calls = {"keywords": ((ids,), dict(states=state, return_state=True)),
             "state by position": ((ids, state), {}), "None by position": ((ids, None), dict(return_state=True)),
             "state in a list": ((ids, [state]), {}), "numpy state": ((ids, state.numpy()), {}),
             "numpy ids": ((ids.numpy(),), {}), "flag by position": ((ids, state, True), {}),
             "None and flag by position": ((ids, None, True), {}), "ids as a list": (([[3, 4, 5]],), {}),
             "a number by position": ((ids, 0), {})}
    keras = {name: _accepts(model, *args, **kwargs) for name, (args, kwargs) in calls.items()}
    assert not keras["flag by position"] and keras["state by position"]  # what this test is about
    units = int(state.shape[-1])
    voc = w1.vocab()
    table = TableLM(np.zeros((units, len(voc)), np.int32), np.zeros((units, len(voc)), np.float32), units)
    stand_ins = {"pretrained": w1.pretrained_lm(), "biased": w1._BiasedLM(w1.pretrained_lm()),
                 "cycle": w1._CycleLM(voc, units), "fixed": w1._FixedLM(voc, "ab", [0.5, 0.5], units),
                 "grader's table": table}
    for who, stand_in in stand_ins.items():
        assert {name: _accepts(stand_in, *args, **kwargs) for name, (args, kwargs) in calls.items()} == keras, who


# What a GenerativeModel may read of the model it is given, besides calling it: the layers of the
# course's GRULM (deepngrams.lm.solution), with these attributes.
GRULM_INTERFACE = {"embedding": ("input_dim", "output_dim"), "gru": ("units", "state_size", "return_sequences",
                                                                   "return_state"), "dense": ("units",)}


def _initial_states(model, batch):
    return [(tuple(s.shape), tf.as_dtype(s.dtype).name, float(tf.reduce_max(tf.abs(s))))
            for s in model.gru.get_initial_state(batch)]


def test_the_models_handed_to_a_generator_have_the_layer_sizes_of_a_GRULM_of_their_sizes():
    """Every model w1_unittest or the grader (probes.TableLM) hands to a GenerativeModel has the
    embedding, gru and dense a generator may read of the course's GRULM, with the values of a
    solution.GRULM built for the same sizes: a generator that starts from zeros of model.gru.units,
    or model.gru.get_initial_state(batch), or sizes its mask by model.dense.units, is graded as on
    the real model. Zero states are each model's start, as states=None."""
    from deepngrams.grading.inside.probes import TableLM
    voc = w1.vocab()
    V, E, U = w1._sizes()
    rng = np.random.default_rng(0)
    table = TableLM(rng.integers(0, 5, size=(5, V)), np.log(rng.dirichlet(np.ones(V), size=5)), 16, embedding_dim=7)
    stand_ins = {"pretrained": (w1.pretrained_lm(), (V, E, U)), "biased": (w1._BiasedLM(w1.pretrained_lm()), (V, E, U)),
                 "cycle": (w1._CycleLM(voc, U), (V, E, U)), "cycle, other sizes": (w1._CycleLM(voc, 24, embedding_dim=6),
                                                                                  (V, 6, 24)),
                 "fixed": (w1._FixedLM(voc, "ab", [0.5, 0.5], 24, embedding_dim=6), (V, 6, 24)),
                 "grader's table": (table, (V, 7, 16)),
                 "grader's table, embedding_dim not given": (TableLM(np.zeros((2, V)), np.zeros((2, V)), 16), (V, 16, 16))}
    ids = tf.constant([[3, 4, 5], [6, 7, 8]], dtype=tf.int64)
    for who, (model, sizes) in stand_ins.items():
        grulm = solution.GRULM(*sizes)
        for layer, attributes in GRULM_INTERFACE.items():
            for attribute in attributes:
                want = getattr(getattr(grulm, layer), attribute)
                assert getattr(getattr(model, layer), attribute) == want, (who, layer, attribute)
        assert model.gru.cell.units == grulm.gru.cell.units and model.gru.cell.state_size == grulm.gru.cell.state_size
        assert [layer.units if hasattr(layer, "units") else layer.output_dim for layer in model.layers] == \
            [grulm.embedding.output_dim, grulm.gru.units, grulm.dense.units], who
        for batch in (2, tf.constant(2), tf.shape(ids)[0]):
            assert _initial_states(model, batch) == _initial_states(grulm, batch) == [((2, sizes[2]), "float32", 0.0)], who
        graph = tf.function(lambda x, m=model: m.gru.get_initial_state(tf.shape(x)[0]))(ids)
        assert [tuple(s.shape) for s in graph] == [(2, sizes[2])], who
        log_probs, state = model(ids, return_state=True)
        assert log_probs.shape[-1] == model.dense.units and tuple(state.shape) == (2, model.gru.units), who
        for zeros in (model.gru.get_initial_state(2), model.gru.get_initial_state(2)[0]):
            started, state_from_zeros = model(ids, states=zeros, return_state=True)
            np.testing.assert_array_equal(started.numpy(), log_probs.numpy(), err_msg=who)
            np.testing.assert_array_equal(state_from_zeros.numpy(), state.numpy(), err_msg=who)


def _stand_ins(units: int, embedding_dim: int | None = None) -> dict:
    """Every kind of model w1_unittest or the grader hands to a GenerativeModel, with states to tell."""
    from deepngrams.grading.inside.probes import TableLM
    voc = w1.vocab()
    rng = np.random.default_rng(1)
    table = TableLM(rng.integers(0, 6, size=(6, len(voc))), np.log(rng.dirichlet(np.ones(len(voc)), size=6)), units,
                    embedding_dim=embedding_dim)
    return {"pretrained": w1.pretrained_lm(), "biased": w1._BiasedLM(w1.pretrained_lm()),
            "cycle": w1._CycleLM(voc, units, embedding_dim=embedding_dim),
            "fixed": w1._FixedLM(voc, "ab", [0.5, 0.5], units, embedding_dim=embedding_dim), "grader's table": table}


def _by_hand(model, ids, states, last_only=False):
    """GRULM.call's three lines, run on `model`'s layers."""
    sequence, state = model.gru(model.embedding(ids, training=False), initial_state=states, training=False)
    return model.dense(sequence[:, -1] if last_only else sequence), state


def test_running_a_stand_ins_layers_by_hand_is_calling_it():
    """A generator may run the model's embedding, gru and dense itself, as GRULM.call does: on every
    model the tests and the grader hand it, that computes what calling the model computes (from None,
    from zeros, and from a state the model returned; eagerly and inside tf.function), in the shapes a
    GRULM's layers give, the dense layer on a whole sequence or on its last step."""
    V, E, U = w1._sizes()
    ids = tf.constant([[3, 4, 5, 9], [6, 7, 8, 2]], dtype=tf.int64)
    later = tf.constant([[12], [13]], dtype=tf.int64)
    grulm = solution.GRULM(V, E, U)
    x = grulm.embedding(ids)
    want = {"embedding": tuple(x.shape), "sequence": tuple(grulm.gru(x)[0].shape), "state": tuple(grulm.gru(x)[1].shape),
            "dense": tuple(grulm(ids).shape), "dense on the last step": tuple(grulm.dense(grulm.gru(x)[0][:, -1]).shape)}
    graph = tf.function(_by_hand, autograph=False)
    for who, model in _stand_ins(U, embedding_dim=E).items():
        shapes = {"embedding": tuple(model.embedding(ids).shape)}
        sequence, state = model.gru(model.embedding(ids))
        shapes.update(sequence=tuple(sequence.shape), state=tuple(state.shape), dense=tuple(model.dense(sequence).shape))
        shapes["dense on the last step"] = tuple(model.dense(sequence[:, -1]).shape)
        assert shapes == want, who
        assert [type(layer).__name__ for layer in model.layers] == ["_Layer", "_GRULayer", "_Layer"], who
        _, returned = model(ids, return_state=True)
        for states in (None, tf.zeros((2, U)), model.gru.get_initial_state(2), returned, [returned], returned.numpy()):
            called, called_state = model(later, states=states, return_state=True)
            for run in (_by_hand, graph):
                log_probs, state = run(model, later, states)
                np.testing.assert_allclose(log_probs.numpy(), called.numpy(), atol=1e-6, err_msg=who)
                np.testing.assert_allclose(state.numpy(), called_state.numpy(), atol=1e-6, err_msg=who)
            last, _ = _by_hand(model, later, states, last_only=True)
            np.testing.assert_allclose(last.numpy(), called[:, -1].numpy(), atol=1e-6, err_msg=who)


def test_the_stand_ins_layers_take_the_calls_a_grulms_layers_take(keras_pretrained):
    """Each layer of the tests' and the grader's models takes and refuses what the same layer of a GRULM
    does: tensors or arrays by position, `training` by keyword, the GRU's state by position or keyword,
    alone or in a list; not a Python list by position, nor a flag."""
    model, _, _ = keras_pretrained
    ids = tf.constant([[3, 4, 5], [6, 7, 8]], dtype=tf.int64)

    def calls(model) -> dict:
        """The calls, each layer given what the layer before it gave."""
        x = model.embedding(ids)
        sequence, state = model.gru(x)
        return {"embedding": {"tensor": ((ids,), {}), "numpy": ((ids.numpy(),), {}),
                              "training": ((ids,), dict(training=False)), "a list": (([[3, 4, 5]],), {})},
                "gru": {"state by keyword": ((x,), dict(initial_state=state)), "state by position": ((x, state), {}),
                        "state in a list": ((x,), dict(initial_state=[state])), "None by position": ((x, None), {}),
                        "training": ((x,), dict(training=False)), "flag by position": ((x, None, None, True), {}),
                        "numpy": ((x.numpy(), state.numpy()), {})},
                "dense": {"sequence": ((sequence,), {}), "last step": ((sequence[:, -1],), {}),
                          "training": ((sequence,), dict(training=False)), "a flag": ((sequence, True), {})}}

    def accepted(model) -> dict:
        return {which: {name: _accepts(getattr(model, which), *args, **kwargs) for name, (args, kwargs) in tried.items()}
                for which, tried in calls(model).items()}

    keras = accepted(model)
    assert not keras["gru"]["flag by position"] and keras["gru"]["state by position"]  # what this test is about
    for who, stand_in in _stand_ins(model.gru.units).items():
        assert accepted(stand_in) == keras, who


def test_exception_in_student_code_is_a_named_failed_case(capfd):
    def line_to_tensor(line, vocab):
        raise ValueError("my bug")

    with pytest.raises(AssertionError) as failure:
        w1.test_line_to_tensor(line_to_tensor)
    message = str(failure.value)
    assert "ValueError in line_to_tensor(), line" in message and ": my bug" in message
    # Every case raised the same error: it is said once, after the cases it broke.
    assert "Failed cases (9, the same error): line_to_tensor('abc xyz', vocab); " in message
    assert message.count("my bug") == 1
    assert capfd.readouterr().err == ""


def test_a_broken_model_stops_test_GRULM_outputs_early():
    class GRULM(tf.keras.Model):
        def __init__(self, vocab_size, embedding_dim, rnn_units):
            raise TypeError("forgot super().__init__()")

    with pytest.raises(AssertionError) as failure:
        w1.test_GRULM_outputs(GRULM)
    assert "TypeError in __init__(), line" in str(failure.value) and "forgot super().__init__()" in str(failure.value)
    assert "were not run" in str(failure.value)
    assert failure.value.__suppress_context__


def test_check_helper():
    w1.check(True, "fine", 1, 1)
    with pytest.raises(AssertionError) as failure:
        w1.check(False, "my case", [1, 2], [1, 3])
    message = str(failure.value)
    assert "Failed case: my case" in message and "[1, 2]" in message and "[1, 3]" in message
    assert "\x1b[31m" in message  # red


def test_helpers_read_the_model_folder():
    ref = w1.load_reference()
    card = w1.model_card()
    assert ref["vocab_size"] == len(w1.vocab()) == len(card["vocab"])
    assert w1.vocab()[:2] == ["[UNK]", ""]
    assert w1.pretrained_lm().units == card["hparams"]["rnn_units"]


def test_module_is_fit_to_give_to_students():
    source = (ROOT / "w1_unittest.py").read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"numpy", "tensorflow", "h5py", "termcolor"}, third_party
    # No piece of the exercises' answers.
    for giveaway in ("StringLookup", "unicode_split", ".batch(", ".shuffle(", ".compile(", "drop_remainder",
                     "-tf.math.log(-tf.math.log", "deepngrams"):
        assert giveaway not in source, giveaway


@pytest.mark.slow
def test_greedy_probes_are_checked(monkeypatch, keras_pretrained):
    """The greedy probes of the reference file are compared (made here from the current weights)."""
    import copy

    from deepngrams.course import reference_values as reference
    model, vocab, _ = keras_pretrained
    monkeypatch.setattr(reference, "GREEDY_MARGIN", 0.02)  # far above float32 differences
    probes = []
    for prefix in ("ROMEO\t", "The king "):
        continuation, margin = reference.greedy_probe(model, vocab, prefix, max_chars=8)
        if len(continuation) >= 4:
            probes.append({"prefix": prefix, "continuation": continuation, "min_margin": margin})
    assert probes
    ref = w1.load_reference()
    ref["greedy"]["probes"] = probes
    monkeypatch.setattr(w1, "load_reference", lambda: copy.deepcopy(ref))
    monkeypatch.setattr(w1, "_SAMPLE_LENGTH", SHORT_SAMPLE)
    w1.test_GenerativeModel(solution.GenerativeModel)

    changed = copy.deepcopy(ref)
    probe = changed["greedy"]["probes"][0]
    probe["continuation"] = probe["continuation"][:-1] + ("x" if probe["continuation"][-1] != "x" else "y")
    monkeypatch.setattr(w1, "load_reference", lambda: copy.deepcopy(changed))
    with pytest.raises(AssertionError) as failure:
        w1.test_GenerativeModel(solution.GenerativeModel)
    assert "(greedy)" in str(failure.value) and "1 failed case" in str(failure.value)
