"""scikit-learn's own estimator checks, run on every fastdp estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastdp.estimators import LinearRegression, LinearSVC, LogisticRegression, Ridge

ESTIMATORS = [LinearRegression(), Ridge(), LogisticRegression(), LinearSVC()]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
