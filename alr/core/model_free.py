"""Model-free reference rows of a domain, and the prior-robust score.

A domain gain means something only above what needs no model at all:
- `lexical`: pick the choice sharing the most content words with the question (word overlap; the
  medical task scored 0.45 this way before its items were filtered, chance 0.25);
- `majority`: pick the choice that is most often the gold answer in the train split (the label
  prior; a tune that only learns it moves accuracy without learning the domain).
Ties are broken uniformly at random, in expectation: an item scores 1 / (number of tied best
choices) when the gold is among them, so both rows are exact, not sampled.

`balanced_accuracy` averages accuracy within each gold answer first, so a shift toward a frequent
answer cannot raise it unless rare answers are right too.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

# words that carry no topic: function words and the template words of the built-in domains
_STOP = frozenset(
    """a an and are as at be by certain classified do does due elsewhere for from has in is it its
not of on or other others that the this to under unspecified which what with without question answer""".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of 3+ letters, a plural 's' folded ("neoplasms" = "neoplasm"), stop words out."""
    words = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if len(w) < 3 or w in _STOP:
            continue
        words.add(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w)
    return words


def overlap_scores(question: str, choices: list[str]) -> list[int]:
    q = content_words(question)
    return [len(q & content_words(c)) for c in choices]


def _expected(scores: list[float], label: int) -> float:
    best = max(scores)
    ties = [i for i, s in enumerate(scores) if s == best]
    return 1.0 / len(ties) if label in ties else 0.0


def lexical_score(item: dict) -> float:
    """Expected accuracy on one item of picking the choice with the most word overlap."""
    return _expected(overlap_scores(item["question"], item["choices"]), item["label"])


def majority_score(item: dict, prior: Counter) -> float:
    """Expected accuracy on one item of picking the choice most often gold in training (`prior`)."""
    return _expected([prior.get(c, 0) for c in item["choices"]], item["label"])


def answer_prior(train: list[dict]) -> Counter:
    return Counter(r["choices"][r["label"]] for r in train)


def balanced_accuracy(golds: list[str], correct: list[float]) -> float:
    """The mean over gold answers of the accuracy on the items with that answer."""
    by_gold: dict[str, list[float]] = defaultdict(list)
    for g, c in zip(golds, correct):
        by_gold[g].append(c)
    return sum(sum(v) / len(v) for v in by_gold.values()) / len(by_gold)
