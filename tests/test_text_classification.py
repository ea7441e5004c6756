"""Text classification end to end on a real corpus: Debian's fortunes, one class per file.

fastdp (HashingFeaturizer + LinearSVC) against scikit-learn (HashingVectorizer + SGDClassifier) on
the same split and the same number of hashed columns."""

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from fastdp.datasets import load_fortunes
from fastdp.estimators import LinearSVC
from fastdp.text import HashingFeaturizer

N_FEATURES = 2**16


@pytest.fixture(scope="module")
def fortunes(fortunes_dir):
    texts, labels, names = load_fortunes(fortunes_dir)
    train, test = train_test_split(np.arange(len(texts)), test_size=0.25, random_state=0,
                                   stratify=labels)
    pick = lambda rows: [texts[i] for i in rows]  # noqa: E731
    return pick(train), labels[train], pick(test), labels[test], names


def test_fastdp_classifies_fortunes_as_well_as_sklearn(fortunes):
    train_texts, y_train, test_texts, y_test, names = fortunes
    assert len(names) >= 20 and len(train_texts) > 10_000

    hv = HashingVectorizer(n_features=N_FEATURES)
    sk = SGDClassifier(random_state=0).fit(hv.transform(train_texts), y_train)
    sk_accuracy = sk.score(hv.transform(test_texts), y_test)

    featurizer = HashingFeaturizer(n_features=N_FEATURES)
    model = LinearSVC(C=1.0, max_iter=30).fit(featurizer.transform(train_texts), y_train)
    accuracy = model.score(featurizer.transform(test_texts), y_test)

    print(f"\nfortunes, {len(names)} classes: fastdp LinearSVC {accuracy:.4f}, "
          f"scikit-learn SGDClassifier {sk_accuracy:.4f}")
    assert accuracy > 10 / len(names)  # far above chance
    assert accuracy >= sk_accuracy - 0.02
    assert model.coef_.shape == (len(names), N_FEATURES)
