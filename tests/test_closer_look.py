"""The notebook's closer look (section 5, not graded): each cell run on its own, as the notebook runs it.

The cells are taken from the source notebook and executed here with a small model (or the
pretrained one where the figure is about it), so what the student reads is what is checked: the
surprise shading is -log P of each character, the temperature table holds what GenerativeModel
writes, and the n-gram plot reports the shipped baseline and the model card.
"""
import html
import json
import re

import matplotlib
import numpy as np
import pytest
import tensorflow as tf

from deepngrams.config import CARD_PATH, NGRAM_BASELINE_PATH, ROOT
from deepngrams.course import release
from deepngrams.lm import ngram, solution

matplotlib.use("Agg")  # plt.show() draws nothing here

CELLS = ("model_picture", "learning_curve", "surprise", "temperature_table", "ngrams_vs_gru")
VOCAB = ["[UNK]", ""] + sorted(set("ROMEO\tabc de\nfgh"))


@pytest.fixture(scope="module")
def cells():
    return {name: release.cells_by_id(release.read(release.SOURCE_NB))[name].source for name in CELLS}


def small_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = solution.GRULM(len(VOCAB), embedding_dim=6, rnn_units=8)
    model(tf.zeros((1, 1), tf.int64))
    return model


def run(cells, names, **namespace):
    """Run the cells `names` in one namespace, as the notebook would after its graded parts."""
    import matplotlib.pyplot as plt
    plt.close("all")  # the cells' figures are then numbered from 1
    shown = []
    ns = {"tf": tf, "np": np, "BUNDLE": ROOT, "QUICK": True, "vocab": VOCAB, "line_to_tensor": solution.line_to_tensor,
          "GenerativeModel": solution.GenerativeModel, **namespace}
    for name in names:
        exec(cells[name], ns)  # noqa: S102 - the course's own cells
        ns["display"] = lambda obj: shown.append(obj)  # the first cell imported IPython's display
    return ns, shown


def test_the_model_picture_and_the_learning_curve_draw(cells):
    ns, _ = run(cells, ["model_picture", "learning_curve"], model=small_model())
    import matplotlib.pyplot as plt
    texts = [t.get_text() for t in plt.figure(1).axes[0].texts]
    assert f"(batch, 100, {len(VOCAB)})" in texts and "GRU\n8 units" in texts and "(batch, 100, 6)" in texts
    assert f"Dense\n8 → {len(VOCAB)},\nthen log_softmax" in texts
    curve = plt.figure(2).axes[0]
    card = json.loads(CARD_PATH.read_text())
    assert [list(line.get_ydata()) for line in curve.lines] == [
        [h["train_loss"] for h in card["history"]], [h["eval_log_perplexity"] for h in card["history"]]]
    plt.close("all")


def test_the_surprise_shading_is_the_negative_log_probability_of_each_character(cells):
    model = small_model(1)
    lines = ["abc de", "ROMEO\tfgh <&>"]  # '<', '&' and '>' are unknown to VOCAB, and must come out escaped
    _, shown = run(cells, ["model_picture", "surprise"], model=model, eval_lines=lines, QUICK=False)
    page = shown[-1].data
    text = "\n".join(lines)
    spans = re.findall(r'<span title="([0-9.]+) nats" '
                       r'style="background-color: rgba\(230, 85, 13, ([0-9.]+)\)">(.*?)</span>', page, re.S)
    assert html.unescape(page.split(">", 1)[1].split("<", 1)[0]) == text[0]
    assert "".join(html.unescape(s[2]) for s in spans) == text[1:] and "<&>" not in page
    ids = solution.line_to_tensor([text], VOCAB).to_tensor()
    log_probs = model(ids[:, :-1])[0].numpy()
    want = -log_probs[np.arange(len(text) - 1), ids[0, 1:].numpy()]
    np.testing.assert_allclose([float(s[0]) for s in spans], want, atol=0.006)
    np.testing.assert_allclose([float(s[1]) for s in spans], np.minimum(want / 6.0, 1.0), atol=0.006)


def test_the_temperature_table_shows_what_generative_model_writes(cells):
    model = small_model(2)
    _, shown = run(cells, ["model_picture", "temperature_table"], model=model)
    page = shown[-1].data
    assert re.findall(r"<th>temperature ([0-9.]+)</th>", page) == ["0.2", "0.5", "1.0", "1.2"]
    columns = [html.unescape(c) for c in re.findall(r'<pre style="white-space: pre-wrap">(.*?)</pre>', page, re.S)]
    for temperature, column in zip([0.2, 0.5, 1.0, 1.2], columns, strict=True):
        tf.random.set_seed(1)
        assert column == solution.GenerativeModel(model, VOCAB, temperature=temperature).generate_n_chars(2, "ROMEO\t")


def test_the_n_gram_plot_reports_the_shipped_baseline_and_the_model_card(cells, capsys):
    run(cells, ["model_picture", "learning_curve", "ngrams_vs_gru"], model=small_model())
    baseline, card = json.loads(NGRAM_BASELINE_PATH.read_text()), json.loads(CARD_PATH.read_text())
    best = baseline["best_order"]
    assert capsys.readouterr().out.strip().endswith(
        f"best n-gram: n = {best}, {baseline['log_perplexity'][str(best)]:.3f}; "
        f"the GRU: {card['final']['eval_log_perplexity']:.3f}")
    import matplotlib.pyplot as plt
    ax = plt.gcf().axes[0]
    assert list(ax.lines[0].get_xdata()) == list(range(1, 10))
    plt.close("all")


def test_the_baseline_check_notices_a_stale_file(tmp_path, monkeypatch):
    from deepngrams import config
    monkeypatch.setattr(ngram, "course_baseline", lambda: {"best_order": 2, "log_perplexity": {"1": 3.0, "2": 2.0}})
    monkeypatch.setattr(config, "NGRAM_BASELINE_PATH", tmp_path / "ngram_baseline.json")
    assert ngram.baseline_main(check=True) == 1  # missing
    assert ngram.baseline_main() == 0 and ngram.baseline_main(check=True) == 0
    (tmp_path / "ngram_baseline.json").write_text(json.dumps({"best_order": 2, "log_perplexity": {"1": 3.1}}))
    assert ngram.baseline_main(check=True) == 1
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.slow
def test_the_shipped_baseline_is_what_the_corpus_gives():
    """data/ngram_baseline.json is current: computed again from the corpus (half a minute)."""
    assert ngram.baseline_main(check=True) == 0


def test_under_validate_the_shading_and_the_table_are_short(cells):
    """Under nbgrader's Validate (QUICK) the cells that run the model do little: one line, two
    characters. (The grader does not run them at all: they come after the last graded cell.)"""
    model = small_model(3)
    _, shown = run(cells, ["model_picture", "surprise", "temperature_table"], model=model,
                   eval_lines=["abc de", "ROMEO\tfgh"])
    assert html.unescape(re.sub(r"<[^>]+>", "", shown[0].data)) == "abc de"
    columns = re.findall(r'<pre style="white-space: pre-wrap">(.*?)</pre>', shown[1].data, re.S)
    assert [len(html.unescape(c)) for c in columns] == [len("ROMEO\t") + 2] * 4
