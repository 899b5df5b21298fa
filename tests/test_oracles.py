"""Nothing inside the sandbox can compute or look up an expected answer.

The graded run's w1_unittest.py is a stand-in without the tests' models; the probes build the
models they hand to student code from tables the grader drew, and those models carry no answer.
(tests/test_grade_hostile.py grades submissions that try these oracles; tests/test_checks.py
checks that every case is drawn per student and per file.)
"""
import ast
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

import w1_unittest
from deepngrams.grading.inside import probes
from deepngrams.grading import sandbox
from deepngrams.config import ROOT
from deepngrams.grading.exercises import generative_model



def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stand_in():
    return _load(sandbox.GRADED_UNITTEST, "graded_w1_unittest_under_test")


def test_the_graded_run_mounts_the_stand_in_as_w1_unittest():
    args = sandbox.bwrap_args(sandbox.FIRST_UID, sandbox.Limits())
    binds = {args[i + 2]: args[i + 1] for i in range(len(args) - 2) if args[i] == "--ro-bind"}
    assert binds[f"{sandbox.BUNDLE}/w1_unittest.py"] == str(sandbox.GRADED_UNITTEST)
    assert str(ROOT / "w1_unittest.py") not in args
    assert not any("reference_values" in a for a in args)


def test_the_stand_in_keeps_the_public_names_and_no_model(stand_in):
    assert set(w1_unittest.__all__) <= set(dir(stand_in))
    for name in ("_PretrainedLM", "_CycleLM", "_BiasedLM", "_FixedLM", "_cycle_text", "REFERENCE_PATH",
                 "WEIGHTS_PATH", "_corpus_lines"):
        assert not hasattr(stand_in, name), name
    for name in ("pretrained_lm", "load_reference"):
        with pytest.raises(RuntimeError, match="not available while the notebook is graded"):
            getattr(stand_in, name)()
    source = sandbox.GRADED_UNITTEST.read_text()
    imported = {n.name for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom))
                for n in node.names} | {node.module for node in ast.walk(ast.parse(source))
                                        if isinstance(node, ast.ImportFrom)}
    assert not imported & {"tensorflow", "numpy", "h5py", "keras"}, imported
    assert "reference_values" not in source and "weights.h5" not in source


def test_the_stand_ins_visible_helpers_still_work(stand_in, capsys, monkeypatch):
    monkeypatch.setenv("DEEPNGRAMS_BUNDLE", str(ROOT))  # the sandbox sets it to /bundle
    assert stand_in.vocab() == w1_unittest.vocab()
    stand_in.test_GRULM_outputs(object())
    assert "checked by the grader" in capsys.readouterr().out
    stand_in.check(True, "fine", 1, 1)
    with pytest.raises(AssertionError, match="Failed case: broken"):
        stand_in.check(False, "broken", 1, 2)
    with stand_in.quiet():
        pass


def test_the_probes_need_nothing_of_the_bundle_or_the_tests():
    source = (ROOT / "deepngrams" / "grading" / "inside" / "probes.py").read_text()
    for oracle in ("w1_unittest", "grulm.weights", "reference_values", "pretrained"):
        assert oracle not in source, oracle


def test_the_models_handed_to_generative_model_run_eagerly_and_in_graph_mode_and_know_no_answer():
    vocab = w1_unittest.vocab()
    rng = np.random.default_rng(3)
    table = generative_model._table_model(rng, vocab, 5, peaked=True, unknown_first=True)
    lm = probes.TableLM(table["transitions"], table["log_probs"], table["units"])
    assert not any(hasattr(lm, name) for name in ("expected", "answer", "text", "continuation"))
    ids = tf.constant([[5, 9, 12, 3], [7, 7, 2, 40]], dtype=tf.int64)
    eager, state = lm(ids, return_state=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, 16], tf.float32)])
    def graph(x, s):
        return lm(x, states=s, return_state=True)

    traced, traced_state = graph(ids, tf.zeros((2, 16)))
    np.testing.assert_allclose(traced.numpy(), eager.numpy())
    np.testing.assert_allclose(traced_state.numpy(), state.numpy())
    # The state carries on: reading the sequence in two parts gives what reading it at once gives.
    _, head = lm(ids[:, :2], return_state=True)
    tail = lm(ids[:, 2:], states=head)
    np.testing.assert_allclose(tail.numpy(), eager.numpy()[:, 2:])
    # And the tables are what the grader's simulation reads.
    T, L = np.asarray(table["transitions"]), np.asarray(table["log_probs"])
    s = 0
    for t, i in enumerate(ids.numpy()[0]):
        s = T[s, i]
        np.testing.assert_allclose(eager.numpy()[0, t], L[s], rtol=0, atol=1e-6)


def test_the_public_tests_models_run_inside_tf_function_too():
    """w1_unittest's own models (student-side) work when a student compiles generate_one_step."""
    lm = w1_unittest.pretrained_lm()
    toy = w1_unittest._CycleLM(w1_unittest.vocab(), lm.units)
    ids = tf.constant([[10, 11, 12]], dtype=tf.int64)
    for model in (lm, toy):
        eager = model(ids, return_state=True)
        traced = tf.function(lambda x, m=model: m(x, return_state=True),
                             input_signature=[tf.TensorSpec([None, None], tf.int64)])(ids)
        for a, b in zip(eager, traced):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
