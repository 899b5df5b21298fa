"""Messages a student can act on: the Keras 3 breaks of code that circulates for this
assignment cost their points, and the message names the cause and the fix, in w1_unittest.py
and in the grader's feedback alike; it points at the student's line, and says a failure shared
by several cases once.
"""
import json
import linecache
import textwrap

import pytest

import w1_unittest
from deepngrams.grading.inside import probes
from deepngrams.lm import solution
from deepngrams.grading.exercises import common
from deepngrams.grading import exercises


# Code as it circulates (written for Keras 2), each with the exercise it answers, the test that
# catches it and the words of the fix.
SETUP = "import numpy as np\nimport tensorflow as tf\n"
PITFALLS = {
    "get_initial_state": ("GRULM", "test_GRULM_outputs", "takes the batch size", '''
class GRULM(tf.keras.Model):
    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        if states is None:
            states = self.gru.get_initial_state(x)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x
'''),
    "super_init_self": ("GRULM", "test_GRULM_outputs", "without `self`", '''
class GRULM(tf.keras.Model):
    def __init__(self, vocab_size=256, embedding_dim=256, rnn_units=128):
        super().__init__(self)
        self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
        self.gru = tf.keras.layers.GRU(rnn_units, return_sequences=True, return_state=True)
        self.dense = tf.keras.layers.Dense(vocab_size, activation=tf.nn.log_softmax)

    def call(self, inputs, states=None, return_state=False, training=False):
        x = self.embedding(inputs, training=training)
        x, states = self.gru(x, initial_state=states, training=training)
        x = self.dense(x, training=training)
        return (x, states) if return_state else x
'''),
    "ragged_ids": ("GenerativeModel", "test_GenerativeModel", "`.to_tensor()`", '''
class GenerativeModel(tf.keras.Model):
    def __init__(self, model, vocab, temperature=1.0):
        super().__init__()
        self.temperature, self.model, self.vocab = temperature, model, vocab
        self.prediction_mask = tf.constant([-np.inf, -np.inf] + [0.0] * (len(vocab) - 2))

    def generate_one_step(self, inputs, states=None):
        input_ids = line_to_tensor(inputs, self.vocab)
        predicted_logits, states = self.model(inputs=input_ids, states=states, return_state=True)
        predicted_logits = predicted_logits[:, -1, :] + self.prediction_mask
        predicted_ids = temperature_random_sampling(predicted_logits, self.temperature)
        return text_from_ids(predicted_ids[:, tf.newaxis], self.vocab), states

    def generate_n_chars(self, num_chars, prefix):
        states, next_char, result = None, tf.constant([prefix]), [tf.constant([prefix])]
        for _ in range(num_chars):
            next_char, states = self.generate_one_step(next_char, states=states)
            result.append(next_char)
        return tf.strings.join(result)[0].numpy().decode("utf-8")
'''),
    "mask_token": ("line_to_tensor", "test_line_to_tensor", "`mask_token=None`", '''
def line_to_tensor(line, vocab):
    chars = tf.strings.unicode_split(line, input_encoding="UTF-8")
    ids = tf.keras.layers.StringLookup(vocabulary=vocab, mask_token="")(chars)
    return ids
'''),
    "optimizer_lr": ("compile_model", "test_compile_model", "`learning_rate=`", '''
def compile_model(model):
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=tf.keras.optimizers.Adam(lr=0.00125), loss=loss)
    return model
'''),
}
# Keras 2 took flags by position too: the generator above, with return_state passed so.
PITFALLS["positional_flag"] = ("GenerativeModel", "test_GenerativeModel", "only tensors by position",
                               PITFALLS["ragged_ids"][3].replace("line_to_tensor(inputs, self.vocab)\n",
                                                                  "line_to_tensor(inputs, self.vocab).to_tensor()\n")
                               .replace("self.model(inputs=input_ids, states=states, return_state=True)",
                                        "self.model(input_ids, states, True)"))
# Keras 2's recurrent layers called their input `inputs`, and some code passes it by that name: the
# model above, with that one mistake instead of its own.
PITFALLS["gru_inputs_keyword"] = ("GRULM", "test_GRULM_outputs", "called `sequences`",
                                  PITFALLS["super_init_self"][3].replace("super().__init__(self)", "super().__init__()")
                                  .replace("self.gru(x, initial_state", "self.gru(inputs=x, initial_state"))
HINT = {name: next(hint for _, sign, hint in w1_unittest.KERAS3_PITFALLS if words in hint)
        for name, (_, _, words, _) in PITFALLS.items()}


def student_namespace(name: str, filename: str) -> dict:
    """The pitfall's code defined as a notebook cell would define it (a cell file IPython knows)."""
    exercise, _, _, code = PITFALLS[name]
    source = textwrap.dedent(code)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns = {name: getattr(solution, name) for name in ("line_to_tensor", "text_from_ids",
                                                    "temperature_random_sampling")}
    exec(SETUP, ns)
    exec(compile(source, filename, "exec"), ns)
    return ns


@pytest.mark.parametrize("name", PITFALLS)
def test_w1_unittest_names_the_cause_and_the_fix(name):
    exercise, test, _, _ = PITFALLS[name]
    ns = student_namespace(name, f"/tmp/ipykernel_1/{name}.py")
    with pytest.raises(AssertionError) as failure:
        getattr(w1_unittest, test)(ns[exercise])
    message = str(failure.value)
    assert HINT[name] in message
    assert "{{function_node" not in message and "Arguments received by" not in message
    print(f"\n--- w1_unittest, {name} ---\n{message}")


@pytest.mark.parametrize("name", PITFALLS)
def test_the_feedback_names_the_cause_the_fix_and_the_students_line(monkeypatch, name):
    exercise, test, _, code = PITFALLS[name]
    filename = f"/tmp/ipykernel_1/{name}.py"
    ns = student_namespace(name, filename)
    monkeypatch.setattr(probes, "_cell_numbers", lambda: {filename: 7})
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    prepared = exercises.draw_cases(11)
    messages, quiet = [], []
    for cell in (test, test + "_hidden" if test + "_hidden" in prepared else "test_GRULM_hidden"):
        check = prepared[cell]
        probes.run(check["probe"], {exercise: ns[exercise]}, json.dumps(check["inputs"]))
        messages += exercises.judge(check, json.loads(shown[-1][probes.MIME]))
        quiet += exercises.judge(check, json.loads(shown[-1][probes.MIME]), after_hidden=True)
    text = "\n".join(messages)
    assert HINT[name] in text, text
    assert "your code: In [7], line " in text, text
    # After a hidden test (as every test after exercise 1's runs), the fix is still said, the line not.
    assert all(HINT[name] in m and "your code" not in m for m in quiet), quiet
    assert "{{function_node" not in text and "\x1b" not in text and "Arguments received by" not in text
    print(f"\n--- feedback, {name} ---\n{text}")


@pytest.mark.slow
def test_a_generator_that_joins_the_batch_into_one_string_is_told_to_give_a_column():
    """Code written for one prompt at a time (`text_from_ids([predicted_ids], vocab)`) returns the
    batch as one string: the public test says how to give text_from_ids one row per prompt."""
    from wrong_solutions.ex6_generative_model import JoinsTheBatch
    with pytest.raises(AssertionError) as failure:
        w1_unittest.test_GenerativeModel(JoinsTheBatch)
    assert "one character per prompt" in str(failure.value)
    assert "predicted_ids[:, tf.newaxis]" in str(failure.value)


@pytest.mark.slow
def test_a_generator_that_reads_the_first_prompt_only_is_told_the_count_not_an_error_of_the_graders_model(monkeypatch):
    """Code written for one prompt at a time (`log_probs[0, -1, :]`) gives a batch one character: the
    feedback says so, rather than the error the grader's model raises when that one character comes
    back with the batch's states."""
    from wrong_solutions.ex6_generative_model import FirstRowOnly
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    check = exercises.draw_cases(11)["test_GenerativeModel"]
    probes.run(check["probe"], {"GenerativeModel": FirstRowOnly}, json.dumps(check["inputs"]))
    messages = exercises.judge(check, json.loads(shown[-1][probes.MIME]))
    batch = [m for m in messages if "on a batch of" in m]
    assert batch and all("one per string" in m and "call 1 returned 1" in m for m in batch), messages
    assert not any("raised" in m for m in messages), messages


def test_a_generator_that_returns_unk_when_continuing_is_told_to_mask_it_not_to_use_the_states():
    check = exercises.draw_cases(11)["test_GenerativeModel"]
    calls = [case["call"] for case in check["inputs"]["cases"]]
    observations = [{"steps": [["[UNK]"], ["a"]]} if call == "continue" else {"error": "ValueError"} for call in calls]
    told = [m for m in exercises.judge(check, {"observations": observations}) if "raised" not in m]
    assert len(told) == calls.count("continue") == 2, told
    for message in told:
        assert "never '[UNK]'" in message and "prediction_mask" in message, told
        assert "continue from the states" not in message


@pytest.mark.parametrize("kind", ["in user code", "graph execution"])
def test_first_lines_of_errors_inside_tf_function_are_the_error_not_its_frames(kind):
    """tf.function wraps the error: "in user code:", the frames and their source lines, then the
    error; a graph op's error lists the frames where the op was defined first (the grader's own
    files among them). The meaningful line is the error itself."""
    import tensorflow as tf

    @tf.function
    def stack(x, s):
        return tf.stack([x, s], axis=1)

    @tf.function
    def gather(i):
        return tf.gather(tf.zeros([3]), i)

    with pytest.raises(Exception) as raised:
        if kind == "in user code":
            stack(tf.zeros([3], tf.int32), tf.zeros([2], tf.int32))
        else:
            gather(tf.constant([5]))
    message = str(raised.value)
    assert ("in user code:" if kind == "in user code" else "Graph execution error") in message
    assert 'File "' in message  # the frames are there to skip
    wanted = "Dimension 0 in both shapes must be equal" if kind == "in user code" else "indices[0] = 5 is not in [0, 3)"
    for line in (w1_unittest._first_line(raised.value), common.first_line(message)):
        assert line.startswith(wanted), line


def test_a_message_that_only_names_a_file_is_not_taken_for_a_frame():
    assert w1_unittest._first_line(ValueError('File "data/lines.txt" is empty')) == 'File "data/lines.txt" is empty'


def test_a_failure_shared_by_several_cases_is_said_once_with_their_number():
    fails = [f"line_to_tensor, case {i} (a line): raised ValueError: boom" for i in range(1, 6)]
    assert exercises._merge_repeats(fails + ["line_to_tensor, case 6 (a list): the rows are wrong"]) == [
        "line_to_tensor: 5 cases raised ValueError: boom", "line_to_tensor, case 6 (a list): the rows are wrong"]


def test_hidden_cases_name_the_exception_type_only():
    """The student's code chose the message and the line that raised having seen the hidden inputs:
    a hidden case names the type only (tests/test_checks.py: and only Python's or TensorFlow's)."""
    o = {"error": "ValueError", "message": "the hidden line was 'xyz'",
         "where": {"cell": 3, "line": 2}, "code": ["raise ValueError(line)"]}
    assert common.raised(o, hidden=True) == "raised ValueError"
    assert "xyz" in common.raised(o, hidden=False) and "(your code: In [3], line 2)" in common.raised(o, hidden=False)


def test_the_grader_reads_the_same_table_as_the_students_tests():
    assert common.keras3_pitfalls() == tuple(tuple(entry) for entry in w1_unittest.KERAS3_PITFALLS)


def test_first_lines_drop_tensorflow_boilerplate_and_terminal_codes():
    error = ValueError("Exception encountered when calling GRU.call().\n\n\x1b[1m{{function_node __wrapped__Pack_N_2}} "
                       "Shapes of all inputs must match: a != b [Op:Pack] name: \x1b[0m\n\nArguments received by x")
    assert common.first_line(str(error)) == "Shapes of all inputs must match: a != b"
    assert w1_unittest._first_line(error) == "Shapes of all inputs must match: a != b"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam_with_beta_2_0_99", "adam_with_clipnorm_1", "adam_with_weight_decay_1e_3",
                                  "adam_with_use_ema"])
def test_an_adam_with_other_settings_is_told_to_keep_adams_defaults(monkeypatch, name):
    """The rate and the loss are right, only Adam's other settings differ: both checkers say which settings
    to leave alone, with the same words (w1_unittest's ADAM_DEFAULTS)."""
    from wrong_solutions.ex4_compile_model import WRONG
    compile_model = WRONG[name][0]
    with pytest.raises(AssertionError) as failure:
        w1_unittest.test_compile_model(compile_model)
    assert w1_unittest.ADAM_DEFAULTS in str(failure.value)
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append(data))
    prepared = exercises.draw_cases(11)
    for cell in ("test_compile_model", "test_compile_model_hidden"):
        check = prepared[cell]
        probes.run(check["probe"], {"compile_model": compile_model}, json.dumps(check["inputs"]))
        messages = exercises.judge(check, json.loads(shown[-1][probes.MIME]))
        assert messages and all(w1_unittest.ADAM_DEFAULTS in m for m in messages), (cell, messages)


def test_a_one_step_with_wrong_states_is_told_what_it_returned():
    """The message names the type and shape of the characters returned and the shape of the states, as
    observed."""
    check = exercises.draw_cases(11)["test_GenerativeModel"]
    calls = [case["call"] for case in check["inputs"]["cases"]]
    assert "one_step" in calls
    observations = [{"chars": {"kind": "EagerTensor", "tensor": True, "dtype": "object", "shape": [1], "value": ["a"]},
                     "states_shape": []} if call == "one_step" else {"error": "ValueError"} for call in calls]
    told = [m for m in exercises.judge(check, {"observations": observations}) if "generate_one_step should" in m]
    assert told and all("got EagerTensor of shape [1] and states of shape []" in m for m in told), told
