"""Linear probes on a transformers model's activations: can a logistic regression on one layer's hidden states tell
two kinds of input apart (a trigger present or absent; the model about to give the bad answer or not)?

`hidden_states` reads every layer's hidden state at the last token of each text (`output_hidden_states`; prompts
are grouped by length, so nothing is padded). `probe` fits scikit-learn's logistic regression on a stratified half of
the examples and scores the other half by AUROC, with a percentile bootstrap interval over the held-out examples;
`transfer` fits on one set (e.g. generic contrast pairs that never show the trigger) and scores on another.
An AUROC of 0.5 is chance; one far below 0.5 is a direction learnt the other way round.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

N_BOOT = 1000


def hidden_states(model, tokenizer, prompts: list[str], answers: list[str] | None = None,
                  batch_size: int = 256) -> np.ndarray:
    """Hidden states, shape (layers + 1, texts, width), at the last token of each prompt as the model reads it
    (`prompt_ids`), or of prompt + answer when `answers` are given; layer 0 is the embeddings, layer L the last
    block's output."""
    import torch

    from molab.learners.lm import prompt_ids

    ids = prompt_ids(tokenizer, prompts)
    if answers is not None:
        ids = [p + a for p, a in zip(ids, tokenizer(answers, add_special_tokens=False).input_ids, strict=True)]
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(ids):
        by_length.setdefault(len(seq), []).append(i)
    out, was_training = None, model.training
    model.eval()
    with torch.no_grad():
        for members in by_length.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                batch = torch.tensor([ids[i] for i in chunk], device=model.device)
                states = model(input_ids=batch, output_hidden_states=True).hidden_states
                last = torch.stack([s[:, -1].float() for s in states]).cpu().numpy()  # (layers + 1, chunk, width)
                if out is None:
                    out = np.zeros((last.shape[0], len(ids), last.shape[2]), dtype=np.float32)
                out[:, chunk] = last
    model.train(was_training)
    return out


def auroc(labels, scores, seed: int = 0, confidence: float = 0.95, n_boot: int = N_BOOT) -> dict:
    """AUROC of `scores` for binary `labels` (the Mann–Whitney statistic, ties counted half) and its percentile
    bootstrap interval over the examples; None where one class is missing."""
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    if y.all() or not y.any():
        return {"auroc": None, "ci": None, "n": len(y)}

    def stat(yy, ss):  # rows of resamples
        n1 = yy.sum(1)
        ranks = rankdata(ss, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return ((ranks * yy).sum(1) - n1 * (n1 + 1) / 2) / (n1 * (yy.shape[1] - n1))

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(y), size=(n_boot, len(y)))
    boot = stat(y[rows], s[rows])
    boot = boot[np.isfinite(boot)]  # resamples that drew one class only say nothing
    tail = (1 - confidence) / 2
    return {"auroc": float(stat(y[None], s[None])[0]), "ci": [float(np.quantile(boot, tail)),
                                                             float(np.quantile(boot, 1 - tail))], "n": len(y)}


def _fit(features, labels):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, labels)


def transfer(train_x, train_y, test_x, test_y, seed: int = 0, confidence: float = 0.95) -> dict:
    """A probe fitted on (train_x, train_y) and scored on (test_x, test_y): `auroc` of its decision function there,
    with its interval; None where either set lacks a class."""
    if len(set(np.asarray(train_y).tolist())) < 2:
        return {"auroc": None, "ci": None, "n": len(test_y)}
    return auroc(test_y, _fit(train_x, train_y).decision_function(test_x), seed, confidence)


def probe(features, labels, seed: int = 0, confidence: float = 0.95) -> dict:
    """A probe fitted on a stratified half of the examples (seeded) and scored on the other half (`transfer`); None
    where a class has fewer than 4 examples (no held-out half to score)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, dtype=bool)
    if min(y.sum(), (~y).sum()) < 4:
        return {"auroc": None, "ci": None, "n": len(y)}
    train_x, test_x, train_y, test_y = train_test_split(np.asarray(features), y, test_size=0.5, stratify=y,
                                                        random_state=seed)
    return transfer(train_x, train_y, test_x, test_y, seed, confidence)
