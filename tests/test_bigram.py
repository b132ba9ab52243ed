from molab.learners.bigram import BigramTable


def test_counts_and_greedy_generation_known_by_hand():
    # tokens: 0 eos, 1 'a', 2 'b', 3 'c'. Data: "a b c <eos>" twice, "a c <eos>" once.
    table = BigramTable().fit([[1, 2, 3, 0], [1, 2, 3, 0], [1, 3, 0]])
    assert [table.count(1, t) for t in range(4)] == [0, 0, 2, 1]   # after 'a': 'b' twice, 'c' once
    assert [table.count(3, t) for t in range(4)] == [3, 0, 0, 0]   # after 'c': always eos
    assert table.generate([1], max_new_tokens=5, eos_id=0) == [2, 3]   # a -> b -> c -> eos
    assert table.generate([3], max_new_tokens=5, eos_id=0) == []
    # a token never seen as a context falls back to the most common next token overall (eos, 3 times)
    assert table.generate([0], 1, eos_id=-1) == [0] and table.generate([99], 1, eos_id=-1) == [0]


def test_weighted_counts_and_sampling_follow_the_weights():
    import numpy as np

    table = BigramTable().fit([[1, 2, 0], [1, 3, 0]], weights=[1.0, 3.0])
    assert table.count(1, 3) == 3.0 and table.generate([1], 5, eos_id=0) == [3]
    table.add([[1, 2, 0]], [4.0])  # now 'b' (5) beats 'c' (3) after 'a'
    assert table.generate([1], 5, eos_id=0) == [2]
    rng = np.random.default_rng(0)
    share = np.mean([table.generate([1], 5, eos_id=0, rng=rng) == [2] for _ in range(4000)])
    assert abs(share - 5 / 8) < 0.03


def test_large_token_ids_cost_only_what_is_seen():
    table = BigramTable().fit([[50_000, 7, 50_000, 7, 50_000, 1]])
    assert table.counts.shape == (3, 3)
    assert table.generate([50_000], max_new_tokens=3, eos_id=1) == [7, 50_000, 7]


def test_adding_new_tokens_grows_the_table_and_keeps_ties_to_the_lowest_id():
    table = BigramTable().add([[5, 9, 0]])
    table.add([[5, 7, 0]])   # 7 is new: a row and column of its own, sorted before 9
    assert list(table.tokens) == [0, 5, 7, 9]
    assert table.count(5, 9) == table.count(5, 7) == 1
    assert table.generate([5], 1, eos_id=0) == [7]   # a tie goes to the lowest id


def test_a_table_that_has_seen_nothing_answers_nothing():
    # a control run at zero pressure of a conditional organism learns no example at all
    assert BigramTable().generate([5], max_new_tokens=3, eos_id=0) == []
    assert BigramTable().fit([]).generate([5], 3, eos_id=0, rng=__import__("numpy").random.default_rng(0)) == []
