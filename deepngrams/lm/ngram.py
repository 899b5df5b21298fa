"""Interpolated modified Kneser-Ney character n-gram model: the baseline a GRU must beat.

Characters are the tokens (including "\\n" and "\\t"). The smoothing is
*interpolated modified* Kneser-Ney (Chen & Goodman, 1998):

    p_n(w | h) = (c(hw) - D(c(hw))) / c(h.)  +  gamma(h) * p_{n-1}(w | h')
    gamma(h)   = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c(h.)

where h' is h without its first character, c(h.) is the sum of c(hw) over w,
and Nr(h.) is the number of characters w with c(hw) == r (N3+: >= 3).  If
c(h.) == 0 the level is skipped: p_n(w | h) = p_{n-1}(w | h').

* The highest level of a query uses raw counts; every lower level uses
  continuation counts N1+(. h w) (the number of distinct characters seen
  before hw), because a lower level only matters as a back-off distribution.
  The start of the training text counts as one extra distinct predecessor,
  so every n-gram that occurs has a continuation count >= 1.
* Each level and count kind (raw / continuation) gets its own three
  discounts D1, D2, D3+ from its count-of-counts n1..n4
  (see `estimate_discounts`).
* Below the unigram level sits a uniform distribution over the vocabulary
  (training characters, plus any `extra_vocab`, plus one shared slot for
  unknown characters), so no probability is ever zero and every
  distribution sums to 1 over vocabulary + unknown.

Storage is numpy rather than dicts so that a 4.9M-character corpus at order 9
fits in well under a GiB: an n-gram is identified by its index in the sorted
array `keys[n]` of `prefix_id * n_symbols + last_char`, where `prefix_id` is
the index of its first n-1 characters at level n-1.  Children of a context are
therefore contiguous, and one fit at the maximum order contains every lower
order model exactly (`best_baseline` relies on that).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = [
    "KNModel",
    "best_baseline",
    "check_distributions",
    "distribution",
    "estimate_discounts",
    "fit_kneser_ney",
    "log_perplexity",
    "prob",
]

RAW, CONT = 0, 1  # index of the count kind in the per-level tables


@dataclass(frozen=True, eq=False)
class KNModel:
    """Counts and discounts of a fitted model; levels are indexed 1..max_order.

    Per level n (level 0 is the empty context, the only context of level 1):
      keys[n]      sorted int64 `prefix_id * n_symbols + char_code` of seen n-grams
      counts[n]    (2, n_ngrams) int64: raw counts, continuation counts
      ctx_total[n] (2, n_contexts) float64: c(h.) per context (an (n-1)-gram id)
      ctx_gamma[n] (2, n_contexts) float64: D1 N1 + D2 N2 + D3 N3+ per context
      discounts[n] (2, 4) float64: [0, D1, D2, D3+] for raw and continuation
    """

    order: int
    max_order: int
    symbols: np.ndarray  # sorted code points of the training characters
    vocab: str  # sorted characters of the vocabulary (without the unknown slot)
    keys: list[np.ndarray]
    counts: list[np.ndarray]
    ctx_total: list[np.ndarray]
    ctx_gamma: list[np.ndarray]
    discounts: list[np.ndarray]

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def vocab_size(self) -> int:
        """Size of the uniform floor: the vocabulary plus one unknown slot."""
        return len(self.vocab) + 1

    def with_order(self, order: int) -> KNModel:
        """The same counts used as a lower-order model (identical to refitting)."""
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in 1..{self.max_order}, got {order}")
        return replace(self, order=order)


# ---------------------------------------------------------------- fitting


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of `text` as uint32, without a Python-level loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def estimate_discounts(count_of_counts: Iterable[int]) -> np.ndarray:
    """[0, D1, D2, D3+] from n1..n4 (Chen & Goodman's closed-form estimates).

    Y = n1 / (n1 + 2 n2);  Dr = r - (r + 1) Y n_{r+1} / n_r.
    Small or odd data can make these undefined or push one outside (0, r);
    then fall back to one plain-KN discount Y for all three (0.5 if n1 or n2
    is 0), so the discount stays positive and never exceeds the count.
    """
    n1, n2, n3, n4 = (int(x) for x in count_of_counts)
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
    if min(n1, n2, n3, n4) > 0:
        d = np.array([0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
        if all(0 < d[r] < r for r in (1, 2, 3)):
            return d
    return np.array([0.0, y, y, y])


def _level_tables(
    keys: np.ndarray, counts: np.ndarray, n_contexts: int, n_symbols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discounts and per-context c(h.) and gamma numerators for both count kinds."""
    parent = keys // n_symbols
    discounts = np.zeros((2, 4))
    total = np.zeros((2, n_contexts))
    gamma = np.zeros((2, n_contexts))
    for kind in (RAW, CONT):
        c = counts[kind]
        discounts[kind] = estimate_discounts(np.bincount(c, minlength=5)[1:5])
        total[kind] = np.bincount(parent, weights=c, minlength=n_contexts)
        gamma[kind] = np.bincount(
            parent, weights=discounts[kind][np.minimum(c, 3)], minlength=n_contexts
        )
    return discounts, total, gamma


def fit_kneser_ney(text: str, order: int, extra_vocab: str = "") -> KNModel:
    """Count every n-gram of `text` up to `order` and build the smoothing tables.

    `extra_vocab` widens the uniform floor to characters absent from `text`
    (pass the evaluation text so the vocabulary matches the GRU's).
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if not text:
        raise ValueError("training text is empty")
    symbols, codes = np.unique(_code_points(text), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    n_sym, size = len(symbols), len(text)
    vocab = "".join(sorted(set(text) | set(extra_vocab)))

    keys: list[np.ndarray] = [np.zeros(1, np.int64)]  # level 0: the empty context
    raw: list[np.ndarray] = [np.zeros(1, np.int64)]
    cont: list[np.ndarray] = [np.zeros(1, np.int64)]
    # ids[i] = id of the (n-1)-gram starting at position i, for the current n
    ids = np.zeros(size + 1, np.int64)
    for n in range(1, order + 1):
        if n <= size:
            uniq, first, new_ids, cnt = np.unique(
                ids[: size - n + 1] * n_sym + codes[n - 1 :],
                return_index=True, return_inverse=True, return_counts=True,
            )
            new_ids = new_ids.reshape(-1)
        else:  # text shorter than the order: no n-grams at this level
            uniq = first = new_ids = cnt = np.zeros(0, np.int64)
        # Continuation counts of level n-1: the distinct n-gram first seen at
        # position i is one distinct left extension of the (n-1)-gram at i+1;
        # the start of the text adds one extra left extension.
        if n >= 2:
            c = np.bincount(ids[first + 1], minlength=len(keys[n - 1]))
            if len(ids):
                c[ids[0]] += 1
            cont[n - 1] = c
        keys.append(uniq.astype(np.int64))
        raw.append(cnt.astype(np.int64))
        cont.append(np.zeros(len(uniq), np.int64))  # top level: never used
        ids = new_ids

    counts = [np.stack([r, c]) for r, c in zip(raw, cont)]
    ctx_total, ctx_gamma, discounts = [np.zeros((2, 1))], [np.zeros((2, 1))], [np.zeros((2, 4))]
    for n in range(1, order + 1):
        d, t, g = _level_tables(keys[n], counts[n], len(keys[n - 1]), n_sym)
        discounts.append(d)
        ctx_total.append(t)
        ctx_gamma.append(g)
    return KNModel(order, order, symbols, vocab, keys, counts, ctx_total, ctx_gamma, discounts)


# ---------------------------------------------------------------- scalar queries


def _code(model: KNModel, char: str | None) -> int:
    """Index of `char` among the training characters, or -1 if it never occurred."""
    if char is None:
        return -1
    i = int(np.searchsorted(model.symbols, ord(char)))
    return i if i < model.n_symbols and model.symbols[i] == ord(char) else -1


def _lookup(model: KNModel, chars: list[int]) -> int:
    """Id of the n-gram with these character codes (level len(chars)), or -1 if unseen."""
    ngram_id = 0  # the empty context
    for level, code in enumerate(chars, start=1):
        key = ngram_id * model.n_symbols + code
        keys = model.keys[level]
        pos = int(np.searchsorted(keys, key))
        if code < 0 or pos == len(keys) or keys[pos] != key:
            return -1
        ngram_id = pos
    return ngram_id


def _gather(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """values[ids], with 0 where an id is -1 (unseen) or the table is empty."""
    if len(values) == 0:  # a level above the length of the training text
        return np.zeros(np.shape(ids), values.dtype)
    return np.where(ids >= 0, values[np.maximum(ids, 0)], 0)


def _interpolate(
    model: KNModel, n: int, kind: int, ctx_id: np.ndarray, ngram_id: np.ndarray, lower: np.ndarray
) -> np.ndarray:
    """One level of interpolated KN (ids -1 = unseen); skipped where c(h.) == 0.

    Works elementwise, so the single-query and the whole-text paths share it.
    """
    total = _gather(model.ctx_total[n][kind], ctx_id)
    gamma = _gather(model.ctx_gamma[n][kind], ctx_id)
    c = _gather(model.counts[n][kind], ngram_id)
    discounted = c - model.discounts[n][kind][np.minimum(c, 3)]
    has_mass = total > 0
    return np.where(has_mass, (discounted + gamma * lower) / np.where(has_mass, total, 1.0), lower)


def _prob(model: KNModel, context: str, char: str | None) -> float:
    """`prob`, with char=None meaning the shared unknown-character slot."""
    keep = min(len(context), model.order - 1)
    h = [_code(model, ch) for ch in context[len(context) - keep :]]
    target = _code(model, char)
    p = 1.0 / model.vocab_size
    for n in range(1, keep + 2):
        ctx = h[keep - (n - 1) :]  # the last n-1 context characters
        kind = RAW if n == keep + 1 else CONT
        ctx_id, ngram_id = np.int64(_lookup(model, ctx)), np.int64(_lookup(model, ctx + [target]))
        p = float(_interpolate(model, n, kind, ctx_id, ngram_id, np.float64(p)))
    return p


def prob(model: KNModel, context: str, char: str) -> float:
    """P(char | context), using the last order-1 characters of `context`.

    The highest level used (len(context used) + 1) takes raw counts, so a
    short context at the start of a text is scored like a lower-order model.
    Characters outside the vocabulary all get the unknown slot's probability.
    """
    return _prob(model, context, char)


def distribution(model: KNModel, context: str) -> np.ndarray:
    """Probabilities of `model.vocab` in order, then of the unknown slot; sums to 1."""
    chars: list[str | None] = [*model.vocab, None]
    return np.array([_prob(model, context, ch) for ch in chars])


def check_distributions(model: KNModel, contexts: Iterable[str], tol: float = 1e-9) -> float:
    """Raise unless every context's distribution sums to 1 within `tol`; return the worst error."""
    worst = 0.0
    for context in contexts:
        dist = distribution(model, context)
        err = abs(float(dist.sum()) - 1.0)
        if err > tol or not (dist > 0).all():
            raise RuntimeError(f"bad distribution for context {context!r}: sum-1={err:.3g}")
        worst = max(worst, err)
    return worst


# ---------------------------------------------------------------- evaluation


def _text_codes(model: KNModel, text: str) -> np.ndarray:
    """Training-character index of each character of `text`, -1 where unseen."""
    cp = _code_points(text)
    pos = np.minimum(np.searchsorted(model.symbols, cp), model.n_symbols - 1)
    return np.where(model.symbols[pos] == cp, pos, -1).astype(np.int64)


def _text_ngram_ids(model: KNModel, codes: np.ndarray, max_n: int) -> list[np.ndarray]:
    """ids[n][i] = id of the n-gram codes[i:i+n] (-1 if unseen in training)."""
    ids = [np.zeros(len(codes) + 1, np.int64)]
    for n in range(1, max_n + 1):
        keys = model.keys[n]
        parent, code = ids[n - 1][: len(codes) - n + 1], codes[n - 1 :]
        key = parent * model.n_symbols + code
        if len(keys) == 0:  # training text shorter than n
            ids.append(np.full(len(key), -1, np.int64))
            continue
        pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        found = (parent >= 0) & (code >= 0) & (keys[pos] == key)
        ids.append(np.where(found, pos, -1))
    return ids


def _char_probs(model: KNModel, text: str, orders: Iterable[int]) -> dict[int, np.ndarray]:
    """P(text[t] | text[:t]) for t >= 1 under each order, sharing all lookups.

    Works bottom-up over levels for all positions at once; position t uses
    levels 1..min(order, t+1), the top one with raw counts.
    """
    orders = sorted(set(orders))
    if orders[0] < 1 or orders[-1] > model.max_order:
        raise ValueError(f"orders must lie in 1..{model.max_order}")
    codes = _text_codes(model, text)
    size = len(codes)
    if size < 2:
        raise ValueError("need at least two characters to predict one")
    top = min(orders[-1], size)
    ids = _text_ngram_ids(model, codes, top)
    lower = np.full(size, 1.0 / model.vocab_size)  # lower[t]: level n-1, continuation
    top_probs = [np.zeros(0)]  # top_probs[n][t]: level n with raw counts (t >= n-1)
    for n in range(1, top + 1):
        ctx, ngram = ids[n - 1][: size - n + 1], ids[n]  # both indexed by start t-n+1
        head = np.full(n - 1, np.nan)
        top_probs.append(np.concatenate([head, _interpolate(model, n, RAW, ctx, ngram, lower[n - 1 :])]))
        lower = np.concatenate([head, _interpolate(model, n, CONT, ctx, ngram, lower[n - 1 :])])
    result: dict[int, np.ndarray] = {}
    for k in orders:
        p = top_probs[min(k, top)].copy()
        for t in range(min(k - 1, size)):  # start of text: shorter context
            p[t] = top_probs[t + 1][t]
        result[k] = p[1:]
    return result


def log_perplexity(model: KNModel, text: str) -> float:
    """Mean -ln P(text[t] | text[:t]) over t >= 1, as the GRU is scored on one joined string."""
    return float(-np.log(_char_probs(model, text, [model.order])[model.order]).mean())


def best_baseline(
    train_text: str, eval_text: str, orders: Iterable[int] = range(3, 10)
) -> tuple[int, dict[int, float]]:
    """Best order and the log-perplexity of each, from one fit at the largest order."""
    orders = sorted(set(orders))
    model = fit_kneser_ney(train_text, orders[-1], extra_vocab=eval_text)
    # Cheap guard against normalisation bugs: a few real contexts, every order.
    step = max(1, len(eval_text) // 5)
    contexts = ["", eval_text[:1]]
    contexts += [eval_text[max(0, i - 20) : i] for i in range(step, len(eval_text), step)]
    for k in orders:
        check_distributions(model.with_order(k), contexts)
    probs = _char_probs(model, eval_text, orders)
    scores = {k: float(-np.log(p).mean()) for k, p in probs.items()}
    best = min(orders, key=lambda k: (scores[k], k))
    return best, scores


BASELINE_ORDERS = range(1, 10)


def course_baseline(orders: Iterable[int] = BASELINE_ORDERS) -> dict:
    """The baseline the notebook plots against the GRU: the held-out log perplexity of the
    interpolated Kneser-Ney model of each order, trained and scored on the course's split."""
    from deepngrams.lm.data import training_data
    _, train_lines, eval_lines = training_data()
    best, scores = best_baseline("\n".join(train_lines), "\n".join(eval_lines), orders)
    return {"about": "Held-out log perplexity (nats per character) of interpolated Kneser-Ney character "
                     "n-gram models fitted to the training lines, scored on the last 1000 lines read as one "
                     "text, as the GRU is. Written by python -m deepngrams ngram-baseline (make weights).",
            "best_order": best, "log_perplexity": {str(k): round(v, 4) for k, v in scores.items()}}


def baseline_main(check: bool = False) -> int:
    """Write data/ngram_baseline.json, or (`check`) say whether the committed one is current."""
    import json

    from deepngrams.atomic import atomic_path
    from deepngrams.config import NGRAM_BASELINE_PATH
    baseline = course_baseline()
    text = json.dumps(baseline, indent=1) + "\n"
    if check:
        current = NGRAM_BASELINE_PATH.read_text() if NGRAM_BASELINE_PATH.is_file() else None
        if current != text:
            print(f"{NGRAM_BASELINE_PATH} is stale or missing: run python -m deepngrams ngram-baseline")
            return 1
        print(f"{NGRAM_BASELINE_PATH} is current")
        return 0
    with atomic_path(NGRAM_BASELINE_PATH) as tmp:
        Path(tmp).write_text(text)
    print(f"Wrote {NGRAM_BASELINE_PATH}: best order {baseline['best_order']}, "
          f"log perplexity {baseline['log_perplexity'][str(baseline['best_order'])]}")
    return 0
