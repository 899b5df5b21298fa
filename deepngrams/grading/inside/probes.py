"""What the grader observes of a student's code, inside the sandbox.

This file runs in the student's kernel, where nothing can be trusted: it only calls the
student's functions on the inputs the grader sends and reports what came back. Whether
that is right is decided outside, by the grader (grading/exercises/), which alone knows the expected
values. So patching this module, the tests, numpy or builtins changes observations, never
verdicts: a faked observation passes only if it equals the right answer on inputs the
student never saw.

The grader puts this file in the sandbox as `deepngrams_probes.py` and replaces every graded
test cell by `deepngrams_probes.run(<grade_id>, globals(), <inputs as JSON>)`. It needs
numpy and TensorFlow, nothing of the grader's and nothing of the bundle: the models it hands to
student code are built here from tables and weights the grader drew for this submission, so no
model in the sandbox knows an expected answer.
"""
from __future__ import annotations

import json
import sys
import warnings

MIME = "application/vnd.deepngrams.probe+json"
_BIG = 200_000  # observations larger than this many numbers are cut (the verdict then fails)


def _tolist(a):
    import numpy as np
    if a.size > _BIG:
        raise ValueError(f"an output of {a.size} numbers is too large to check")
    if a.dtype.kind in "SOU":
        return [_text(x) for x in a.ravel().tolist()] if a.ndim else _text(a.item())
    if a.dtype.kind == "f":
        return a.astype(float).tolist()  # inf stays inf (JSON's Infinity): it is not NaN
    if a.dtype.kind == "b":
        return a.tolist()
    return a.astype(np.int64).tolist()


def _text(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def obs(value) -> dict:
    """Type, dtype, shape and value of what a student's function returned, as JSON data."""
    import numpy as np
    import tensorflow as tf
    out = {"kind": type(value).__name__}
    if isinstance(value, tf.RaggedTensor):
        out.update(tensor=True, ragged=True, dtype=value.dtype.name, shape=None, value=value.to_list())
        if value.dtype == tf.string:
            out["value"] = json.loads(json.dumps(value.to_list(), default=_text))
        return out
    if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray, np.generic, float, int, bool, bytes, str)) \
            or hasattr(value, "__array__"):
        a = np.asarray(value)
        out.update(tensor=isinstance(value, (tf.Tensor, tf.Variable)), ragged=False, dtype=a.dtype.name,
                   shape=list(a.shape), value=_tolist(a))
        return out
    if isinstance(value, (list, tuple)):
        out.update(items=[obs(v) for v in value])
        return out
    out["repr"] = repr(value)[:200]
    return out


def _array(data, dtype="float32"):
    import numpy as np
    return np.asarray(data, dtype=dtype)


def _cell_numbers() -> dict:
    """IPython's cell files -> their prompt numbers (In [k]); empty outside a kernel."""
    try:
        from IPython import get_ipython
        return dict(get_ipython().compile._filename_map)
    except Exception:  # noqa: BLE001 - no kernel, or another IPython: the line number still helps
        return {}


def _failure(error: BaseException) -> dict:
    """What the student's code raised, and where in the student's cells (IPython's cell files)."""
    import traceback
    cells = _cell_numbers()
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename in cells or "ipykernel_" in f.filename or f.filename.startswith("<ipython-input")]
    # The raw message: the grader picks its meaningful line from it.
    out = {"error": type(error).__name__, "message": str(error)[:4000], "code": [(f.line or "")[:300] for f in frames[-8:]]}
    if frames:
        cell = cells.get(frames[-1].filename)
        out["where"] = {"cell": cell if isinstance(cell, int) else None, "line": frames[-1].lineno}
    return out


def _call(fn, *args, **kwargs):
    """Call student code; its exception becomes an observation, not a crash of the probe."""
    try:
        return {"ok": True, "value": fn(*args, **kwargs)}
    except BaseException as e:  # noqa: BLE001 - anything the student's code raises is an observation
        if isinstance(e, KeyboardInterrupt):
            raise
        return {"ok": False, "failure": _failure(e)}


def _observe(result: dict, how=obs):
    if not result["ok"]:
        return result["failure"]
    try:
        return how(result["value"])
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return _failure(e)


# ----------------------------------------------------------------------------------------
# One probe a kind of graded cell: (student namespace, inputs) -> observations
# ----------------------------------------------------------------------------------------
def probe_line_to_tensor(ns, inputs):
    import tensorflow as tf
    fn = ns["line_to_tensor"]
    return [_observe(_call(fn, tf.constant(case["line"]) if case.get("tensor") else case["line"], case["vocab"]))
            for case in inputs["cases"]]


def _observe_dataset(ds, iterations):
    import numpy as np
    import tensorflow as tf
    out = {"kind": type(ds).__name__, "dataset": isinstance(ds, tf.data.Dataset)}
    spec = getattr(ds, "element_spec", None)
    if isinstance(spec, (tuple, list)):
        out["spec"] = [[getattr(getattr(s, "dtype", None), "name", str(s)),
                        None if getattr(s, "shape", None) is None or s.shape.rank is None
                        else [d for d in s.shape.as_list()]] for s in spec]
    runs = []
    for _ in range(iterations):
        batches = []
        for element in ds:
            x, y = (np.asarray(t) for t in element)
            batches.append([_tolist(x), _tolist(y)])
            if len(batches) > 2000:
                break
        runs.append(batches)
    out["runs"] = runs
    return out


def probe_create_batch_dataset(ns, inputs):
    fn = ns["create_batch_dataset"]
    out = []
    for case in inputs["cases"]:
        kwargs = {k: case[k] for k in ("seq_length", "batch_size") if k in case}
        result = _call(fn, case["lines"], case["vocab"], **kwargs)
        out.append(_observe(result, lambda ds: _observe_dataset(ds, case.get("iterations", 1))))
    return out


def _layers(model):
    import tensorflow as tf
    info = {"model": isinstance(model, tf.keras.Model)}
    for name, cls in (("embedding", tf.keras.layers.Embedding), ("gru", tf.keras.layers.GRU),
                      ("dense", tf.keras.layers.Dense)):
        layer = getattr(model, name, None)
        info[name] = {"kind": type(layer).__name__, "is": isinstance(layer, cls),
                      "shapes": [list(w.shape) for w in layer.get_weights()] if hasattr(layer, "get_weights") else None}
    gru = getattr(model, "gru", None)
    info["gru_flags"] = [getattr(gru, "units", None), getattr(gru, "return_sequences", None),
                         getattr(gru, "return_state", None)]
    info["count"] = int(model.count_params())
    return info


def _set_weights(model, weights):
    model.embedding.set_weights([_array(weights["embedding"])])
    model.gru.set_weights([_array(weights["kernel"]), _array(weights["recurrent_kernel"]), _array(weights["bias"])])
    model.dense.set_weights([_array(weights["dense_kernel"]), _array(weights["dense_bias"])])


def probe_GRULM_layers(ns, inputs):
    import tensorflow as tf
    GRULM = ns["GRULM"]
    out = []
    for case in inputs["cases"]:
        V, E, U = case["sizes"]

        def build():
            model = GRULM(vocab_size=V, embedding_dim=E, rnn_units=U)
            preds = model(tf.constant(case["ids"], dtype=tf.int64))
            info = _layers(model)
            if "weights" in case:
                _set_weights(model, case["weights"])
                preds = model(tf.constant(case["ids"], dtype=tf.int64))
            return {"layers": info, "preds": obs(preds)}

        out.append(_observe(_call(build), lambda x: x))
    return out


def probe_GRULM_outputs(ns, inputs):
    """Run the student's GRULM with weights the grader drew for this submission."""
    import tensorflow as tf
    GRULM = ns["GRULM"]
    out = []
    for case in inputs["cases"]:
        V, E, U = case["sizes"]

        def run():
            model = GRULM(vocab_size=V, embedding_dim=E, rnn_units=U)
            model(tf.zeros_like(tf.constant(case["again_ids"], dtype=tf.int64)))
            _set_weights(model, case["weights"])
            # the shape it was built with, again: a tf.function on call would answer with its first weights
            again = model(tf.constant(case["again_ids"], dtype=tf.int64))
            ids = tf.constant(case["ids"], dtype=tf.int64)
            k = case["split"]
            full = model(ids)
            pair = model(ids, return_state=True)
            _, head_state = model(ids[:, :k], return_state=True)
            tail, tail_state = model(ids[:, k:], states=head_state, return_state=True)
            # the same inputs from a state the model never returned
            given, given_state = model(ids[:, k:], states=tf.constant(_array(case["given_state"])), return_state=True)
            return {"full": obs(full), "pair": obs(pair), "tail": obs(tail), "tail_state": obs(tail_state),
                    "given": obs(given), "given_state": obs(given_state), "again": obs(again)}

        out.append(_observe(_call(run), lambda x: x))
    return out


def probe_compile_model(ns, inputs):
    """compile_model on a small model, then three training steps with the grader's weights and data: two
    from the start and one at a far later iteration."""
    import numpy as np
    import tensorflow as tf
    fn = ns["compile_model"]
    out = []
    for case in inputs["cases"]:
        def small_model():
            V = case["vocab_size"]
            return tf.keras.Sequential([tf.keras.Input(shape=(None,), dtype="int64"), tf.keras.layers.Embedding(V, 4),
                                        tf.keras.layers.Dense(V, activation=tf.nn.log_softmax)])

        def optimizer_alone():
            """Another model compiled by compile_model, its optimizer given the case's gradients, the last step
            far later; then training ends as fit ends it: the weights after each."""
            model = small_model()
            fn(model)
            opt, trial, weights = model.optimizer, case["trial"], []
            model.set_weights([_array(w) for w in trial["weights"]])
            for k, grads in enumerate(trial["gradients"]):
                if k == len(trial["gradients"]) - 1:
                    opt.iterations.assign(case["later_step"])
                opt.apply_gradients(zip([tf.constant(_array(g), tf.float32) for g in grads], model.trainable_variables))
                weights.append(obs(model.get_weights()))
            opt.finalize_variable_values(model.trainable_variables)
            return weights + [obs(model.get_weights())]

        def run():
            model = small_model()
            back = fn(model)
            loss, opt = getattr(model, "loss", None), getattr(model, "optimizer", None)
            if isinstance(loss, (list, tuple)) and len(loss) == 1:
                loss = loss[0]  # a list of one loss, one per output, is the same loss for this one-output model
            lr = getattr(opt, "learning_rate", None)
            info = {"same": back is model,
                    "loss_kind": type(loss).__name__,
                    "loss_is": isinstance(loss, tf.keras.losses.SparseCategoricalCrossentropy),
                    "from_logits": loss.get_config().get("from_logits") if hasattr(loss, "get_config") else None,
                    "optimizer_kind": type(opt).__name__,
                    "optimizer_is": isinstance(opt, tf.keras.optimizers.Adam),
                    "learning_rate": None if lr is None else float(tf.keras.ops.convert_to_numpy(lr))}
            model.set_weights([_array(w) for w in case["weights"]])

            def step(batch):
                result = model.train_on_batch(np.asarray(batch["x"], dtype=np.int64),
                                              np.asarray(batch["y"], dtype=np.int64))
                loss = result[0] if isinstance(result, (list, tuple)) else result  # [loss, metrics...]
                return {"loss": obs(loss), "weights": obs(model.get_weights())}

            first, second = case["more"]
            info["step"] = step(case)
            info["later_steps"] = [step(first)]
            if lr is not None:  # read again where a schedule's rate would have moved, and step there
                opt.iterations.assign(case["later_step"])
                info["learning_rate_later"] = float(tf.keras.ops.convert_to_numpy(opt.learning_rate))
                info["later_steps"].append(step(second))
            if "trial" in case:
                info["optimizer_alone"] = optimizer_alone()
            return info

        out.append(_observe(_call(run), lambda x: x))
    return out


def probe_log_perplexity(ns, inputs):
    import tensorflow as tf
    fn = ns["log_perplexity"]
    return [_observe(_call(fn, tf.constant(_array(case["preds"])), tf.constant(case["targets"], dtype=tf.int64)))
            for case in inputs["cases"]]


def shuffled_rows(log_p, rows: int, seed: int):
    """(log_p repeated `rows` times, each row in an order of its own; that order): row r's column j
    holds log_p[order[r, j]]. The grader's judge rebuilds the same order from the seed, maybe on
    another machine: so the order comes from integer arithmetic (a splitmix64 hash of the seed and
    the position, sorted), not from a numpy generator whose algorithm may change between versions."""
    import numpy as np
    k = len(log_p)
    z = (np.arange(rows * k, dtype=np.uint64) + np.uint64(seed % 2**64)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    order = np.argsort(z.reshape(rows, k), axis=1, kind="stable")
    return _array(log_p)[order], order


def probe_temperature_random_sampling(ns, inputs):
    import tensorflow as tf
    fn = ns["temperature_random_sampling"]
    out = []
    for case in inputs["cases"]:
        if "seed" in case:  # the same draws every time this is graded
            tf.keras.utils.set_random_seed(case["seed"])
        rows = _array(case["log_probs"])
        if "rows_seed" in case:
            rows = shuffled_rows(case["log_probs"], case["rows"], case["rows_seed"])[0]
        out.append(_observe(_call(fn, tf.constant(rows), case["temperature"])))
    return out


def _as_text(value):
    import numpy as np
    import tensorflow as tf
    if isinstance(value, tf.Tensor):  # a string tensor of one element is its string (as the public tests read it)
        value = value.numpy()
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(-1)[0]
    return _text(value) if isinstance(value, (bytes, str)) else {"kind": type(value).__name__}


def _called_like_a_keras_model(call):
    """Keras 3 refuses a model call that passes anything but tensors (or None) by position, such as
    `model(ids, states, True)`; so does TableLM, with Keras' message (as do the public tests' models)."""
    import functools

    @functools.wraps(call)
    def checked(self, *args, **kwargs):
        import numpy as np
        import tensorflow as tf
        for value in tf.nest.flatten(args):
            if not (value is None or tf.is_tensor(value) or isinstance(value, (np.ndarray, np.generic))):
                raise ValueError("Only input tensors may be passed as positional arguments. The following argument "
                                 f"value should be passed as a keyword argument: {value!r} (of type {type(value)})")
        return call(self, *args, **kwargs)
    # Keras' own __call__ takes (*args, **kwargs): tf.function(model) must see that, not `call`'s named
    # arguments, or it would pass `return_state=True` by position and be refused here but not by Keras.
    del checked.__wrapped__
    return checked


class _Sizes:
    """What a generator may read of a layer: its sizes."""

    def __init__(self, **sizes):
        self.__dict__.update(sizes)


class _Layer(_Sizes):
    """A layer of the course's GRULM as a generator may read and call it: a GRULM layer's sizes, and a
    call that computes what the table model computes at that point. As a Keras layer, it takes
    `training` by keyword."""

    def __init__(self, run, **sizes):
        super().__init__(**sizes)
        self._run = run

    def call(self, inputs, training=None):
        return self._run(inputs)

    __call__ = _called_like_a_keras_model(call)  # as in Keras: layer(...) checks its arguments


class _GRULayer(_Layer):
    """The GRU, called as Keras 3's GRU(units, return_sequences=True, return_state=True): it returns the
    sequence of outputs, (batch, time, units), and the last state, (batch, units)."""

    def __init__(self, run, units: int):
        super().__init__(run, units=units, state_size=[units], return_sequences=True, return_state=True)
        self.cell = _Sizes(units=units, state_size=units)

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if mask is not None:
            raise ValueError("the grader's GRU takes no mask: a generator has no padding to hide")
        if isinstance(initial_state, (list, tuple)):
            initial_state = initial_state[0]
        return self._run(sequences, initial_state)

    __call__ = _called_like_a_keras_model(call)

    def get_initial_state(self, batch_size):
        """As Keras 3's GRU layer: a list of one float32 tensor of zeros, shape (batch_size, units)."""
        import tensorflow as tf
        return [tf.zeros((batch_size, self.units), dtype=tf.float32)]


class TableLM:
    """A language model given as two tables, called like a GRULM.

    The state is one of a few numbers, carried as a one-hot vector of `units` floats. Zeros mean
    state 0, the start, as states=None does: argmax of an all-zero vector is 0, so the zeros of
    gru.get_initial_state (a GRU's start) start here too. Reading id x in state s moves to state
    transitions[s, x]; the log probabilities of the next id are log_probs[new state]. Plain
    TensorFlow ops, so it runs eagerly and inside tf.function alike. It knows nothing about what a
    generator should write.

    It has the layers of a GRULM(vocab_size, embedding_dim, units), with a GRULM layer's sizes, which
    compute in turn what calling it computes: `embedding` (input_dim, output_dim: `embedding_dim`, or
    `units` if not given) gives each id as its first number, `gru` (units, state_size, cell.units,
    get_initial_state(batch_size)) the one-hot states it goes through, `dense` (units) their log
    probabilities; and `layers`, the three in turn.
    """

    def __init__(self, transitions, log_probs, units: int, embedding_dim: int | None = None):
        import tensorflow as tf
        self.transitions = tf.constant(transitions, dtype=tf.int32)  # (states, vocab)
        self.log_probs = tf.constant(log_probs, dtype=tf.float32)  # (states, vocab)
        self.states, self.vocab_size = (int(d) for d in self.log_probs.shape)
        self.units = int(units)
        if self.states > self.units:
            raise ValueError(f"{self.states} states do not fit a one-hot state of {self.units} units")
        self.embedding = _Layer(self._embed, input_dim=self.vocab_size, output_dim=int(embedding_dim or units))
        self.gru = _GRULayer(self._recur, self.units)
        self.dense = _Layer(self._project, units=self.vocab_size)
        self.layers = [self.embedding, self.gru, self.dense]

    def _embed(self, inputs):
        import tensorflow as tf
        ids = tf.cast(tf.convert_to_tensor(inputs), tf.float32)
        return tf.concat([ids[..., None], tf.zeros(tf.concat([tf.shape(ids), [self.embedding.output_dim - 1]], 0))], -1)

    def _recur(self, x, states):
        import tensorflow as tf
        ids = tf.cast(tf.round(tf.convert_to_tensor(x)[..., 0]), tf.int32)  # (batch, time)
        if states is None:
            start = tf.zeros(tf.shape(ids)[:1], dtype=tf.int32)
        else:
            start = tf.cast(tf.argmax(tf.convert_to_tensor(states)[:, :self.states], axis=-1), tf.int32)
        path = tf.scan(lambda s, x: tf.gather_nd(self.transitions, tf.stack([s, x], axis=1)),
                       tf.transpose(ids), initializer=start)  # (time, batch)
        return tf.one_hot(tf.transpose(path), self.units, dtype=tf.float32), tf.one_hot(path[-1], self.units,
                                                                                         dtype=tf.float32)

    def _project(self, outputs):
        import tensorflow as tf
        state = tf.argmax(tf.convert_to_tensor(outputs)[..., :self.states], axis=-1)
        return tf.gather(self.log_probs, state)

    def call(self, inputs, states=None, return_state=False, training=False):
        import tensorflow as tf
        shape = tuple(tf.convert_to_tensor(inputs).shape)
        if len(shape) != 2:
            raise ValueError(f"expected inputs of shape (batch, time), got shape {shape}")
        sequence, state = self.gru(self.embedding(inputs), initial_state=states)
        log_probs = self.dense(sequence)
        return (log_probs, state) if return_state else log_probs

    __call__ = _called_like_a_keras_model(call)  # as in Keras: model(...) checks its arguments, model.call(...) not


def probe_GenerativeModel(ns, inputs):
    import tensorflow as tf
    Gen = ns["GenerativeModel"]
    out = []
    for case in inputs["cases"]:
        tf.keras.utils.set_random_seed(case.get("seed", 0))
        table = case["model"]
        model = TableLM(table["transitions"], table["log_probs"], table["units"])
        voc = list(case["vocab"])
        if case["call"] == "one_step":
            def run():
                gen = Gen(model, voc, temperature=case["temperature"])  # held: a tf.function method holds it weakly
                chars, states = gen.generate_one_step(tf.constant([case["prefix"]]), states=None)
                return {"chars": obs(chars), "states_shape": list(getattr(states, "shape", []) or [])}
            out.append(_observe(_call(run), lambda x: x))
        elif case["call"] in ("batch", "continue"):  # each call is given the states the call before returned
            def run():
                gen = Gen(model, voc, temperature=case["temperature"])
                inputs, states, steps = tf.constant([case["prefix"]] * case["rows"]), None, []
                if "start_state" in case:  # states the model never returned: the table's state start_state
                    states = tf.one_hot([case["start_state"]] * case["rows"], table["units"], dtype=tf.float32)
                for _ in range(case["steps"]):
                    chars, states = gen.generate_one_step(inputs, states=states)
                    inputs = tf.reshape(chars, [-1])
                    steps.append([_text(c) for c in inputs.numpy().tolist()])
                    if len(steps[-1]) != case["rows"]:
                        break  # fed back, these would fail inside the model, hiding the count that is wrong
                return {"steps": steps}
            out.append(_observe(_call(run), lambda x: x))
        else:
            result = _call(lambda: Gen(model, voc, temperature=case["temperature"]).generate_n_chars(
                case["n"], case["prefix"]))
            out.append(_observe(result, lambda v: {"text": _as_text(v)}))
    return out


PROBES = {
    "line_to_tensor": probe_line_to_tensor,
    "create_batch_dataset": probe_create_batch_dataset,
    "GRULM_layers": probe_GRULM_layers,
    "GRULM_outputs": probe_GRULM_outputs,
    "compile_model": probe_compile_model,
    "log_perplexity": probe_log_perplexity,
    "temperature_random_sampling": probe_temperature_random_sampling,
    "GenerativeModel": probe_GenerativeModel,
}


def observe(probe: str, ns: dict, inputs: dict) -> dict:
    """What the student's code does on `inputs` for one graded cell: {"observations": [...]}, or
    {"error": ...}. Missing names (the student never defined the function) and anything the code
    raises are observations too. Warnings and stderr of the student's code are simply ignored here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return {"observations": PROBES[probe](ns, inputs)}
        except KeyError as e:
            return {"error": f"{e.args[0]!r} is not defined"}
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def run(probe: str, ns: dict, inputs_json: str) -> None:
    """Observe the student's code for one graded cell and hand the observations to the grader."""
    observation = observe(probe, ns, json.loads(inputs_json))
    text = json.dumps(observation, allow_nan=True, default=lambda o: repr(o)[:200])
    from IPython.display import display
    display({MIME: text}, raw=True)
    sys.stdout.flush()


def _piped(cmd: str) -> tuple[str, int]:
    """(what `cmd` printed, its exit status), run through pipes: IPython runs `!cmd` in a
    pseudo-terminal, which needs a session of its own, and the sandbox keeps every process in its one
    session."""
    import subprocess
    done = subprocess.run(cmd, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return done.stdout.decode("utf-8", "replace"), done.returncode


def _shell_without_terminal(cmd: str) -> int:
    """`!cmd`: prints what the command printed."""
    text, status = _piped(cmd)
    sys.stdout.write(text)
    sys.stdout.flush()
    return status


def _output_without_terminal(cmd: str) -> str:
    """`x = !cmd`: what the command printed."""
    return _piped(cmd)[0]


def _use_pipes_for_shell_commands() -> None:
    try:
        import ipykernel.zmqshell
        import IPython.core.interactiveshell
    except ImportError:  # not in a kernel
        return
    ipykernel.zmqshell.system = _shell_without_terminal
    IPython.core.interactiveshell.getoutput = _output_without_terminal


_use_pipes_for_shell_commands()
