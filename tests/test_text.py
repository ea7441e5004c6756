"""HashingFeaturizer against scikit-learn's HashingVectorizer, the MurmurHash3 kernel against
sklearn.utils.murmurhash3_32, and the label<TAB>text reader."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils import murmurhash3_32

from fastdp.kernels import numba_hashing
from fastdp.text import HashingFeaturizer, split_labeled_lines

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "a b c I x",  # only 1-letter words: no tokens
    "Hello, WORLD!!! hello-world; hello_world 42 x42 4 2 __ _a a_",
    "   \t\n  ",
    "e-mail: someone@example.com, phone +1 (555) 010-9999; version 3.14.15",
    "to be or not to be, that is the question: to be",
    "tabs\tand\nnewlines\r\nand  double  spaces",
    "CamelCase snake_case kebab-case UPPER lower MiXeD",
    "1st 2nd 3rd 10th 100 1000 1e10 0x1F",
    "repeat repeat repeat repeat repeat",
    "!@#$%^&*()[]{};:'\",.<>/?\\|`~-=+",
]


def random_ascii_docs(n_docs: int, seed: int) -> list[str]:
    """Docs of words from a small vocabulary (many repeats) joined by ASCII punctuation/space."""
    rng = np.random.default_rng(seed)
    vocab = ["ab", "Ab", "abc", "x", "y1", "_", "__", "a_b", "zz", "hello", "Hello", "12", "7",
             "word", "words", "w0rd", "q", "longerwordhere", "the", "a"]
    seps = [" ", "  ", ", ", ". ", "-", "\n", "\t", "'", "!", "/", "(", ")"]
    docs = []
    for _ in range(n_docs):
        n = rng.integers(0, 30)
        parts = []
        for _ in range(n):
            parts.append(vocab[rng.integers(len(vocab))])
            parts.append(seps[rng.integers(len(seps))])
        docs.append("".join(parts))
    return docs


def assert_same_csr(X: sp.csr_matrix, Y: sp.csr_matrix, atol: float = 0.0) -> None:
    """Same shape, same stored entries (explicit zeros included) in the same order."""
    assert X.shape == Y.shape
    np.testing.assert_array_equal(X.indptr, Y.indptr)
    np.testing.assert_array_equal(X.indices, Y.indices)
    if atol == 0.0:
        np.testing.assert_array_equal(X.data, Y.data)
    else:
        np.testing.assert_allclose(X.data, Y.data, rtol=0, atol=atol)


def sklearn_csr(docs, **kwargs) -> sp.csr_matrix:
    Y = sp.csr_matrix(HashingVectorizer(**kwargs).transform(docs))
    Y.sort_indices()
    return Y


# ---------------------------------------------------------------- MurmurHash3 kernel

def test_murmurhash_equals_sklearn_on_random_bytes():
    rng = np.random.default_rng(0)
    for length in list(range(18)) + [31, 32, 33, 100, 1000]:
        for _ in range(40):
            data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            buf = np.frombuffer(data, dtype=np.uint8)
            for seed in (0, 1, 42, 2**31, 2**32 - 1):
                expected = murmurhash3_32(data, seed=seed)
                assert numba_hashing.murmurhash3_32(buf, 0, length, seed) == expected


def test_murmurhash_of_a_slice_and_of_non_ascii_text():
    text = "naïve café Ünïcödé 日本語 emoji 🙂 ß ﬁ".encode("utf-8")
    buf = np.frombuffer(text, dtype=np.uint8)
    for start in range(len(text) + 1):
        for stop in range(start, min(len(text), start + 17) + 1):
            assert numba_hashing.murmurhash3_32(buf, start, stop, 0) == murmurhash3_32(text[start:stop])


def test_joined_hash_equals_hash_of_the_bigram_string():
    rng = np.random.default_rng(1)
    for _ in range(300):
        data = rng.integers(0, 256, rng.integers(0, 20), dtype=np.uint8).tobytes()
        buf = np.frombuffer(data, dtype=np.uint8)
        s1, e1 = np.sort(rng.integers(0, len(data) + 1, 2))
        s2, e2 = np.sort(rng.integers(0, len(data) + 1, 2))
        expected = murmurhash3_32(data[s1:e1] + b" " + data[s2:e2])
        assert numba_hashing.murmurhash3_32_joined(buf, s1, e1, s2, e2, 0) == expected


# ---------------------------------------------------------------- HashingFeaturizer vs sklearn

@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2)])
@pytest.mark.parametrize("n_features", [1, 7, 16, 2**10, 2**20, 2**31 - 1])
@pytest.mark.parametrize("lowercase", [True, False])
def test_equals_sklearn_without_norm(ngram_range, n_features, lowercase):
    docs = DOCS + random_ascii_docs(300, seed=n_features)
    X = HashingFeaturizer(n_features=n_features, ngram_range=ngram_range, lowercase=lowercase,
                          norm=None).transform(docs)
    Y = sklearn_csr(docs, n_features=n_features, ngram_range=ngram_range, lowercase=lowercase,
                    alternate_sign=True, norm=None)
    assert_same_csr(X, Y)


def test_cancelled_collisions_stay_as_explicit_zeros_like_sklearn():
    docs = random_ascii_docs(400, seed=5)
    X = HashingFeaturizer(n_features=4, norm=None).transform(docs)
    Y = sklearn_csr(docs, n_features=4, norm=None)
    assert (X.data == 0).any()
    assert_same_csr(X, Y)


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2)])
def test_equals_sklearn_without_alternate_sign(ngram_range):
    docs = DOCS + random_ascii_docs(100, seed=3)
    X = HashingFeaturizer(n_features=64, ngram_range=ngram_range, alternate_sign=False,
                          norm=None).transform(docs)
    Y = sklearn_csr(docs, n_features=64, ngram_range=ngram_range, alternate_sign=False, norm=None)
    assert_same_csr(X, Y)
    assert (X.data > 0).all()


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2)])
def test_normalized_rows_equal_sklearn(norm, ngram_range):
    docs = DOCS + random_ascii_docs(300, seed=7)
    X = HashingFeaturizer(n_features=2**12, ngram_range=ngram_range, norm=norm).transform(docs)
    Y = sklearn_csr(docs, n_features=2**12, ngram_range=ngram_range, norm=norm)
    assert_same_csr(X, Y, atol=1e-12)


def test_default_is_l2_normalized_like_sklearn():
    docs = DOCS + random_ascii_docs(100, seed=9)
    assert_same_csr(HashingFeaturizer().transform(docs), sklearn_csr(docs), atol=1e-12)


def test_float32_values():
    docs = DOCS + random_ascii_docs(100, seed=11)
    X = HashingFeaturizer(n_features=2**10, dtype=np.float32).transform(docs)
    Y = sklearn_csr(docs, n_features=2**10, dtype=np.float32)
    assert X.dtype == np.float32
    assert_same_csr(X, Y, atol=1e-6)


def test_non_ascii_letters_equal_sklearn():
    docs = ["Naïve café, Ünïcödé straße", "Привет мир, привет", "日本語 テキスト", "ÀÉÎ àéî"]
    for ngram_range in [(1, 1), (1, 2)]:
        X = HashingFeaturizer(n_features=2**16, ngram_range=ngram_range, norm=None).transform(docs)
        assert_same_csr(X, sklearn_csr(docs, n_features=2**16, ngram_range=ngram_range, norm=None))


def test_non_ascii_punctuation_is_a_word_character():
    """The documented approximation: sklearn splits at an em dash, fastdp does not."""
    X = HashingFeaturizer(n_features=2**20, norm=None).transform(["one\u2014two"])
    h = murmurhash3_32("one\u2014two".encode("utf-8"))
    assert X.indices.tolist() == [abs(h) % 2**20]


def test_ascii_fortunes_equal_sklearn(fortunes_dir):
    from fastdp.datasets import load_fortunes

    texts = [t for t in load_fortunes(fortunes_dir)[0] if t.isascii()]
    assert len(texts) > 1000
    for ngram_range in [(1, 1), (1, 2)]:
        X = HashingFeaturizer(ngram_range=ngram_range, norm=None).transform(texts)
        assert_same_csr(X, sklearn_csr(texts, ngram_range=ngram_range, norm=None))


# ---------------------------------------------------------------- output format

def test_output_is_canonical_csr_with_int32_indices():
    X = HashingFeaturizer(n_features=2**20).transform(DOCS)
    assert sp.isspmatrix_csr(X)
    assert X.shape == (len(DOCS), 2**20)
    assert X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
    assert X.dtype == np.float64
    assert X.has_canonical_format
    Y = X.copy()
    Y.has_canonical_format = False
    Y.sum_duplicates()
    assert_same_csr(X, Y)


def test_empty_input_gives_zero_rows():
    X = HashingFeaturizer(n_features=100).transform([])
    assert X.shape == (0, 100) and X.nnz == 0
    assert HashingFeaturizer(n_features=100).transform(iter([])).shape == (0, 100)


def test_empty_documents_give_empty_rows():
    X = HashingFeaturizer(n_features=100).transform(["", " ", "a", "!!"])
    assert X.shape == (4, 100) and X.nnz == 0


def test_generator_input_and_fit_transform():
    f = HashingFeaturizer(n_features=2**10)
    assert_same_csr(f.transform(d for d in DOCS), f.transform(DOCS))
    assert f.fit(DOCS) is f
    assert_same_csr(f.fit_transform(DOCS), f.transform(DOCS))


def digest(X: sp.csr_matrix) -> str:
    h = hashlib.sha256()
    for a in (X.indptr, X.indices, X.data):
        h.update(a.tobytes())
    return h.hexdigest()


def test_same_columns_under_another_pythonhashseed():
    docs = DOCS + random_ascii_docs(50, seed=13)
    expected = digest(HashingFeaturizer(n_features=2**18, ngram_range=(1, 2)).transform(docs))
    code = (
        "import hashlib, json, sys\n"
        "from fastdp.text import HashingFeaturizer\n"
        "X = HashingFeaturizer(n_features=2**18, ngram_range=(1, 2)).transform(json.load(sys.stdin))\n"
        "h = hashlib.sha256()\n"
        "for a in (X.indptr, X.indices, X.data):\n"
        "    h.update(a.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(docs), env=env,
                              cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize("kwargs, match", [
    ({"n_features": 0}, "n_features must be a positive int.*got 0"),
    ({"n_features": -5}, "n_features.*got -5"),
    ({"n_features": 2**31}, "n_features.*2\\*\\*31 - 1"),
    ({"n_features": 10.0}, "n_features.*got 10.0"),
    ({"n_features": True}, "n_features.*got True"),
    ({"ngram_range": (2, 2)}, "ngram_range must be one of.*got \\(2, 2\\)"),
    ({"ngram_range": (1, 3)}, "ngram_range.*got \\(1, 3\\)"),
    ({"ngram_range": "12"}, "ngram_range.*got '12'"),
    ({"lowercase": "yes"}, "lowercase must be a bool, got 'yes'"),
    ({"alternate_sign": 1}, "alternate_sign must be a bool, got 1"),
    ({"norm": "l3"}, "norm must be one of.*got 'l3'"),
    ({"norm": ["l2"]}, "norm must be one of"),
    ({"dtype": np.int64}, "dtype must be np.float32 or np.float64"),
    ({"dtype": None}, "dtype must be np.float32 or np.float64, got None"),
    ({"dtype": "no such type"}, "dtype must be"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HashingFeaturizer(**kwargs)


def test_bad_documents_are_named():
    f = HashingFeaturizer()
    with pytest.raises(TypeError, match=r"docs\[2\] must be a str, got bytes"):
        f.transform(["a", "b", b"c"])
    with pytest.raises(TypeError, match=r"docs\[0\] must be a str, got NoneType"):
        f.transform([None])
    with pytest.raises(TypeError, match="single str"):
        f.transform("one document")
    with pytest.raises(ValueError, match=r"docs\[1\] cannot be encoded as UTF-8"):
        f.transform(["ok", "bad \ud800 surrogate"])


def test_params_round_trip_through_json():
    f = HashingFeaturizer(n_features=1000, ngram_range=(1, 2), lowercase=False,
                          alternate_sign=False, norm="l1", dtype=np.float32)
    g = HashingFeaturizer.from_dict(json.loads(json.dumps(f.to_dict())))
    assert g.get_params() == f.get_params()
    assert g.to_dict() == f.to_dict() == {
        "n_features": 1000, "ngram_range": [1, 2], "lowercase": False, "alternate_sign": False,
        "norm": "l1", "dtype": "float32"}
    assert_same_csr(g.transform(DOCS), f.transform(DOCS))
    assert HashingFeaturizer.from_dict({}).get_params() == HashingFeaturizer().get_params()
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['vocabulary'\]"):
        HashingFeaturizer.from_dict({"vocabulary": {}})
    with pytest.raises(ValueError, match="n_features"):
        HashingFeaturizer.from_dict({"n_features": -1})
    with pytest.raises(ValueError, match="dtype must be np.float32 or np.float64, got 'int8'"):
        HashingFeaturizer.from_dict({"dtype": "int8"})
    with pytest.raises(TypeError, match="params must be a dict"):
        HashingFeaturizer.from_dict([("n_features", 3)])


def test_works_in_a_sklearn_pipeline():
    f = HashingFeaturizer(n_features=2**12, ngram_range=(1, 2))
    assert clone(f).get_params() == f.get_params()
    assert f.set_params(norm="l1") is f and f.norm == "l1"
    with pytest.raises(ValueError, match="unknown parameter"):
        f.set_params(n_feature=3)
    with pytest.raises(ValueError, match="norm must be"):
        f.set_params(norm="max")
    docs = ["good great fine", "bad awful poor"] * 20
    labels = [1, 0] * 20
    model = make_pipeline(HashingFeaturizer(n_features=2**12), SGDClassifier(random_state=0))
    model.fit(docs, labels)
    assert list(model.predict(["great fine", "awful poor"])) == [1, 0]
    assert "HashingFeaturizer(n_features=4096" in repr(f)


# ---------------------------------------------------------------- split_labeled_lines

def test_split_labeled_lines():
    texts, labels = split_labeled_lines(["pos\tgreat film\n", "neg\tawful\tsequel\r\n", "neg\t\n", ""])
    assert texts == ["great film", "awful\tsequel", ""]
    assert labels == ["pos", "neg", "neg"]
    assert split_labeled_lines("a\tx\nb\ty\n".split("\n")) == (["x", "y"], ["a", "b"])
    assert split_labeled_lines([]) == ([], [])


def test_split_labeled_lines_reads_an_open_file(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("spam\tbuy now\nham\tsee you at 5\n")
    with open(path) as f:
        assert split_labeled_lines(f) == (["buy now", "see you at 5"], ["spam", "ham"])


@pytest.mark.parametrize("lines, match", [
    (["a\tx", "no tab here", "b\ty"], r"line 2 has no TAB after its label.*'no tab here'"),
    (["\tno label"], r"line 1 has an empty label.*'\\tno label'"),
    (["a\tx", "", "b\ty"], r"line 2 has no TAB"),
    (["a\tx", "", ""], r"line 2 has no TAB"),
    (["x" * 100], r"line 1 has no TAB.*'x{40}'\.\.\."),
])
def test_split_labeled_lines_errors_name_the_line(lines, match):
    with pytest.raises(ValueError, match=match):
        split_labeled_lines(lines)


def test_split_labeled_lines_type_errors():
    with pytest.raises(TypeError, match="single str"):
        split_labeled_lines("a\tb\n")
    with pytest.raises(TypeError, match="line 2 must be a str, got bytes"):
        split_labeled_lines(["a\tb", b"c\td"])
