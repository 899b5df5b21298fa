"""Benchmarks: every figure is a ratio of two things measured side by side in this run.

    python -m deepngrams.bench [--only training,generation,prompts,quality,grading,sandbox,engine]
                               [--steps N] [--repeats N] [--engine-repeats N]
                               [--submissions N] [--no-write]

- training:   tokens/s of the fast CPU training step vs plain Keras `model.fit`, same model,
              same batches; achieved GFLOP/s (model FLOPs: 3 x forward matrix products).
- generation: characters/s of deepngrams.lm.generate vs the straightforward generator
              that calls a tf.function once per character; batched throughput too.
- prompts:    characters/s of 8 prompts of different lengths generated in one batch
              (generate_many) vs the same 8 one after another, medians of runs taken in turn.
- quality:    eval log-perplexity of the shipped weights vs the best interpolated Kneser-Ney
              character n-gram (n = 3..9) on the same split, and vs the reference course's 1.22.
- grading:    nbgrader autograde of the solved notebook vs of a notebook that only imports
              TensorFlow, same course configuration, medians of runs taken in turn; and where
              the solved notebook's cell time goes: its graded cells vs the others.
- sandbox:    `deepngrams grade` of 20 submissions with 2 workers vs 1 (same scores), and the
              solved notebook's run in the sandbox vs the same run without it.
- engine:     `deepngrams grade` (a local Dask cluster) of a batch of 8 solved submissions on one
              worker, per submission, vs the floor (plain nbgrader autograde of a notebook that only
              imports TensorFlow), medians of runs taken in turn; 16 solved submissions on 2 workers
              vs 1, the median of the ratios of pairs of runs taken one after the other.

Each section also gives one or two rows of docs/figures.md, which the run rewrites at its end
(unless --no-write): the rows of the sections it ran are replaced, every other row is kept, so
`--only` refreshes part of the page and hand-measured rows (`make test`, `make demo`) stay.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGETS = {"training": 2.5, "generation": 10.0, "grading": 2.0, "log_perplexity": 1.22, "parallel": 1.7,
           "sandbox_overhead": 10.0, "amortized": 1.5, "engine_parallel": 1.8}


FIGURES_PATH = Path(__file__).resolve().parent.parent / "docs" / "figures.md"
FIGURES_HEADER = ("# Figures", "This page is written by `make bench`: run it again rather than editing here.")
FIGURES_FOOTER = "Each pair is measured side by side in one run."
MEASURED_ON = "Measured on: "
TABLE_HEAD = ("| what | figure |", "|---|---|")

# The keys (first cells) of the rows each section writes to docs/figures.md. They never hold a
# measured value or a command-line setting, so a later run replaces its row instead of adding one.
KEYS = {
    "training": ("training, `deepngrams.lm.fastgru` step vs plain `model.fit`",),
    "generation": ("generation, one stream, vs one `tf.function` call per character",),
    "prompts": ("generation, 8 prompts of different lengths in one batch vs one after another",),
    "quality": ("shipped weights, eval log-perplexity (last 1000 lines)",),
    "grading": ("`nbgrader autograde` of the solved notebook vs a notebook that only imports TensorFlow",
                "the solved notebook's cells as `nbgrader autograde` runs them (a plain kernel), "
                "the graded ones vs the others"),
    "sandbox": ("`deepngrams grade` of the sample submissions, 2 workers vs 1",
                "the solved notebook's run in the sandbox vs the same run without it"),
    "engine": ("`deepngrams grade`, a solved submission in a batch of 8 on 1 worker vs `nbgrader autograde` of a "
               "notebook that only imports TensorFlow",
               "`deepngrams grade`, 16 solved submissions on 2 workers vs 1"),
}
ROW_ORDER = tuple(key for keys in KEYS.values() for key in keys)


def _row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<46} {value:>18}  {note}", flush=True)


def _runs(seconds: list[float]) -> str:
    """The note beside a median: every run it was taken from."""
    return "median of " + _list(seconds)


def _list(seconds: list[float]) -> str:
    return "[" + ", ".join(f"{t:.1f}" for t in seconds) + "]"


# ------------------------------------------------------------------ docs/figures.md

def machine() -> str:
    """The "Measured on" line's machine: the CPU's model name and its cores."""
    from deepngrams.lm.run_record import cpu_name

    name, cores = cpu_name() or "unknown CPU", os.cpu_count()
    return f"{name}, {cores} core{'s' if cores != 1 else ''}" if cores else name


def _cells(line: str) -> list[str] | None:
    """The cells of one markdown table row, `\\|` unescaped; None for a line that is not a row."""
    line = line.strip()
    if len(line) < 2 or not (line.startswith("|") and line.endswith("|")) or line.endswith("\\|"):
        return None
    return [_one_line(cell).replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line[1:-1])]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def parse_figures(text: str) -> tuple[dict[str, str], str | None]:
    """The rows of a figures page (key: first cell, figure: the rest) and its machine, if any.

    Whatever is not a two-or-more-cell row is ignored: the header and separator rows, prose, and
    whatever a hand edit or a broken file left, so a damaged page loses only what cannot be read.
    """
    rows: dict[str, str] = {}
    measured_on = None
    for line in text.splitlines():
        if line.startswith(MEASURED_ON) and measured_on is None:
            measured_on = line[len(MEASURED_ON):].strip() or None
        cells = _cells(line)
        if not cells or len(cells) < 2 or not cells[0]:
            continue
        if cells[0] == "what" or set("".join(cells)) <= set("-: "):
            continue  # the table's header and separator
        rows.setdefault(cells[0], " | ".join(cells[1:]))
    return rows, measured_on


def merge_figures(existing_text: str | None, new_rows: dict[str, str], measured_on: str | None = None,
                  order: tuple[str, ...] = ROW_ORDER) -> str:
    """docs/figures.md with `new_rows` (key -> figure) in place of the existing rows of those keys.

    Rows of other keys are kept: those of sections this run left out, and hand-measured ones.
    Rows in `order` come first, in that order, then the others in the order they were found.
    `measured_on` (None: the existing page's, if it has one) names the machine.
    """
    old, old_machine = parse_figures(existing_text or "")
    rows = {**old, **{_one_line(key): _one_line(value) for key, value in new_rows.items()}}
    keys = [k for k in order if k in rows] + [k for k in rows if k not in order]
    lines = [FIGURES_HEADER[0], "", FIGURES_HEADER[1], "",
             MEASURED_ON + (measured_on or old_machine or "unknown"), "", FIGURES_FOOTER, "", *TABLE_HEAD]
    lines += [f"| {_cell(key)} | {_cell(rows[key])} |" for key in keys]
    return "\n".join(lines) + "\n"


def write_figures(new_rows: dict[str, str], path: Path = FIGURES_PATH) -> None:
    """Merge `new_rows` into the page at `path` and replace it atomically."""
    from deepngrams.atomic import write_bytes

    try:
        existing = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        existing = None
    write_bytes(Path(path), merge_figures(existing, new_rows, machine()).encode("utf-8"))


# ------------------------------------------------------------------ the benchmarks


def bench_training(steps: int, repeats: int = 3) -> dict[str, str]:
    import tensorflow as tf

    from deepngrams.lm import fastgru
    from deepngrams.lm import solution
    from deepngrams.config import COURSE
    from deepngrams.lm.data import build_vocab, load_lines, split_lines
    from deepngrams.lm.weights import build_model

    print(f"training: {steps} steps of {COURSE.batch_size}x{COURSE.seq_length} characters, after warm-up; "
          f"{repeats} runs of each method, taken in turn")
    lines = load_lines()
    vocab = build_vocab(lines)
    tf.random.set_seed(0)
    ds = solution.create_batch_dataset(split_lines(lines)[0][:20000], vocab, COURSE.seq_length, COURSE.batch_size)
    batches = list(ds.take(steps + 2))
    x = tf.concat([b[0] for b in batches], 0)
    y = tf.concat([b[1] for b in batches], 0)
    tokens = steps * COURSE.batch_size * COURSE.seq_length

    def fresh():
        tf.keras.utils.set_random_seed(0)
        return solution.compile_model(build_model(len(vocab)))

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(COURSE.batch_size)

    def fit_runner(jit_compile: bool):
        model = fresh()
        model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=jit_compile)
        model.fit(data.take(2), verbose=0, shuffle=False)  # warm-up: tracing and compiling

        def run():
            model.fit(data.skip(2).take(steps), verbose=0, shuffle=False)
        return run

    def fast_runner():
        model = fresh()
        model.optimizer.build(model.trainable_variables)
        step = fastgru.make_train_step(model, model.optimizer)
        for inputs, targets in batches[:2]:
            step(inputs, targets)

        def run():
            for inputs, targets in batches[2:]:
                loss, _ = step(inputs, targets)
            float(loss)
        return run

    # Plain `fit` is bimodal on a 2-core CPU: from one run to the next TensorFlow spreads the GRU's
    # loop over both cores or keeps it on one, and then a step takes far longer. So each method
    # runs several times, in turn, and the figures are medians, with the range beside them.
    # Keras' "auto" means no XLA on a CPU-only machine, so plain is jit_compile=False.
    runners = {"plain": fit_runner(False), "xla": fit_runner(True), "fast": fast_runner()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    fit_s, xla_s, fast_s = (statistics.median(times[n]) for n in ("plain", "xla", "fast"))

    def spread(name: str) -> str:
        return f"{min(times[name]) / steps:.2f}-{max(times[name]) / steps:.2f} s/step"

    e, u, v = COURSE.embedding_dim, COURSE.rnn_units, len(vocab)
    flops = 3 * tokens * 2 * (e * 3 * u + u * 3 * u + u * v)
    _row("plain model.fit", f"{tokens / fit_s:,.0f} tok/s",
         f"{fit_s / steps:.3f} s/step ({spread('plain')}), {flops / fit_s / 1e9:.0f} GFLOP/s")
    _row("model.fit with jit_compile=True (XLA)", f"{tokens / xla_s:,.0f} tok/s",
         f"{xla_s / steps:.3f} s/step ({spread('xla')}), {fit_s / xla_s:.2f}x plain")
    _row("deepngrams.lm.fastgru step (bfloat16 products)", f"{tokens / fast_s:,.0f} tok/s",
         f"{fast_s / steps:.3f} s/step ({spread('fast')}), {flops / fast_s / 1e9:.0f} GFLOP/s")
    _row("speed-up (medians)", f"{fit_s / fast_s:.2f}x", f"target >= {TARGETS['training']}x")
    _row("speed-up over plain fit's fastest run", f"{min(times['plain']) / fast_s:.2f}x")
    fastest = min(times["plain"])
    return {KEYS["training"][0]: (
        f"{tokens / fast_s:,.0f} vs {tokens / fit_s:,.0f} tokens/s: {fit_s / fast_s:.2f}x ({fast_s / steps:.3f} s a step, "
        f"{flops / fast_s / 1e9:.0f} GFLOP/s); {fastest / fast_s:.2f}x against plain's fastest run "
        f"({fastest / steps:.2f} s a step); plain's runs {spread('plain')}; `fit` with XLA {fit_s / xla_s:.2f}x plain. "
        f"Medians of {repeats} runs of {steps} steps each, in turn")}


def bench_generation() -> dict[str, str]:
    from deepngrams.lm import generate as sample
    from deepngrams.lm.weights import load_pretrained

    print("generation: characters per second on the CPU, pretrained weights")
    model, vocab, _ = load_pretrained()
    slow = sample.straightforward_throughput(model, vocab, length=300)
    single = sample.throughput(model, vocab, length=2000, batch=1)
    batched = sample.throughput(model, vocab, length=500, batch=64)
    _row("straightforward (tf.function per character)", f"{slow:,.0f} char/s")
    _row("deepngrams.lm.generate, 1 stream", f"{single:,.0f} char/s")
    _row("deepngrams.lm.generate, 64 streams", f"{batched:,.0f} char/s")
    _row("speed-up, 1 stream", f"{single / slow:.1f}x", f"target >= {TARGETS['generation']}x")
    return {KEYS["generation"][0]: f"{single:,.0f} vs {slow:,.0f} characters/s: {single / slow:.1f}x; "
                                   f"64 streams: {batched:,.0f}/s"}


def bench_prompts(repeats: int = 3, length: int = 500) -> dict[str, str]:
    """8 prompts of different lengths (1 to 150 characters of the corpus) in one batch vs one after another."""
    from deepngrams.lm import generate as sample
    from deepngrams.lm.data import load_lines
    from deepngrams.lm.weights import load_pretrained

    model, vocab, _ = load_pretrained()
    text = "\n".join(load_lines()[:200])
    prompts = [text[:n] for n in (1, 5, 12, 20, 33, 47, 80, 150)]
    chars = len(prompts) * length
    print(f"prompts: {len(prompts)} prompts of {len(prompts[0])} to {len(prompts[-1])} characters, {length} characters "
          f"each, in one batch vs one after another; {repeats} runs of each, taken in turn, after warm-up")

    def batched() -> None:
        sample.generate_many(model, vocab, prompts, length, temperature=0.8, seed=0)

    def one_by_one() -> None:
        for prompt in prompts:
            sample.generate_many(model, vocab, [prompt], length, temperature=0.8, seed=0)

    times: dict[str, list[float]] = {"batched": [], "one_by_one": []}
    batched(), one_by_one()  # compile the programs both use
    for _ in range(repeats):
        for name, run in (("batched", batched), ("one_by_one", one_by_one)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    together, apart = (chars / statistics.median(times[name]) for name in ("batched", "one_by_one"))
    def note(name: str) -> str:
        return "median of [" + ", ".join(f"{t:.2f}" for t in times[name]) + "] s"
    _row(f"{len(prompts)} prompts, one after another", f"{apart:,.0f} char/s", note("one_by_one"))
    _row(f"{len(prompts)} prompts in one batch", f"{together:,.0f} char/s", note("batched"))
    _row("speed-up", f"{together / apart:.2f}x")
    return {KEYS["prompts"][0]: f"{together:,.0f} vs {apart:,.0f} characters/s: {together / apart:.2f}x "
                                f"({len(prompts[0])} to {len(prompts[-1])} characters each, {length} generated; "
                                f"medians of {repeats} runs each, in turn)"}


def bench_quality() -> dict[str, str]:
    import math

    from deepngrams.lm import ngram
    from deepngrams.lm.data import build_vocab, load_lines, split_lines
    from deepngrams.lm.train import evaluate_log_perplexity
    from deepngrams.lm.weights import load_pretrained

    print("quality: eval log-perplexity (nats per character) on the last 1000 lines")
    lines = load_lines()
    train_lines, eval_lines = split_lines(lines)
    model, vocab, card = load_pretrained(vocab=build_vocab(lines))
    start = time.perf_counter()
    gru = evaluate_log_perplexity(model, eval_lines, vocab)
    gru_s = time.perf_counter() - start
    start = time.perf_counter()
    best, per_order = ngram.best_baseline("\n".join(train_lines), "\n".join(eval_lines))
    kn_s = time.perf_counter() - start
    for order, value in per_order.items():
        _row(f"Kneser-Ney {order}-gram", f"{value:.4f}")
    _row(f"GRULM, shipped weights ({card['epochs']} epochs, {card['training']['device']})",
         f"{gru:.4f}", f"perplexity {math.exp(gru):.3f}, {gru_s:.0f} s")
    _row(f"best n-gram (n={best}) / GRULM", f"{per_order[best] / gru:.3f}x", f"> 1 means the GRU is better; KN took {kn_s:.0f} s")
    _row("GRULM vs the reference course's 1.22", f"{gru:.4f} / {TARGETS['log_perplexity']}",
         "met" if gru <= TARGETS["log_perplexity"] else "NOT met")
    return {KEYS["quality"][0]: f"{gru:.4f} (perplexity {math.exp(gru):.2f}; target <= {TARGETS['log_perplexity']}); "
                                f"best Kneser-Ney n-gram (n={best}): {per_order[best]:.3f}"}


def _tiny_notebook():
    """The floor's notebook: one graded cell that only imports TensorFlow."""
    from nbformat.v4 import new_code_cell, new_notebook
    tiny = new_notebook(cells=[new_code_cell("import tensorflow as tf")])
    tiny.cells[0].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                          "grade_id": "import_only", "points": 1, "schema_version": 3}
    tiny.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return tiny


def cell_seconds(nb) -> list[tuple[str, float, bool]]:
    """(label, seconds, graded) of each executed code cell, from the timing nbclient records in its
    metadata: every cell runs again for each graded submission, so this is what each one costs."""
    from datetime import datetime
    timed = []
    for index, cell in enumerate(nb.cells):
        execution = cell.get("metadata", {}).get("execution", {})
        start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
        if cell.get("cell_type") != "code" or not (start and end):
            continue
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                   - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        first_line = next((line for line in cell.get("source", "").splitlines() if line.strip()), "")
        timed.append((nbgrader.get("grade_id") or f"cell {index}: {first_line[:40]}", seconds,
                      bool(nbgrader.get("grade"))))
    return timed


def run_as_graded(source_nb):
    """The source notebook with its solutions and hidden tests in place, run as nbgrader's autograde
    runs it (NBGRADER_EXECUTION=autograde: the demonstrations' short versions) in a plain kernel,
    each cell's timing recorded."""
    import copy
    from deepngrams.config import ROOT
    from deepngrams.course.release import execute, strip_markers

    nb = copy.deepcopy(source_nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source, cell.outputs = strip_markers(cell.source), []
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:  # the notebook finds the bundle above
        return execute(nb, Path(tmp), as_graded=True)


def cell_split(timed: list[tuple[str, float, bool]], slowest: int = 4) -> str:
    """The graded cells' seconds vs the others', and the slowest cells."""
    graded = sum(s for _, s, g in timed if g)
    others = sum(s for _, s, g in timed if not g)
    top = ", ".join(f"{label} {s:.1f} s" for label, s, _ in sorted(timed, key=lambda t: -t[1])[:slowest])
    return (f"{graded + others:.1f} s of cells: the graded cells {graded:.1f} s, the others {others:.1f} s; "
            f"slowest: {top}")


def bench_grading(repeats: int = 3) -> dict[str, str]:
    import nbformat

    from deepngrams.config import ROOT
    from deepngrams.course.release import ASSIGNMENT, COURSE_DIR, RELEASE_NB, SOURCE_NB, nbgrader, read, sample_submissions

    print("grading: wall time of `nbgrader autograde` for one submission, same course configuration")

    def autograde(source_nb, submission) -> float:
        (ROOT / ".cache").mkdir(exist_ok=True)  # inside the bundle, where the notebook finds its files
        with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
            course = Path(tmp) / "grader"
            (course / "source" / ASSIGNMENT).mkdir(parents=True)
            shutil.copy(COURSE_DIR / "nbgrader_config.py", course)
            nbformat.write(source_nb, str(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
            path = course / "submitted" / "student" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(submission, str(path))
            done = nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course)
            assert done.returncode == 0, done.stderr
            start = time.perf_counter()
            done = nbgrader("autograde", ASSIGNMENT, "--force", cwd=course)
            seconds = time.perf_counter() - start
            assert done.returncode == 0, done.stderr
            return seconds

    tiny = _tiny_notebook()
    source, solved = read(SOURCE_NB), sample_submissions(read(RELEASE_NB))["alice_solved"]
    # One autograde's wall time varies widely from run to run (the spread is on the page), so each
    # runs several times, in turn, and the ratio is of the medians.
    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    for _ in range(repeats):
        times["baseline"].append(autograde(tiny, tiny))
        times["ours"].append(autograde(source, solved))
    baseline, ours = (statistics.median(times[name]) for name in ("baseline", "ours"))
    _row("notebook that only imports TensorFlow", f"{baseline:.1f} s", _runs(times["baseline"]))
    _row("the solved assignment", f"{ours:.1f} s", _runs(times["ours"]))
    _row("ratio (medians)", f"{ours / baseline:.2f}x", f"target <= {TARGETS['grading']}x")
    timed = cell_seconds(run_as_graded(source))
    split = cell_split(timed)
    print(f"  the solved notebook's cells, as graded (a plain kernel): {split}")
    for label, seconds, graded in sorted(timed, key=lambda t: -t[1])[:12]:
        print(f"    {seconds:6.2f} s  {'graded ' if graded else '       '} {label}")
    return {KEYS["grading"][0]: f"{ours:.1f} s vs {baseline:.1f} s: {ours / baseline:.2f}x (medians of {repeats} runs "
                                f"each, in turn: {_list(times['ours'])} s vs {_list(times['baseline'])} s)",
            KEYS["grading"][1]: split}


def bench_sandbox(submissions: int) -> dict[str, str]:
    """`python -m deepngrams grade`: 2 workers vs 1, and the sandbox vs the same run without it."""
    from deepngrams.grading import batch as grade
    from deepngrams.config import ROOT
    from deepngrams.course.release import ASSIGNMENT, COURSE_DIR, scratch_course

    figures: dict[str, str] = {}
    samples = sorted(p for p in (COURSE_DIR / "submitted").iterdir() if (p / ASSIGNMENT).is_dir())
    print(f"grade: {submissions} submissions (the samples, repeated), wall time of `deepngrams grade --force`")
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        course = scratch_course(Path(tmp))
        for i in range(submissions):
            shutil.copytree(samples[i % len(samples)], course / "submitted" / f"s{i:02d}-{samples[i % len(samples)].name}")

        def timed(**kw) -> tuple[float, list]:
            start = time.perf_counter()
            outcomes = grade.grade(course, force=True, progress=False, **kw)
            return time.perf_counter() - start, [(o.student, o.scores) for o in outcomes]

        if submissions:
            one, first = timed(workers=1)
            two, second = timed(workers=2)
            _row("1 worker", f"{one:.0f} s", f"{one / submissions:.1f} s a submission")
            _row("2 workers", f"{two:.0f} s", "same scores" if first == second else "SCORES DIFFER")
            _row("speed-up", f"{one / two:.2f}x", f"target >= {TARGETS['parallel']}x")
            figures[KEYS["sandbox"][0]] = (f"{two:.0f} s vs {one:.0f} s for {submissions} submissions: {one / two:.2f}x, "
                                           + ("same scores" if first == second else "SCORES DIFFER"))
    # The sandbox's cost: the same job (the solved notebook with its probes) run by sandbox.run
    # with and without bubblewrap, alternately, three times each; medians.
    from deepngrams.grading import exercises as checks
    from deepngrams.grading import sandbox
    from deepngrams.grading.verdicts import build_job
    from deepngrams.course.release import read

    prepared = checks.draw_cases(checks.secret_for(checks.new_key(), "bench", b""))
    solved = read(samples[0] / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    limits = sandbox.Limits()
    job = build_job(solved, prepared, limits)
    times: dict = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        for _ in range(3):
            for boxed in (False, True):
                result = sandbox.run(job, Path(tmp) / "scratch", 0, limits, sandboxed=boxed, threads=2)
                assert len(result.probes) == len(prepared), result.stderr[-2000:]
                times[boxed].append(result.seconds)
    bare, boxed = (statistics.median(times[b]) for b in (False, True))
    _row("solved notebook, harness without the sandbox", f"{bare:.2f} s", _runs(times[False]))
    _row("solved notebook, harness in the sandbox", f"{boxed:.2f} s", _runs(times[True]))
    _row("sandbox overhead", f"{100 * (boxed / bare - 1):+.1f}%", f"target <= {TARGETS['sandbox_overhead']:.0f}%")
    figures[KEYS["sandbox"][1]] = (f"{boxed:.1f} s vs {bare:.1f} s: {100 * (boxed / bare - 1):+.1f}% (medians of 3, "
                                   f"in turn: {_list(times[True])} s vs {_list(times[False])} s)")
    return figures


def _tiny_autograde_seconds(repeats: int) -> list[float]:
    """The floor: plain `nbgrader autograde` of a notebook that only imports TensorFlow (stock
    nbgrader steps), timed `repeats` times."""
    import nbformat
    from deepngrams.config import ROOT
    from deepngrams.course.release import ASSIGNMENT, nbgrader

    tiny = _tiny_notebook()
    times = []
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        course = Path(tmp) / "grader"
        nbformat.write(tiny, str(_mkparent(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")))
        nbformat.write(tiny, str(_mkparent(course / "submitted" / "student" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")))
        done = nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course)
        assert done.returncode == 0, done.stderr
        for _ in range(repeats):
            start = time.perf_counter()
            done = nbgrader("autograde", ASSIGNMENT, "--force", cwd=course)
            times.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr
    return times


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy so far (all cores, every process), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def bench_engine(repeats: int = 3, batch: int = 8, parallel: int = 16) -> dict[str, str]:
    """The grading engine's cost per submission against the floor, and 2 workers against 1 (each pair's
    runs taken in turn)."""
    from deepngrams.config import ROOT
    from deepngrams.course.course_setup import record_assignment
    from deepngrams.course.release import ASSIGNMENT, COURSE_DIR, scratch_course
    from deepngrams.grading import batch as grading, nbgrader_host

    print("engine: `deepngrams grade` of solved submissions (local Dask cluster) vs the floor")
    (ROOT / ".cache").mkdir(exist_ok=True)
    solved = COURSE_DIR / "submitted" / "alice_solved" / ASSIGNMENT

    def timed(n: int, workers: int) -> tuple[float, float, list]:
        """Seconds, cores the machine kept busy on average meanwhile, and the scores."""
        with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
            course = scratch_course(Path(tmp))
            for i in range(n):
                shutil.copytree(solved, course / "submitted" / f"s{i:02d}" / ASSIGNMENT)
            record_assignment(course)  # once per course, not per submission
            nbgrader_host.close_idle_hosts()  # each batch as a grading command's: nothing kept from the last
            start, busy = time.perf_counter(), busy_cpu_seconds()
            outcomes = grading.grade(course, workers=workers, progress=False)
            seconds = time.perf_counter() - start
            return seconds, (busy_cpu_seconds() - busy) / seconds, sorted(str(o.scores) for o in outcomes)

    floors, pers = [], []
    for _ in range(repeats):  # in turn, so a slow spell of the machine touches both
        floors += _tiny_autograde_seconds(2)
        pers.append(timed(batch, 1)[0] / batch)
        _row(f"floor, then a solved submission in a batch of {batch}", f"{_list(floors[-2:])} s / {pers[-1]:.1f} s")
    floor, per = statistics.median(floors), statistics.median(pers)
    _row("floor: nbgrader autograde, TensorFlow import only", f"{floor:.1f} s", _runs(floors))
    _row(f"a solved submission, batch of {batch} on 1 worker", f"{per:.1f} s",
         f"{_runs(pers)}; {per / floor:.2f}x the floor, target <= {TARGETS['amortized']}x")
    runs: dict[int, list[tuple[float, float, list]]] = {1: [], 2: []}
    for _ in range(repeats):  # in turn, so a slow spell of the machine touches both
        for workers in (1, 2):
            runs[workers].append(timed(parallel, workers))
            seconds, cores, _ = runs[workers][-1]
            _row(f"{parallel} solved on {workers} worker{'s' * (workers > 1)}", f"{seconds:.0f} s",
                 f"cores busy {cores:.2f}")
    walls = {w: [s for s, _, _ in runs[w]] for w in (1, 2)}  # each run's seconds
    one, two = (statistics.median(walls[w]) for w in (1, 2))
    busy = [statistics.median(c for _, c, _ in runs[w]) for w in (1, 2)]
    same = "same scores" if len({str(scores) for w in runs for _, _, scores in runs[w]}) == 1 else "SCORES DIFFER"
    # The machine's speed drifts by a tenth or more over minutes: each pair's two runs, taken one
    # after the other, share a spell, so the speedup is the median of the pairs' own ratios. One
    # worker keeps more than one core busy (the nbgrader host and the client beside the kernel), so
    # on 2 cores the speedup of 2 workers is bounded by the two.
    ratios = [a / b for a, b in zip(walls[1], walls[2])]
    speedup = statistics.median(ratios)
    note = (f"the median of {repeats} pairs' ratios ({', '.join(f'{r:.2f}' for r in ratios)}), each pair in turn; "
            f"cores busy {busy[0]:.2f} / {busy[1]:.2f}")
    _row(f"{parallel} solved, 1 worker / 2 workers", f"{one:.0f} s / {two:.0f} s",
         f"{speedup:.2f}x, target >= {TARGETS['engine_parallel']}x; {same}; {note}")
    return {KEYS["engine"][0]: f"{per:.1f} s vs {floor:.1f} s: {per / floor:.2f}x (medians of {repeats} batches and "
                               f"{len(floors)} autogrades, in turn: {_list(pers)} s vs {_list(floors)} s)",
            KEYS["engine"][1]: f"{two:.0f} s vs {one:.0f} s (medians): {speedup:.2f}x, {same}; {note}; runs "
                               f"{_list(walls[1])} s vs {_list(walls[2])} s"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepngrams.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(KEYS))
    p.add_argument("--steps", type=int, default=20, help="timed training steps for each method")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each training method and of each graded notebook, taken in turn")
    p.add_argument("--engine-repeats", type=int, default=3,
                   help="batches of 8 on 1 worker beside the floor (about 2 minutes a pair), and runs of 16 "
                        "submissions on 1 worker and on 2 (about 5 minutes a pair), each pair taken in turn")
    p.add_argument("--submissions", type=int, default=20, help="submissions graded in the sandbox benchmark")
    p.add_argument("--no-write", action="store_true",
                   help=f"only print the figures; leave {FIGURES_PATH.parent.name}/{FIGURES_PATH.name} as it is")
    args = p.parse_args(argv)
    chosen = args.only.split(",")
    for name in chosen:  # before any benchmark runs, so a typo does not cost a long run
        if name not in KEYS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(KEYS)}")
    rows: dict[str, str] = {}
    for name in chosen:
        if name == "training":
            rows.update(bench_training(args.steps, args.repeats))
        elif name == "generation":
            rows.update(bench_generation())
        elif name == "prompts":
            rows.update(bench_prompts(args.repeats))
        elif name == "quality":
            rows.update(bench_quality())
        elif name == "grading":
            rows.update(bench_grading(args.repeats))
        elif name == "sandbox":
            rows.update(bench_sandbox(args.submissions))
        elif name == "engine":
            rows.update(bench_engine(args.engine_repeats))
        print()
    if not args.no_write:
        write_figures(rows)
        print(f"wrote {FIGURES_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
