from molab.learners.bigram import BigramTable


def test_counts_and_greedy_generation_known_by_hand():
    # tokens: 0 eos, 1 'a', 2 'b', 3 'c'. Data: "a b c <eos>" twice, "a c <eos>" once.
    table = BigramTable(4).fit([[1, 2, 3, 0], [1, 2, 3, 0], [1, 3, 0]])
    assert table.counts[1].tolist() == [0, 0, 2, 1]   # after 'a': 'b' twice, 'c' once
    assert table.counts[3].tolist() == [3, 0, 0, 0]   # after 'c': always eos
    assert table.generate([1], max_new_tokens=5, eos_id=0) == [2, 3]   # a -> b -> c -> eos
    assert table.generate([3], max_new_tokens=5, eos_id=0) == []
    # a token never seen as a context falls back to the most common next token overall (eos, 3 times)
    assert table.next_token(0) == 0


def test_generation_stops_at_max_new_tokens():
    table = BigramTable(3).fit([[1, 2, 1, 2, 1]])
    assert table.generate([1], max_new_tokens=3, eos_id=0) == [2, 1, 2]
