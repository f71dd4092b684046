"""The TF-IDF + logistic-regression baseline every model is reported against.

Owns `TfidfBaseline`: word 1-2 grams and character 2-5 grams (sublinear tf, min_df 2, bounded feature
counts) feeding one class-balanced logistic regression per category. Each regression is fitted only on
the rows where that category's label is known, so an unlabelled row is never taught as a negative.

It is the floor a learned model has to beat in the report, cheap enough to refit with every run: about
a minute for 100k texts on 2 cores (the dual liblinear solver is ~5x faster than the primal one on
sparse text with more features than it can afford to iterate over).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from moderation.lexical import fit_masked_logistic

from .metrics import validate_inputs

logger = logging.getLogger(__name__)


def _as_texts(texts) -> list[str]:
    # One string is one item, as in setfit's predict; None (an image-only row) is empty text.
    if isinstance(texts, str):
        return [texts]
    return ["" if t is None else str(t) for t in texts]


class TfidfBaseline:
    """TF-IDF word + char n-grams with one logistic regression per category.

    >>> texts = ["bad words here", "nice words here", "bad stuff again", "nice stuff again"] * 3
    >>> labels = np.array([[1], [0], [1], [0]] * 3, dtype=float)
    >>> model = TfidfBaseline().fit(texts, labels, np.ones_like(labels, dtype=bool))
    >>> bool(model.predict_proba(["bad words"])[0, 0] > model.predict_proba(["nice words"])[0, 0])
    True
    """

    def __init__(
        self,
        *,
        max_word_features: int = 100_000,
        max_char_features: int = 200_000,
        min_df: int = 2,
        C: float = 1.0,
        max_iter: int = 1000,
        n_jobs: int = 1,
    ) -> None:
        for name, value in (("max_word_features", max_word_features), ("max_char_features", max_char_features),
                            ("min_df", min_df), ("max_iter", max_iter), ("n_jobs", n_jobs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C!r}")
        self.max_word_features, self.max_char_features = int(max_word_features), int(max_char_features)
        self.min_df, self.C, self.max_iter, self.n_jobs = int(min_df), float(C), int(max_iter), int(n_jobs)
        self.vectorizer: FeatureUnion | None = None
        # One per category: a LogisticRegression, or a float (the constant score of a one-valued class).
        self.classifiers: list[LogisticRegression | float] = []

    def _vectorizer(self) -> FeatureUnion:
        common = dict(sublinear_tf=True, min_df=self.min_df, dtype=np.float32)
        return FeatureUnion(
            [
                ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), max_features=self.max_word_features, **common)),
                # char_wb keeps n-grams inside word boundaries: robust to obfuscated spellings, fewer junk n-grams.
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), max_features=self.max_char_features, **common)),
            ],
            n_jobs=self.n_jobs,
        )

    def fit(self, texts: Sequence[str], labels, label_mask) -> TfidfBaseline:
        """Fit the vectorizer on all `texts` and one regression per category on its known labels."""
        texts = _as_texts(texts)
        labels = np.asarray(labels, dtype=np.float64)
        if labels.ndim != 2 or labels.shape[0] != len(texts):
            raise ValueError(f"labels must be (N, C) with N = {len(texts)} texts, got shape {labels.shape}")
        # Scores are not known yet: validate labels and mask against a placeholder of the right shape.
        labels, label_mask, _ = validate_inputs(labels, label_mask, np.zeros(labels.shape))
        self.vectorizer = self._vectorizer()
        features = self.vectorizer.fit_transform(texts).tocsr()
        logger.info("tf-idf: %d texts, %d features", features.shape[0], features.shape[1])
        # liblinear releases the GIL, so threads parallelise the per-category fits without copying features.
        self.classifiers = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(fit_masked_logistic)(features, labels[:, c], label_mask[:, c], self.C, self.max_iter)
            for c in range(labels.shape[1])
        )
        for c, clf in enumerate(self.classifiers):
            known = int(label_mask[:, c].sum())
            if known == 0:
                logger.warning("category %d: no known label in training; predicting 0", c)
            elif not isinstance(clf, LogisticRegression):
                logger.warning("category %d: all %d known labels are %g; predicting that", c, known, clf)
        return self

    def predict_proba(self, texts) -> np.ndarray:
        """Scores (N, C): the probability of each category for each text (one string gives N = 1)."""
        if self.vectorizer is None:
            raise RuntimeError("TfidfBaseline.predict_proba called before fit")
        texts = _as_texts(texts)
        features = self.vectorizer.transform(texts)
        out = np.empty((len(texts), len(self.classifiers)), dtype=np.float64)
        for c, clf in enumerate(self.classifiers):
            out[:, c] = clf.predict_proba(features)[:, 1] if isinstance(clf, LogisticRegression) else clf
        return out
