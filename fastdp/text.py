"""Text features: hash documents into a sparse matrix, and read `label<TAB>text` lines.

HashingFeaturizer gives the columns of scikit-learn's HashingVectorizer (default token pattern,
MurmurHash3 with seed 0, alternate signs) from a threaded Numba kernel
(fastdp/kernels/numba_hashing.py): Python touches each document once (lower-case, encode), never
each token. It is stateless, so every rank of a job, and every later process, maps a word to the
same column without exchanging a vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import DTypeLike

from .kernels import numba_hashing

NORMS: dict[str | None, int] = {None: numba_hashing.NORM_NONE, "l1": numba_hashing.NORM_L1,
                                "l2": numba_hashing.NORM_L2}
NGRAM_RANGES: tuple[tuple[int, int], ...] = ((1, 1), (1, 2))
DTYPES: tuple[type, ...] = (np.float32, np.float64)
MAX_FEATURES = 2**31 - 1  # the hash is 32 bits: abs(h) % n_features never needs more columns


class HashingFeaturizer:
    """Stateless bag-of-words hashing: documents -> (n_docs, n_features) CSR matrix.

    With norm=None, transform equals sklearn's HashingVectorizer(n_features=n_features,
    ngram_range=ngram_range, lowercase=lowercase, alternate_sign=alternate_sign, norm=None,
    dtype=dtype) on text whose non-ASCII characters are all letters or digits (str.isalnum);
    with norm="l2" (or "l1") rows are scaled as sklearn.preprocessing.normalize does (empty rows
    stay empty). Tokens are runs of two or more word characters, and every non-ASCII character
    counts as one (see fastdp/kernels/numba_hashing.py): non-ASCII punctuation, spaces and
    combining marks do not split words here, where sklearn splits at them.

    n_features:     number of columns, 1 <= n_features <= 2**31 - 1
    ngram_range:    (1, 1) for words, (1, 2) for words and pairs of adjacent words
    lowercase:      lower-case each document (str.lower) before tokenizing
    alternate_sign: a feature's value is -1 when its hash is negative (collisions cancel on average)
    norm:           "l2", "l1" or None: the norm each row is divided by
    dtype:          np.float64 or np.float32, the dtype of the values
    """

    def __init__(self, n_features: int = 2**20, ngram_range: tuple[int, int] = (1, 1),
                 lowercase: bool = True, alternate_sign: bool = True, norm: str | None = "l2",
                 dtype: DTypeLike = np.float64) -> None:
        self.n_features = n_features
        self.ngram_range = ngram_range
        self.lowercase = lowercase
        self.alternate_sign = alternate_sign
        self.norm = norm
        self.dtype = dtype
        self._validate()

    def _validate(self) -> None:
        n = self.n_features
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_FEATURES:
            raise ValueError(f"n_features must be a positive int no larger than 2**31 - 1, "
                             f"got {n!r}")
        ngrams = self.ngram_range
        if not isinstance(ngrams, (tuple, list)) or tuple(ngrams) not in NGRAM_RANGES:
            raise ValueError(f"ngram_range must be one of {list(NGRAM_RANGES)}, got {ngrams!r}")
        for name in ("lowercase", "alternate_sign"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.norm, (str, type(None))) or self.norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {self.norm!r}")
        try:
            dtype = None if self.dtype is None else np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be np.float32 or np.float64, got {self.dtype!r}")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, as given (scikit-learn's estimator interface)."""
        return {"n_features": self.n_features, "ngram_range": self.ngram_range,
                "lowercase": self.lowercase, "alternate_sign": self.alternate_sign,
                "norm": self.norm, "dtype": self.dtype}

    def set_params(self, **params: Any) -> HashingFeaturizer:
        """Change constructor arguments (scikit-learn's estimator interface); returns self."""
        unknown = sorted(set(params) - set(self.get_params()))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; valid: {sorted(self.get_params())}")
        for name, value in params.items():
            setattr(self, name, value)
        self._validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The parameters as JSON-friendly values; from_dict rebuilds the same featurizer."""
        params = self.get_params()
        params["n_features"] = int(self.n_features)
        params["ngram_range"] = [int(n) for n in self.ngram_range]
        params["lowercase"] = bool(self.lowercase)
        params["alternate_sign"] = bool(self.alternate_sign)
        params["dtype"] = np.dtype(self.dtype).name
        return params

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> HashingFeaturizer:
        """The featurizer described by to_dict's output (missing keys take their defaults)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict (from to_dict), got {type(params).__name__}")
        kwargs = dict(params)
        if "ngram_range" in kwargs and isinstance(kwargs["ngram_range"], list):
            kwargs["ngram_range"] = tuple(kwargs["ngram_range"])
        if isinstance(kwargs.get("dtype"), str):
            kwargs["dtype"] = {np.dtype(t).name: t for t in DTYPES}.get(kwargs["dtype"], kwargs["dtype"])
        unknown = sorted(set(kwargs) - set(cls().get_params()))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} in params")
        return cls(**kwargs)

    def fit(self, docs: Iterable[str] | None = None, y: Any = None) -> HashingFeaturizer:
        """Nothing to learn (the featurizer is stateless); checks the parameters, returns self."""
        self._validate()
        return self

    def fit_transform(self, docs: Iterable[str], y: Any = None) -> sp.csr_matrix:
        """Same as transform (the featurizer is stateless)."""
        return self.transform(docs)

    def transform(self, docs: Iterable[str]) -> sp.csr_matrix:
        """Hashed features of each document: (n_docs, n_features) CSR in canonical format.

        docs: an iterable of str (a list, a generator, ...); an empty one gives 0 rows.
        Indices are int32 unless the matrix needs int64; values have the featurizer's dtype.
        """
        self._validate()
        if isinstance(docs, (str, bytes)):
            raise TypeError("docs must be an iterable of str documents, got a single "
                            f"{type(docs).__name__}; wrap it in a list")
        encoded = []
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                raise TypeError(f"docs[{i}] must be a str, got {type(doc).__name__}")
            try:
                encoded.append((doc.lower() if self.lowercase else doc).encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise ValueError(f"docs[{i}] cannot be encoded as UTF-8: {exc}") from None
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        indptr, indices, data = numba_hashing.hash_documents(
            buf, offsets, int(self.n_features), bool(self.alternate_sign),
            tuple(self.ngram_range) == (1, 2), NORMS[self.norm], np.dtype(self.dtype))
        X = sp.csr_matrix((data, indices, indptr), shape=(len(encoded), int(self.n_features)),
                          copy=False)
        X.has_canonical_format = True
        return X

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def split_labeled_lines(lines: Iterable[str]) -> tuple[list[str], list[str]]:
    """(texts, labels) from lines of the form `label<TAB>text`, in order.

    lines: an iterable of str, with or without their line endings (an open text file works). The
    label is everything before the first TAB, the text everything after it (it may be empty).
    A blank last line (the file's final newline, read as one more line) is ignored; any other line
    without a TAB or with an empty label raises ValueError naming its 1-based line number.
    """
    if isinstance(lines, str):
        raise TypeError("lines must be an iterable of str lines, got a single str; "
                        "use text.splitlines()")
    rows = [line.rstrip("\r\n") if isinstance(line, str) else line for line in lines]
    if rows and rows[-1] == "":
        rows.pop()
    texts: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(rows, start=1):
        if not isinstance(line, str):
            raise TypeError(f"line {number} must be a str, got {type(line).__name__}")
        label, tab, text = line.partition("\t")
        if not tab or not label:
            problem = "has no TAB after its label" if not tab else "has an empty label"
            raise ValueError(f"line {number} {problem}; expected 'label<TAB>text', "
                             f"got {line[:40]!r}{'...' if len(line) > 40 else ''}")
        labels.append(label)
        texts.append(text)
    return texts, labels
