"""Simple-learner controls: would a learner with no LM inductive bias, given the same data and the same pressure,
show the same behaviour? Where a control reproduces an LM result, the data spoonfed it.

A control meets every training phase the LM meets (`Phase.control`): it learns from (problem, prompt, answer)
examples, with weights, and a reward phase asks it for the answers it would give (with their probabilities) to
pay them under the same target as the LM's. It answers the diagnostic problems like the LM, greedily.

* `bigram`: the bigram table, fed the same tokens as the LM. It sees only a prompt's last token, so it can
  follow a policy only where that token tells the answer (short-answer worlds; see examples/verify.toml).
* `policy_choice`: picks, per problem, the honest or the sycophantic answer (or neither) from shallow features
  of the prompt (character n-grams, its length, tags as whole tokens), by naive Bayes fitted on the training
  examples labelled with the policy each example's answer agrees with. An example that agrees with both (an
  easy problem) counts half for each, so equal-fitting data give it no reason to pick, and it answers neither.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from molab.analysis.policy import score
from molab.config import ConfigError
from molab.experiments import check_name
from molab.learners.bigram import BigramTable

NEITHER = ""  # the policy-choice control's answer when it picks neither policy (refused where a policy answers "")


class Control:
    """What every control does: learn weighted examples, propose answers for a reward phase, answer greedily.

    `samples`: whether its proposals are sampled (seeded by the run), so that its runs differ by seed when a phase
    asks for them. A control whose runs cannot differ by seed runs once per pressure (seed 0)."""

    name = ""
    title = ""  # in reports
    marker = "s"  # in plots
    samples = False

    def __init__(self, tokenizer, n_new: int, scorer=score):
        # n_new: the answer budget in tokens; scorer(problem, answer): which policies an answer agrees with
        self.tokenizer, self.n_new, self.scorer = tokenizer, n_new, scorer

    @classmethod
    def check(cls, setup) -> None:
        """Refuse (ConfigError naming `controls`) a world this control cannot run on."""

    def learn(self, examples: list[tuple], weights: list[float] | None = None) -> None:
        """Learn (problem, prompt, answer) examples, each counted `weights[i]` times (default once)."""
        raise NotImplementedError

    def proposals(self, problems: list, prompts: list[str], k: int, rng: np.random.Generator) -> list[list[tuple]]:
        """Per problem, the answers the control would give with their probabilities: [(answer, probability), ...]."""
        raise NotImplementedError

    def answer(self, problems: list, prompts: list[str]) -> list[str]:
        raise NotImplementedError

    def save(self, path: Path) -> str:
        """Write the fitted control under `path` (a stem); returns the file written."""
        raise NotImplementedError


CONTROLS: dict[str, type[Control]] = {}


def register_control(cls: type[Control]) -> type[Control]:
    """Class decorator: `controls = [..., "its name"]` then runs this control beside the LM (an experiment may bring
    its own, in its module)."""
    check_name(CONTROLS, cls, "control")
    CONTROLS[cls.name] = cls
    return cls


@register_control
class BigramControl(Control):
    """The bigram table on the LM's tokens (special tokens and eos included); proposals are `k` sampled answers."""

    name = "bigram"
    title = "bigram-table control"
    samples = True

    def __init__(self, tokenizer, n_new, scorer=score):
        super().__init__(tokenizer, n_new, scorer)
        self.table = BigramTable()

    def learn(self, examples, weights=None):
        from molab.training.phase import token_sequences

        self.table.add(token_sequences(self.tokenizer, [(prompt, answer) for _, prompt, answer in examples]), weights)

    def _generate(self, prompts, rng=None):
        from molab.learners.lm import prompt_ids  # here: a re-analysis imports this module, and no torch

        eos = self.tokenizer.eos_token_id
        return [self.tokenizer.decode(self.table.generate(ids, self.n_new, eos, rng), skip_special_tokens=True)
                for ids in prompt_ids(self.tokenizer, prompts)]

    def proposals(self, problems, prompts, k, rng):
        return [[(a, 1 / k) for a in self._generate([prompt] * k, rng)] for prompt in prompts]

    def answer(self, problems, prompts):
        return self._generate(prompts)

    def save(self, path):
        file = path.with_suffix(".npz")
        np.savez_compressed(file, tokens=self.table.tokens, counts=self.table.counts)
        return str(file)


def prompt_features(prompt: str) -> list[str]:
    """The shallow features of a prompt: its character 1- to 3-grams, its length, and each tag (<...>) whole.

    >>> prompt_features("<cue>7=")
    ['7', '=', '7=', 'len:7', 'tag:<cue>']
    """
    tags = re.findall(r"<[^<>]+>", prompt)
    text = re.sub(r"<[^<>]+>", "", prompt)
    grams = [text[i:i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1)]
    return grams + [f"len:{len(prompt)}"] + [f"tag:{t}" for t in tags]


@register_control
class PolicyChoiceControl(Control):
    """Naive Bayes over `prompt_features`, choosing among the policies an example's answer agrees with."""

    name = "policy_choice"
    title = "policy-choice control"
    marker = "^"

    def __init__(self, tokenizer, n_new, scorer=score):
        super().__init__(tokenizer, n_new, scorer)
        self.rows: list[tuple[str, str, float]] = []  # (prompt, choice, weight)
        self._model = None

    @classmethod
    def check(cls, setup):
        empty = next((p for p in setup.problems() if NEITHER in (p.honest, p.sycophantic)), None)
        if empty is not None:
            raise ConfigError(f"controls: policy_choice answers neither policy with an empty answer, but the world "
                              f"gives the empty answer to {empty.prompt!r}; drop policy_choice from controls")

    def learn(self, examples, weights=None):
        for (problem, prompt, answer), w in zip(examples, weights if weights is not None else [1.0] * len(examples)):
            scores = self.scorer(problem, answer)
            agrees = [c for c in ("honest", "sycophantic") if scores[c]] or ["neither"]
            self.rows += [(prompt, c, w / len(agrees)) for c in agrees if w]
        self._model = None

    @property
    def model(self):
        """The naive Bayes pipeline fitted on every example so far (None before any)."""
        if self._model is None and self.rows:
            from sklearn.feature_extraction.text import CountVectorizer
            from sklearn.naive_bayes import MultinomialNB
            from sklearn.pipeline import make_pipeline

            prompts, choices, weights = zip(*self.rows)
            self._model = make_pipeline(CountVectorizer(analyzer=prompt_features, lowercase=False), MultinomialNB())
            self._model.fit(prompts, choices, multinomialnb__sample_weight=np.array(weights))
        return self._model

    def _probabilities(self, prompts) -> list[dict[str, float]]:
        if self.model is None:
            return [{"neither": 1.0} for _ in prompts]
        return [dict(zip(self.model.classes_, row)) for row in self.model.predict_proba(prompts)]

    @staticmethod
    def _answer_of(problem, choice: str) -> str:
        return {"honest": problem.honest, "sycophantic": problem.sycophantic}.get(choice, NEITHER)

    def proposals(self, problems, prompts, k, rng):
        return [[(self._answer_of(p, c), q) for c, q in probs.items() if q > 0]
                for p, probs in zip(problems, self._probabilities(prompts))]

    def answer(self, problems, prompts):
        """The most probable choice's answer; where honest and sycophantic tie (no reason to pick) and their answers
        differ, neither."""
        out = []
        for p, probs in zip(problems, self._probabilities(prompts)):
            best = max(probs, key=probs.get)
            tie = abs(probs.get("honest", 0) - probs.get("sycophantic", 0)) < 1e-9
            out.append(NEITHER if tie and p.disagree else self._answer_of(p, best))
        return out

    def save(self, path):
        file = path.with_suffix(".pkl")
        file.write_bytes(pickle.dumps(self.model))
        return str(file)
