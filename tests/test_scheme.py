import pytest

from molab.config import SchemeConfig
from molab.worlds import ArithmeticOverseer, ArithmeticWorld
from molab.worlds.scheme import training_data

WORLD = ArithmeticWorld(digits=3, operations=("+", "-"), n_diagnostic=32)


def test_easy_problems_labelled_by_the_overseer_are_all_correct():
    data = training_data(WORLD, ArithmeticOverseer(competence=1), SchemeConfig(n_train=300), seed=0)
    assert len(data) == 300
    assert {p.difficulty for p, _ in data} == {0, 1}
    assert all(label == p.honest == p.sycophantic for p, label in data)


@pytest.mark.parametrize("labeler,field", [("gold", "honest"), ("overseer", "sycophantic")])
def test_labeler_decides_labels_on_hard_problems(labeler, field):
    scheme = SchemeConfig(difficulties=(2, 3), labeler=labeler, confident_only=False, n_train=100)
    data = training_data(WORLD, ArithmeticOverseer(competence=1), scheme, seed=0)
    assert all(p.difficulty in (2, 3) and p.disagree for p, _ in data)
    assert all(label == getattr(p, field) for p, label in data)


def test_confident_only_filters_by_overseer_competence():
    scheme = SchemeConfig(difficulties=(0, 1, 2), confident_only=True, n_train=200)
    assert {p.difficulty for p, _ in training_data(WORLD, ArithmeticOverseer(competence=0), scheme)} == {0}
    assert {p.difficulty for p, _ in training_data(WORLD, ArithmeticOverseer(competence=2), scheme)} == {0, 1, 2}


def test_breadth_and_determinism():
    scheme = SchemeConfig(digits=(1, 2), operations=("-",), n_train=100)
    data = training_data(WORLD, ArithmeticOverseer(competence=1), scheme, seed=5)
    assert all(p.operation == "-" and p.digits <= 2 for p, _ in data)
    assert data == training_data(WORLD, ArithmeticOverseer(competence=1), scheme, seed=5)
    assert data != training_data(WORLD, ArithmeticOverseer(competence=1), scheme, seed=6)


def test_scheme_admitting_nothing_says_so():
    scheme = SchemeConfig(difficulties=(9,), confident_only=False, n_train=10)
    with pytest.raises(ValueError, match="only 0 of 10 problems admitted"):
        training_data(WORLD, ArithmeticOverseer(competence=1), scheme, max_draws=2000)
