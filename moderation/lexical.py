"""The lexical view of a text: hashed word and character n-grams, one logistic regression per trained class.

Why a model with a sentence encoder also reads n-grams: a frozen sentence embedding blurs the words that decide
most moderation calls (a slur, a threat verb), and a TF-IDF regression keeps them. Neither wins everywhere, but
their logits blended half and half rank better on sources neither trained on than either alone
(`python -m eval.benchmarks.lexical_blend`: cross-source mean PR-AUC 0.450 -> 0.466, any-harm 0.633 -> 0.660).
The blend itself happens in `ModerationModel` (`lexical.weight`), for captions and the text read from pictures
alike; this module turns texts into per-class logits.

No vocabulary is stored: n-grams are hashed into a fixed number of buckets (scikit-learn's HashingVectorizer),
so a run directory holds numbers per bucket (idf and weights), never a word list taken from training text, some
of which is abusive. Texts go through the evasion normaliser first when the config asks for it, as the text
encoder's do (`moderation.encoders.prepare`, platform markup out too where the config says so), so l33t and
look-alike rewrites meet the n-grams they were trained on.

Each regression is fitted only on the rows where its class's label is known (an unlabelled row is never taught
as a negative), class-balanced, with liblinear's dual solver (fast on sparse text with many features).
Weights are kept in float16 from the moment they are fitted, so the scores of a loaded run are exactly the
scores training validated and chose thresholds on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the features change meaning (analyzers, n-gram ranges, hashing)
HASH_BUCKETS = 2**26
# The value of a source intercept's column: liblinear penalises every coefficient alike, so a column of ones
# lets a source's style n-grams carry part of its base rate (cheaper under L2, spread over many n-grams); at 10
# an intercept costs a hundredth of the penalty (as liblinear's own intercept_scaling does).
INTERCEPT_SCALE = 10.0


def fit_masked_logistic(features, label: np.ndarray, known: np.ndarray, C: float = 1.0, max_iter: int = 1000,
                        intercept_columns: sp.spmatrix | None = None):
    """A LogisticRegression fitted on the rows whose label is `known`, or the training prevalence (a float) when
    only one label value is known there. `intercept_columns` (N, S), fitting only: extra columns (one-hot
    sources) appended after the features; their coefficients come last in `coef_`, for the caller to drop."""
    from sklearn.linear_model import LogisticRegression

    y = label[known]
    if len(y) == 0 or np.all(y == y[0]):
        return float(y.mean()) if len(y) else 0.0
    x = features[known]
    if intercept_columns is not None:
        x = sp.hstack([x, intercept_columns[known]], format="csr", dtype=x.dtype)
    # liblinear's dual solver visits coordinates in random order: seed it so a refit gives the same scores.
    model = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", dual=True, max_iter=max_iter,
                               random_state=0)
    return model.fit(x, y.astype(np.int64))


def source_columns(sources, labels: np.ndarray, label_mask: np.ndarray) -> list[sp.csr_matrix]:
    """Per class, (N, S) one-hot columns of the training rows' sources, for the sources that label the class both
    ways (`moderation.losses.source_base_rates`; the others' rows get zeros): the lexical view's per-source
    intercepts (`loss.source_intercepts`), dropped after fitting like the head's."""
    from moderation.losses import source_base_rates

    index, free, _ = source_base_rates(labels, label_mask, sources)
    rows = np.arange(len(index))
    out = []
    for c in range(free.shape[1]):
        hit = free[index, c]
        out.append(sp.csr_matrix((np.full(hit.sum(), INTERCEPT_SCALE, np.float32), (rows[hit], index[hit])),
                                 shape=(len(index), free.shape[0])))
    return out


class LexicalModel:
    """TF-IDF over word 1-2 grams and char_wb 2-5 grams (sublinear tf, each block L2-normalised), and per-class
    weights. `active[c]` is False for a class it was not fitted for (zero-shot classes); its logit is 0.

    N-grams are hashed into 2**26 buckets, and, as a vocabulary would, only the most frequent buckets seen in
    training (at least `min_df` texts each, at most `word_features` / `char_features`) become features: keeping
    every rare n-gram cost 0.035 any-harm PR-AUC on an unseen source. With `min_sources` > 1 a bucket must also
    occur in texts of that many training sources: an n-gram only one source uses (its topic, its platform's
    idiom) says more about that source than about harm on the next one. A bucket is an integer, not a word, and
    2**26 buckets make two kept n-grams sharing one rare.

    >>> texts = ["bad words here", "nice words here", "bad stuff again", "nice stuff again"] * 3
    >>> labels = np.array([[1], [0], [1], [0]] * 3, dtype=np.float32)
    >>> m = LexicalModel(normalize=False).fit(texts, labels, np.ones_like(labels, dtype=bool), np.array([True]))
    >>> bad, nice = m.logits(["bad words", "nice words"])[:, 0]
    >>> bool(bad > 0 > nice)
    True
    """

    def __init__(self, word_features: int = 100_000, char_features: int = 200_000, min_df: int = 2, C: float = 1.0,
                 normalize: bool = True, strip_markup: bool = False, min_sources: int = 1):
        self.max_features = {"word": int(word_features), "char": int(char_features)}
        self.min_df, self.C, self.normalize = int(min_df), float(C), bool(normalize)
        self.min_sources = int(min_sources)
        self.strip_markup = bool(strip_markup)
        self.buckets: dict[str, np.ndarray] = {}  # analyzer -> (K,) sorted uint32 bucket ids kept as features
        self.idf: dict[str, np.ndarray] = {}  # analyzer -> (K,) float16
        self.weights: np.ndarray | None = None  # (C, K_word + K_char) float16, set by fit or load
        self.bias: np.ndarray | None = None  # (C,) float32
        self.active: np.ndarray | None = None  # (C,) bool

    @staticmethod
    def _hashers() -> dict:
        from sklearn.feature_extraction.text import HashingVectorizer

        common = dict(n_features=HASH_BUCKETS, alternate_sign=False, norm=None, dtype=np.float32)
        return {"word": HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common),
                # char_wb keeps n-grams inside word boundaries: robust to obfuscated spellings, fewer junk n-grams.
                "char": HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common)}

    def _prepared(self, texts: Sequence[str | None]) -> list[str]:
        from moderation.encoders.prepare import model_texts

        return model_texts(["" if t is None else str(t).strip() for t in texts], self.normalize, self.strip_markup)

    def _choose_buckets(self, name: str, counts: sp.csr_matrix, source_codes: np.ndarray | None = None) -> None:
        """Keep the buckets in at least `min_df` texts (and in texts of at least `min_sources` sources; each
        text's source as an integer code 0..S-1), the `max_features` most frequent of them (as scikit-learn's
        vocabulary limits do: by total count, ties to the lower id)."""
        ids, inverse = np.unique(counts.indices, return_inverse=True)
        df, total = np.bincount(inverse), np.bincount(inverse, weights=counts.data)
        enough = df >= self.min_df
        if self.min_sources > 1:
            if source_codes is None:
                raise ValueError(f"lexical view: min_sources={self.min_sources} needs each training text's source")
            n_sources = int(source_codes.max()) + 1
            source = np.repeat(source_codes, np.diff(counts.indptr))  # each stored count's source
            pairs = np.unique(inverse.astype(np.int64) * n_sources + source)  # distinct (bucket, source)
            enough &= np.bincount(pairs // n_sources, minlength=len(ids)) >= self.min_sources
        ids, total = ids[enough], total[enough]
        keep = np.argsort(-total, kind="stable")[:self.max_features[name]]
        self.buckets[name] = np.sort(ids[keep]).astype(np.uint32)

    def _kept(self, name: str, counts: sp.csr_matrix) -> sp.csr_matrix:
        """`counts` restricted to the kept buckets, columns renumbered 0..K-1."""
        buckets = self.buckets[name]
        pos = np.searchsorted(buckets, counts.indices).clip(max=len(buckets) - 1)
        hit = buckets[pos] == counts.indices
        row = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[hit]
        return sp.csr_matrix((counts.data[hit], (row, pos[hit])), shape=(counts.shape[0], len(buckets)))

    def features(self, texts: Sequence[str | None], fit: bool = False,
                 source_codes: np.ndarray | None = None) -> sp.csr_matrix:
        """(N, K_word + K_char) TF-IDF rows; `fit` chooses the buckets (`source_codes`: each text's source as an
        integer, for `min_sources`) and learns the idf from these texts first."""
        from sklearn.feature_extraction.text import TfidfTransformer

        texts = self._prepared(texts)
        blocks = []
        for name, hasher in self._hashers().items():
            counts = hasher.transform(texts)
            if fit:
                self._choose_buckets(name, counts, source_codes)
            counts = self._kept(name, counts)
            tfidf = TfidfTransformer(sublinear_tf=True)
            if fit:
                tfidf.fit(counts)
                self.idf[name] = tfidf.idf_.astype(np.float16)
            tfidf.idf_ = self.idf[name].astype(np.float64)
            blocks.append(tfidf.transform(counts))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def fit(self, texts: Sequence[str | None], labels: np.ndarray, label_mask: np.ndarray,
            classes: np.ndarray, sources: Sequence[str] | None = None,
            source_intercepts: bool = False) -> LexicalModel:
        """Fit the idf on `texts` and a regression for each class where `classes` is True, on its known labels.
        `sources` (each text's source) is needed for `min_sources`, and for `source_intercepts`: each regression
        then also fits per-source intercepts (`source_columns`), which are dropped after fitting, so the kept
        weights score the average source."""
        from joblib import Parallel, delayed
        from sklearn.linear_model import LogisticRegression

        labels, label_mask, classes = np.asarray(labels), np.asarray(label_mask, bool), np.asarray(classes, bool)
        if labels.shape != (len(texts), len(classes)) or label_mask.shape != labels.shape:
            raise ValueError(f"labels and label_mask must be (N, C) = ({len(texts)}, {len(classes)}), "
                             f"got {labels.shape} and {label_mask.shape}")
        if source_intercepts and sources is None:
            raise ValueError("lexical view: source_intercepts needs each training text's source")
        codes = None if sources is None else np.unique(np.asarray(sources), return_inverse=True)[1]
        x = self.features(texts, fit=True, source_codes=codes)
        chosen = np.flatnonzero(classes)
        extra = source_columns(sources, labels, label_mask) if source_intercepts else [None] * len(classes)
        # liblinear releases the GIL, so threads fit the classes side by side without copying the features.
        fitted = Parallel(n_jobs=min(len(chosen), os.cpu_count() or 1) or 1, prefer="threads")(
            delayed(fit_masked_logistic)(x, labels[:, c], label_mask[:, c], self.C, intercept_columns=extra[c])
            for c in chosen)
        weights = np.zeros((len(classes), x.shape[1]), np.float16)
        bias = np.zeros(len(classes), np.float32)
        active = np.zeros(len(classes), bool)
        for c, model in zip(chosen, fitted):
            if isinstance(model, LogisticRegression):
                weights[c] = model.coef_[0][:x.shape[1]].astype(np.float16)  # source intercepts, if any, dropped
                bias[c] = model.intercept_[0]
                active[c] = True
            else:
                log.warning("lexical view: class %d has one known label value in training; not fitted", c)
        self._use_weights(weights, bias, active)
        log.info("lexical view: %d texts, %d buckets, %d classes fitted", x.shape[0], x.shape[1], int(self.active.sum()))
        return self

    def _use_weights(self, weights: np.ndarray, bias: np.ndarray, active: np.ndarray) -> None:
        """Keep the fitted (or loaded) weights, and the fitted classes' columns as float32 for scoring, converted
        once here: per call of 32 posts the conversion cost a third of the view's time. The values are the float16
        ones, so scores stay those training validated."""
        self.weights, self.bias, self.active = weights, bias, active
        self._columns = weights[active].T.astype(np.float32)  # (K, fitted classes)

    def logits(self, texts: Sequence[str | None]) -> np.ndarray:
        """(N, C) float32 logits; 0 for classes not fitted. An empty text gets each class's bias."""
        if self.weights is None:
            raise RuntimeError("LexicalModel.logits called before fit or load")
        if not len(texts):
            return np.zeros((0, len(self.bias)), np.float32)
        out = np.zeros((len(texts), len(self.bias)), np.float32)
        out[:, self.active] = np.asarray(self.features(texts) @ self._columns) + self.bias[self.active]
        return out

    # -- files ---------------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        tensors = {"word_buckets": self.buckets["word"], "char_buckets": self.buckets["char"],
                   "word_idf": self.idf["word"], "char_idf": self.idf["char"], "weights": self.weights,
                   "bias": self.bias, "active": self.active.astype(np.uint8)}
        meta = {"format": str(FORMAT), "min_df": str(self.min_df), "C": repr(self.C), "normalize": str(self.normalize),
                "strip_markup": str(self.strip_markup), "min_sources": str(self.min_sources)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path) -> LexicalModel:
        from safetensors import safe_open
        from safetensors.numpy import load_file

        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: missing; the run's model.json says its text scores blend a lexical view")
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != str(FORMAT):
            raise ValueError(f"{path}: lexical view format {meta.get('format')!r}, this version reads {FORMAT}: "
                             "retrain the run")
        tensors = load_file(str(path))
        model = cls(len(tensors["word_buckets"]), len(tensors["char_buckets"]), int(meta["min_df"]), float(meta["C"]),
                    meta["normalize"] == "True", meta.get("strip_markup") == "True",  # absent: written before it
                    int(meta.get("min_sources", 1)))
        model.buckets = {"word": tensors["word_buckets"], "char": tensors["char_buckets"]}
        model.idf = {"word": tensors["word_idf"], "char": tensors["char_idf"]}
        model._use_weights(tensors["weights"], tensors["bias"], tensors["active"].astype(bool))
        return model


def load_for_run(run_dir: Path, meta: dict) -> LexicalModel | None:
    """A run's lexical view, or None when its model blends none (model.json's "lexical")."""
    from moderation import runfiles

    return LexicalModel.load(Path(run_dir) / runfiles.LEXICAL) if meta.get("lexical") else None
