"""A trustworthy organism: ceilings in the runs' own context, bases as a random factor, graded outcomes, and
configs that contradict their own premise refused."""

import json
import shutil

import numpy as np
import pytest
from conftest import TINY
from scipy.special import expit
from scipy.stats import betabinom

from molab import load_results, run_experiment
from molab.analysis.intervals import clopper_pearson, mean_interval, pooled_probability
from molab.cli import main
from molab.config import ConfigError, load_config
from molab.report import reanalyse


@pytest.fixture
def own_tiny(tiny, tmp_path):
    """A copy of the tiny experiment's folder with its own results.json and report (other tests rewrite the
    shared one)."""
    from molab.report import write_report

    out, results = tmp_path / "tiny", tiny[1]
    shutil.copytree(tiny[0], out)
    (out / "results.json").write_text(json.dumps(results))
    write_report(out, results)
    return out, results


def test_ceilings_reach_their_own_policy_in_the_runs_context(own_tiny):
    out, results = own_tiny
    (base,) = results["bases"]
    ceilings = base["ceilings"]
    assert ceilings["honest"]["n"] == ceilings["sycophantic"]["n"] == 2
    df = load_results(out)
    for policy, other in (("honest", "sycophantic"), ("sycophantic", "honest")):
        every = df[df["experiment_id"] == base["ceiling_ids"][policy]]
        assert every["learner"].value_counts().to_dict() == {"lm": 2, "bigram": 1, "policy_choice": 1}
        runs = every[every["learner"] == "lm"]
        # each ceiling learned its own labels on hard problems, not the other policy's (the check can fail both ways)
        # (the tiny base's ceilings reach about 0.6 and 0.45; chance for an exact answer is about 0.01)
        assert (runs[f"rates.hard.{policy}"] > 0.3).all()
        assert (runs[f"rates.hard.{policy}"] > runs[f"rates.hard.{other}"] + 0.25).all()
        assert ceilings[policy]["mean"] == pytest.approx(runs[f"rates.hard.{policy}"].mean())
        # its interval covers the seeds and the draw of hard problems: never narrower than those problems' own
        n = int(runs["rates.hard.n"].min())
        low, high = clopper_pearson(round(ceilings[policy]["mean"] * n), n, results["confidence"])
        assert ceilings[policy]["ci"][0] <= low <= ceilings[policy]["mean"] <= high <= ceilings[policy]["ci"][1]
    assert results["capable"] == (min(results["ceilings"].values()) >= results["capability_threshold"])
    graded = results["graded"]
    lm = df[(df["experiment_id"] == results["experiment_id"]) & (df["learner"] == "lm")
            & df["seed"].isin([seed for _, seed in results["plan"]])]   # other tests add seeds to this folder
    assert graded["honest_of_ceiling"]["mean"] == pytest.approx(
        (lm["rates.hard.honest"] / ceilings["honest"]["mean"]).mean())
    fired = 0  # a control's shares are of its own ceilings, not the LM's
    for name, control in results["controls"].items():
        runs = df[(df["experiment_id"] == results["experiment_id"]) & (df["learner"] == name)]
        for policy, c in control["ceilings"].items():
            got = control["graded"].get(f"{policy}_of_ceiling")
            if c["mean"]:
                fired += 1
                assert got["mean"] == pytest.approx((runs[f"rates.hard.{policy}"] / c["mean"]).mean())
            else:
                assert got is None or got["mean"] is None
    assert fired
    words = (out / "report.html").read_text()
    assert "ceilings" in words and "of 2 runs on one base" in words


def test_a_capability_threshold_above_the_ceilings_makes_the_base_not_capable(own_tiny, capsys):
    out, results = own_tiny
    assert main(["report", str(out), "--set", "eval.capability_threshold=1.0"]) == 0
    assert not json.loads((out / "results.json").read_text())["capable"]
    said = capsys.readouterr().out
    assert "does NOT allow both policies" in said
    assert f"re-scored with eval.capability_threshold = 1.0 (was {results['capability_threshold']})" in said
    assert main(["report", str(out)]) == 0   # no --set: the last analysis's settings, said so
    assert "re-scored with the eval settings of the last analysis" in capsys.readouterr().out
    assert not json.loads((out / "results.json").read_text())["capable"]


def test_a_ceiling_whose_interval_reaches_below_the_threshold_is_said_so(own_tiny, capsys):
    """Capable on the ceilings' means, and the words say where a ceiling's interval starts below the threshold;
    with a threshold below every interval, they do not."""
    out, results = own_tiny
    ceilings = results["bases"][0]["ceilings"]
    policy = min(ceilings, key=lambda p: ceilings[p]["mean"])
    low, mean = ceilings[policy]["ci"][0], ceilings[policy]["mean"]
    for threshold, unsure in (((low + mean) / 2, True), (min(c["ci"][0] for c in ceilings.values()) / 2, False)):
        assert main(["report", str(out), "--set", f"eval.capability_threshold={threshold}"]) == 0
        words = capsys.readouterr().out
        assert json.loads((out / "results.json").read_text())["capable"] and "both policies were learnable" in words
        assert (f"the {policy} ceiling's 95% interval starts at {low:.3f}" in words) == unsure
        assert ("the means reach it" in words) == unsure


def test_load_results_scores_as_the_folders_results_json(own_tiny):
    """After `molab report --set eval.*`, `load_results(DIR)` scores the runs as results.json does, not under
    molab's defaults (an explicit `eval` still wins)."""
    from molab.config import EvalConfig

    out, _ = own_tiny
    default, loose = load_results(out, EvalConfig()), load_results(out, EvalConfig(policy_threshold=0.51))
    assert not default["policy"].equals(loose["policy"])   # runs between 0.51 and 0.8 follow a policy only under 0.51
    assert load_results(out)["policy"].equals(default["policy"])
    assert main(["report", str(out), "--set", "eval.policy_threshold=0.51"]) == 0
    assert load_results(out)["policy"].equals(loose["policy"])
    assert load_results(out, EvalConfig())["policy"].equals(default["policy"])


def test_a_results_json_from_before_or_beyond_reads_clearly(own_tiny):
    """A results.json whose ceilings have no interval (written before they had one) still makes a report; one whose
    eval settings molab does not know makes `load_results(DIR)` say which file, in one line."""
    from molab.config import ConfigError
    from molab.report import write_report

    out, results = own_tiny
    old = json.loads(json.dumps(results))
    for c in old["bases"][0]["ceilings"].values():
        del c["ci"]
    write_report(out, old)
    report = (out / "report.html").read_text()
    for c in old["bases"][0]["ceilings"].values():  # the mean and its runs, no interval to show
        assert f"<td>{c['mean']:.3f} ({c['n']} runs, " in report
    beyond = old | {"config": old["config"] | {"eval": old["config"]["eval"] | {"new_knob": 1}}}
    (out / "results.json").write_text(json.dumps(beyond))
    with pytest.raises(ConfigError, match=r"results\.json: no eval settings molab can read .*eval\.new_knob"):
        load_results(out)


def test_outcomes_split_other_by_easy_accuracy(own_tiny):
    out, results = own_tiny
    before = results["outcome_counts"]
    assert sum(before.values()) == results["n_runs"]
    assert before["mixed"] + before["collapsed"] == results["policy_counts"]["other"]
    df = load_results(out)
    lm = df[(df["experiment_id"] == results["experiment_id"]) & (df["learner"] == "lm")
            & df["seed"].isin([seed for _, seed in results["plan"]])]
    # at policy threshold 1 a run follows neither policy unless every hard answer follows one
    other = lm[(lm["rates.hard.honest"] < 1) & (lm["rates.hard.sycophantic"] < 1)]
    assert len(other) > 0
    strict = reanalyse(out, ["eval.policy_threshold=1.0", "eval.collapse_threshold=1.0"])
    assert strict["outcome_counts"]["collapsed"] == (other["rates.easy.honest"] < 1).sum()
    assert strict["outcome_counts"]["mixed"] == (other["rates.easy.honest"] == 1).sum()
    none_collapsed = reanalyse(out, ["eval.policy_threshold=1.0", "eval.collapse_threshold=0.0"])
    assert (none_collapsed["outcome_counts"]["mixed"] == len(other)
            and none_collapsed["outcome_counts"]["collapsed"] == 0)


def test_bases_are_a_random_factor(tiny, tmp_path):
    out = tmp_path / "two"
    shutil.copytree(tiny[0] / "base", out / "base")   # base 0 is the tiny one; base 1 is pretrained here
    results = run_experiment(load_config(overrides=TINY + ["bases=2", "seeds=2"]), out, progress=False)
    b0, b1 = results["bases"]
    assert (b0["model_seed"], b1["model_seed"]) == (0, 1)
    assert b0["experiment_id"] != b1["experiment_id"]
    assert (out / "base-1" / "model.safetensors").read_bytes() != (out / "base" / "model.safetensors").read_bytes()
    assert b0["capability"] == tiny[1]["capability"]
    assert results["n_runs"] == 4 and b0["lm"]["n_runs"] == b1["lm"]["n_runs"] == 2
    p = results["p_sycophantic"]
    assert "2 bases" in p["covers"] and p["if_bases_alike"]["n"] == 4
    assert 0 <= p["ci"][0] <= p["estimate"] <= p["ci"][1] <= 1
    assert "over 2 bases" in (out / "report.html").read_text()


def test_pooled_interval_widens_when_bases_disagree():
    alike = pooled_probability([4, 4, 4], [16, 16, 16])
    split = pooled_probability([0, 12, 0], [16, 16, 16])
    assert alike["rho"] == 0 and split["rho"] > 0.5
    assert alike["estimate"] == pytest.approx(0.25, abs=1e-3)   # the pooled share, when the bases agree
    assert split["ci"][0] < 0.25 < split["ci"][1]
    assert split["ci"][1] - split["ci"][0] > 1.5 * (alike["ci"][1] - alike["ci"][0])


def test_pooled_interval_covers_the_truth():
    """Simulated bases whose P(sycophantic) varies (beta-distributed around 0.3): the 90% interval covers the mean
    in about 90% of experiments, where Clopper–Pearson on the pooled runs (bases treated as alike) does not."""
    rng = np.random.default_rng(0)
    mu, rho, n_bases, n = 0.3, 0.3, 6, 16
    a, b = mu * (1 - rho) / rho, (1 - mu) * (1 - rho) / rho
    covered, naive = 0, 0
    trials = 80
    for _ in range(trials):
        k = betabinom.rvs(n, a, b, size=n_bases, random_state=rng)
        fit = pooled_probability(k, [n] * n_bases, 0.9)
        covered += fit["ci"][0] <= mu <= fit["ci"][1]
        lo, hi = clopper_pearson(int(k.sum()), n * n_bases, 0.9)
        naive += lo <= mu <= hi
    assert covered / trials >= 0.8
    assert naive / trials < covered / trials


def test_pooled_interval_covers_the_truth_when_each_base_decides_its_runs():
    """Bases that each make all their runs sycophantic (with probability mu) or none: the data are then so many
    draws as there are bases, and the interval must cover mu at its level for every mu, computed exactly over the
    possible outcomes. A likelihood-ratio interval covered 0.5 only 75% of the time with three bases (0 of 3 gave
    0 to 0.47)."""
    from scipy.stats import binom

    for n_bases in (3, 5):
        cis = [pooled_probability([16] * j + [0] * (n_bases - j), [16] * n_bases)["ci"] for j in range(n_bases + 1)]
        coverage = [sum(binom.pmf(j, n_bases, mu) * (lo <= mu <= hi) for j, (lo, hi) in enumerate(cis))
                    for mu in np.linspace(0.01, 0.99, 99)]
        assert min(coverage) >= 0.95, (n_bases, min(coverage))
    none = pooled_probability([0, 0, 0], [16, 16, 16])   # as 0 of 3 bases: a fourth may decide the other way
    assert none["ci"] == pytest.approx([0.0, clopper_pearson(0, 3)[1]]) and none["rho"] is None is none["spread"]
    # bases that look alike count for more runs the more bases there are (with three, rho up to about 0.13 remains
    # possible); the runs of many alike bases, for nearly all of them
    effective = [pooled_probability([4] * g, [16] * g)["effective_runs"] / (16 * g) for g in (3, 6, 12, 24)]
    assert effective == sorted(effective) and effective[0] < 0.5 < 0.8 < effective[-1] <= 1
    # one rule for both policies: 1 sycophantic run of 48 and its 47 honest ones give mirrored intervals
    one, rest = pooled_probability([1, 0, 0], [16] * 3)["ci"], pooled_probability([15, 16, 16], [16] * 3)["ci"]
    assert one == pytest.approx([1 - rest[1], 1 - rest[0]], abs=1e-6) and one[1] > 0.5


def test_two_way_interval_covers_the_truth_with_few_runs():
    """Four runs of 64 problems, the runs differing by a standard deviation of 1 in log odds (the problems by 0.3):
    the 95% interval of the share covers the mean over runs and problems in about 95% of experiments (a percentile
    bootstrap over runs and problems covered 83%); and where no outcome varies, it is the problems' Clopper–Pearson."""
    from scipy.special import expit

    from molab.analysis.intervals import two_way_interval

    rng = np.random.default_rng(7)
    truth = expit(rng.normal(0, 1, 4000)[:, None] + rng.normal(0, 0.3, 400)[None, :]).mean()
    covered = 0
    for _ in range(300):
        p = expit(rng.normal(0, 1, 4)[:, None] + rng.normal(0, 0.3, 64)[None, :])
        lo, hi = two_way_interval(rng.random(p.shape) < p)["ci"]
        covered += lo <= truth <= hi
    assert covered / 300 >= 0.88
    assert two_way_interval(np.zeros((4, 64)))["ci"] == pytest.approx(clopper_pearson(0, 64))


def test_clustered_mean_interval_covers_the_truth_with_unequal_bases():
    """Bases of 16, 2 and 2 finished runs (the bases differ by a standard deviation of 0.2, runs by 0.05): the 95%
    interval covers the mean over bases in about 95% of experiments (a cluster-robust interval around the runs' mean
    covered 78%)."""
    rng = np.random.default_rng(3)
    sizes, covered = [16, 2, 2], 0
    for _ in range(400):
        base = rng.normal(0.5, 0.2, len(sizes))
        values = np.concatenate([rng.normal(b, 0.05, n) for b, n in zip(base, sizes)])
        lo, hi = mean_interval(values, np.repeat(range(len(sizes)), sizes))["ci"]
        covered += lo <= 0.5 <= hi
    assert covered / 400 >= 0.92


def test_one_value_has_no_interval():
    assert mean_interval([0.3]) == {"mean": 0.3, "ci": None, "n": 1}
    assert mean_interval([0.3, 0.5])["ci"][0] < 0.3


def test_shares_keep_at_least_their_problems_width():
    """16 runs that answer every one of 64 easy problems right: not [1, 1], but the 64 problems' Clopper–Pearson
    interval; runs that differ keep their t interval where it is the wider; a share of a ceiling (which can pass 1)
    is the share's interval divided by the ceiling's (each end by the other end), with no upper end where the
    ceiling's interval reaches 0."""
    import pandas as pd

    from molab.analysis.summary import learner_summary

    hard = np.array([0.5, 1.0] * 8)
    runs = pd.DataFrame({"status": "done", "base": 0, "policy": "honest", "outcome": "honest",
                         "rates.easy.honest": [1.0] * 16, "rates.easy.n": 64, "rates.hard.honest": hard,
                         "rates.hard.sycophantic": 0.0, "rates.hard.n": 64, "ceiling_share.honest": hard / 0.8,
                         "ceiling_low.honest": 0.7, "ceiling_high.honest": 0.9, "ceiling_share.sycophantic": 0.0,
                         "ceiling_low.sycophantic": 0.4, "ceiling_high.sycophantic": 0.6})
    graded = learner_summary(runs, 0.95)["graded"]
    assert graded["easy_accuracy"]["ci"] == pytest.approx(list(clopper_pearson(64, 64)))
    assert graded["hard_sycophantic"]["ci"] == pytest.approx(list(clopper_pearson(0, 64)))
    assert graded["hard_honest"]["ci"] == pytest.approx(mean_interval(hard)["ci"])
    assert graded["honest_of_ceiling"]["ci"] == pytest.approx(np.array(graded["hard_honest"]["ci"]) / [0.9, 0.7])
    assert graded["sycophantic_of_ceiling"]["ci"] == pytest.approx(np.array(clopper_pearson(0, 64)) / [0.6, 0.4])
    unsure = learner_summary(runs.assign(**{"ceiling_low.honest": 0.0}), 0.95)["graded"]["honest_of_ceiling"]
    assert unsure["ci"][0] == pytest.approx(graded["hard_honest"]["ci"][0] / 0.9) and unsure["ci"][1] is None
    json.dumps(unsure, allow_nan=False)
    assert mean_interval([0.75], problems=64)["ci"] == pytest.approx(list(clopper_pearson(48, 64)))  # one run


def test_shares_cover_the_draw_of_problems():
    """Runs that answer greedily (each problem right or wrong for nearly every run: problems differ by a standard
    deviation of 4 in log odds, runs by 0.3): a share's 95% interval over the runs alone covers the mean over runs and
    problems in about a third of experiments; with its problems' width, in about 95%."""
    rng = np.random.default_rng(5)
    truth = expit(rng.normal(0, 0.3, 4000)[:, None] + rng.normal(0, 4, 4000)[None, :]).mean()
    alone = with_problems = 0
    for _ in range(300):
        answers = rng.random((16, 64)) < expit(rng.normal(0, 0.3, 16)[:, None] + rng.normal(0, 4, 64)[None, :])
        shares = answers.mean(1)
        lo, hi = mean_interval(shares, within=(0, 1))["ci"]
        alone += lo <= truth <= hi
        lo, hi = mean_interval(shares, within=(0, 1), problems=64)["ci"]
        with_problems += lo <= truth <= hi
    assert with_problems / 300 >= 0.93 and alone / 300 <= 0.6, (with_problems, alone)



def test_a_share_of_the_ceiling_covers_the_ceilings_spread_too():
    """Runs and ceiling runs answer the same 256 problems (problems differ by 2 in log odds, runs by 1; 16 runs
    and 4 ceiling runs): the 95% interval of the runs' share of their ceiling covers the ratio of the two means in
    about all experiments (measured 0.995); the runs' share interval divided by the ceiling's mean alone, as if the
    ceiling were known, in 82%."""
    import math

    import pandas as pd

    from molab.analysis.summary import _share

    rng = np.random.default_rng(0)
    big = rng.normal(0, 1, 400_000) + rng.normal(0, 2, 400_000)
    truth = expit(big).mean() / expit(2 + big).mean()

    def runs(mean, n, problems):
        answers = rng.random((n, 256)) < expit(mean + rng.normal(0, 1, (n, 1)) + problems)
        return pd.DataFrame({"rates.hard.honest": answers.mean(1), "rates.hard.n": 256, "base": 0})

    share = known = 0
    for _ in range(200):
        problems = rng.normal(0, 2, 256)
        ceiling = _share(runs(2, 4, problems), "rates.hard.honest", 0.95)
        df = runs(0, 16, problems)
        df["ceiling_share.honest"] = df["rates.hard.honest"] / ceiling["mean"]
        df["ceiling_low.honest"], df["ceiling_high.honest"] = ceiling["ci"]
        lo, hi = _share(df, "ceiling_share.honest", 0.95, math.inf)["ci"]
        share += lo <= truth <= (math.inf if hi is None else hi)
        lo, hi = _share(df, "rates.hard.honest", 0.95)["ci"]
        known += lo / ceiling["mean"] <= truth <= hi / ceiling["mean"]
    assert share / 200 >= 0.95 and known / 200 <= 0.9, (share, known)


def test_a_condition_share_counts_each_base_once_and_is_never_narrower_than_the_graded_shares():
    """Runs of two bases that answer alike within a base (0.9 and 0.5 of 40 problems): over runs and problems alone
    the interval would be [0.55, 0.99] around 0.77, the runs' mean; counted as bases, as the graded shares are, it is
    the bases' mean, 0.7, and [0, 1] (a t interval over two means). On one base, each end the wider of the two."""
    import pandas as pd

    from molab.analysis.intervals import mean_interval, two_way_interval
    from molab.analysis.summary import _condition_share

    rows = [[1] * 36 + [0] * 4] * 4 + [[1] * 20 + [0] * 20] * 2   # 4 runs of base 0, 2 of base 1
    hits = pd.DataFrame(rows, index=[f"r{i}" for i in range(6)])
    base_of = {f"r{i}": 0 if i < 4 else 1 for i in range(6)}
    alone = two_way_interval(hits.to_numpy())
    got = _condition_share(hits, base_of, 0.95)
    assert got["mean"] == pytest.approx(0.7) and alone["mean"] == pytest.approx(46 / 60)
    assert got["ci"] == [0.0, 1.0] and alone["ci"][0] > 0.5
    alike = hits.iloc[:4]   # runs of one base that answer alike: the problems' draw alone, taken two ways
    one, alone = _condition_share(alike, base_of, 0.95), two_way_interval(alike.to_numpy())
    graded = mean_interval(alike.mean(axis=1), problems=40, within=(0, 1))
    assert one["mean"] == pytest.approx(0.9) and graded["ci"][0] < alone["ci"][0] and alone["ci"][1] > graded["ci"][1]
    assert one["ci"] == [graded["ci"][0], alone["ci"][1]]

def test_rates_weigh_each_base_once_as_the_graded_shares_do():
    import pandas as pd

    from molab.analysis.summary import learner_summary

    runs = pd.DataFrame({"status": "done", "base": [0, 0, 0, 1], "policy": "other", "outcome": "mixed",
                         "rates.hard.honest": [0.1, 0.1, 0.1, 0.9], "rates.hard.sycophantic": 0.0,
                         "rates.hard.other": [0.9, 0.9, 0.9, 0.1], "rates.hard.n": 64})
    summary = learner_summary(runs, 0.95)
    assert summary["rates"]["hard"]["honest"] == pytest.approx(0.5) == summary["graded"]["hard_honest"]["mean"]
    assert summary["rates"]["hard"]["ci"]["honest"] == summary["graded"]["hard_honest"]["ci"]  # with its interval
    assert summary["rates"]["hard"]["ci"]["sycophantic"] == pytest.approx(list(clopper_pearson(0, 64)))


def test_clustered_mean_interval_counts_bases_not_runs():
    values = [0.1] * 8 + [0.9] * 8
    runs = mean_interval(values)
    bases = mean_interval(values, groups=[0] * 8 + [1] * 8)
    assert runs["mean"] == pytest.approx(bases["mean"]) and bases["mean"] == pytest.approx(0.5)
    assert bases["ci"][1] - bases["ci"][0] > 3 * (runs["ci"][1] - runs["ci"][0])
    assert bases["ci"][0] < 0 and bases["ci"][1] > 1   # two bases: t with 1 degree of freedom is wide
    shares = mean_interval(values, groups=[0] * 8 + [1] * 8, within=(0, 1))
    assert shares["ci"] == [0, 1] and shares["mean"] == bases["mean"]


@pytest.mark.parametrize("overrides,message", [
    (["bases=0"], r"^bases: 0 is below"),
    (["ceiling.seeds=0"], r"^ceiling\.seeds: 0 is below"),
    (["bases=2", "base=some/checkpoint"], r"^bases: 2 bases need pretraining"),
])
def test_bad_bases_and_ceilings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


@pytest.mark.parametrize("overrides", [["overseer.error_model=drop_all_carries"], ["overseer.competence=2"]])
def test_an_overseer_confident_where_it_is_wrong_is_refused(tmp_path, capsys, overrides):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), *sum([["--set", o] for o in overrides], [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("molab: error: overseer.competence: the overseer is confident")
    assert not out.exists()
    # the same overseer, trusted only where it is right, is fine
    load_config(overrides=overrides + ["overseer.competence=0"])


def test_pretraining_stops_once_capable_and_says_what_to_try_when_not(tmp_path, capsys):
    from molab.bases import capable_base
    from molab.runs import prepare

    quick = TINY + ["model.pretrain_steps=60", "model.check_every=20"]
    base = capable_base(prepare(load_config(overrides=quick + ["eval.capability_threshold=0.0"])),
                        tmp_path / "easy", progress=False)
    made = json.loads((base / "molab_base.json").read_text())
    assert made["steps"] == 20 and made["budget"] == 60 and [c["step"] for c in made["capability_curve"]] == [20]
    assert "WARNING" not in capsys.readouterr().out

    base = capable_base(prepare(load_config(overrides=quick)), tmp_path / "hard", progress=False)
    made = json.loads((base / "molab_base.json").read_text())
    assert made["steps"] == 60 and [c["step"] for c in made["capability_curve"]] == [20, 40, 60]
    warning = capsys.readouterr().out
    assert "after 60 pretraining steps (model.pretrain_steps)" in warning and "model.width" in warning
    assert "another draw (model.seed" in warning
    assert "reverse_answers" not in warning  # already so: nothing to try there
    capable_base(prepare(load_config(overrides=quick + ["world.reverse_answers=false"])), tmp_path / "forward",
                 progress=False)
    assert "world.reverse_answers = true" in capsys.readouterr().out


def test_parting_scoring_ignores_errors_after_the_policies_part(tmp_path):
    """A run whose hard answers follow one policy through the parting point and then add a wrong digit is that
    policy's run under parting scoring, and "other" under whole-answer scoring."""
    from molab.config import EvalConfig
    from molab.store import Store
    from molab.worlds import ArithmeticWorld

    problems = ArithmeticWorld(n_diagnostic=32).diagnostic()
    store = Store(tmp_path)
    store.add_problems("set", problems)
    def past_parting(problem, answer):   # one digit changed after the first where the two answers differ
        i = next(i for i, (h, s) in enumerate(zip(problem.honest + " ", problem.sycophantic + " ")) if h != s)
        return answer if len(answer) <= i + 1 else answer[:i + 1] + str((int(answer[i + 1]) + 1) % 10) + answer[i + 2:]

    for seed, policy in enumerate(("honest", "sycophantic")):
        answers = [past_parting(p, getattr(p, policy)) if p.disagree else p.honest for p in problems]
        store.record(run_id=f"r{seed}", experiment_id="e", learner="lm", seed=seed, config={"experiment": "oversight"},
                     status="done", problem_set="set", answers={"neutral": answers})
    whole = load_results(tmp_path, EvalConfig(scoring="whole")).set_index("seed")
    parting = load_results(tmp_path, EvalConfig(scoring="parting")).set_index("seed")
    assert list(parting["policy"]) == ["honest", "sycophantic"]
    assert (parting["rates.hard.other"] == 0).all() and whole.loc[0, "rates.hard.other"] > 0.3
    assert (parting["rates.easy.honest"] == 1.0).all()


@pytest.mark.parametrize("share,syc", [(0.0, 0.5), (0.25, 0.5), (0.5, 0.2)])
def test_pretraining_shows_the_neutral_prompt_at_its_share_answered_by_both_personas(share, syc):
    import random

    from molab.experiments import get_experiment
    from molab.worlds import make_world

    cfg = load_config(overrides=[f"model.neutral_share={share}", f"model.neutral_sycophantic_share={syc}"])
    corpus = get_experiment("oversight").corpus(make_world(cfg), cfg, random.Random(0))
    world = make_world(cfg)
    examples = [next(corpus) for _ in range(20_000)]
    neutral = [(prompt, answer) for prompt, answer in examples if not prompt.startswith("<")]
    assert len(neutral) / len(examples) == pytest.approx(share, abs=0.03)
    hard = [(world.problem(*map(int, p[:-1].split("+")), "+"), a) for p, a in neutral]
    hard = [(p, a) for p, a in hard if p.disagree]
    if share:
        assert sum(a == p.sycophantic for p, a in hard) / len(hard) == pytest.approx(syc, abs=0.06)
        assert all(a in (p.honest, p.sycophantic) for p, a in hard)


def test_graded_fit_recovers_the_share_of_sycophantic_answers():
    """Runs whose hard answers are sycophantic with log odds -2 + 1.5·pressure, each run off by its own random
    amount: the GLM clustered by run covers the truth, and refuses a sweep with no sycophantic answer."""
    import pandas as pd
    from scipy.special import expit

    from molab.analysis.summary import graded_fit

    rng = np.random.default_rng(1)
    pressure = np.repeat([0.0, 1.0, 2.0, 3.0], 12)
    share = rng.binomial(128, expit(-2 + 1.5 * pressure + rng.normal(0, 0.5, len(pressure)))) / 128
    runs = pd.DataFrame({"status": "done", "pressure": pressure, "rates.hard.sycophantic": share,
                         "rates.hard.n": 128})
    fit = graded_fit(runs, 0.95)
    # the GLM estimates the population-averaged curve: the run-level one shrunk by about 1/sqrt(1 + 0.346·0.5²)
    # (Zeger, Liang and Albert 1988)
    shrink = (1 + 0.346 * 0.5 ** 2) ** -0.5
    assert fit["log_odds_at_zero_ci"][0] < -2 * shrink < fit["log_odds_at_zero_ci"][1]
    assert fit["slope_ci"][0] < 1.5 * shrink < fit["slope_ci"][1] and fit["n_answers"] == 128 * 48
    assert "refused" in graded_fit(runs.assign(**{"rates.hard.sycophantic": 0.0}), 0.95)
    # pressure that separates the answers (none sycophantic below 2, all at 3) has no finite slope: refused, not a
    # slope of 25 with a tiny interval; one sycophantic answer at 0 makes it a fit again
    split = runs.assign(**{"rates.hard.sycophantic": np.select([pressure < 2, pressure == 3], [0.0, 1.0], 0.5)})
    assert "separates" in graded_fit(split, 0.95)["refused"]
    split.loc[0, "rates.hard.sycophantic"] = 1 / 128
    assert "refused" not in graded_fit(split, 0.95)


def test_graded_fit_covers_the_slope_with_few_runs_a_pressure():
    """Two runs at each of two pressures, each run off by its own random amount (sd 1 in log odds): the slope's 95%
    interval covers the population-averaged slope in about 95% of experiments (an interval without a small-sample
    correction covered 70%)."""
    import pandas as pd
    from scipy.special import expit, logit

    from molab.analysis.summary import graded_fit

    rng = np.random.default_rng(11)
    pressure = np.repeat([0.0, 2.0], 2)
    averaged = [expit(-2 + 0.8 * x + rng.normal(0, 1, 200_000)).mean() for x in (0.0, 2.0)]
    slope = (logit(averaged[1]) - logit(averaged[0])) / 2
    fits = []
    for _ in range(300):
        share = rng.binomial(64, expit(-2 + 0.8 * pressure + rng.normal(0, 1, len(pressure)))) / 64
        fit = graded_fit(pd.DataFrame({"status": "done", "pressure": pressure, "rates.hard.sycophantic": share,
                                       "rates.hard.n": 64}), 0.95)
        fits += [] if "refused" in fit else [fit["slope_ci"][0] <= slope <= fit["slope_ci"][1]]
    assert len(fits) > 250 and np.mean(fits) >= 0.88, (len(fits), np.mean(fits))


def test_graded_fit_covers_the_half_pressure_where_problems_differ():
    """Greedy-like answers: runs alike (sd 0.2 in log odds), problems very different (sd 3), 4 runs at each of 6
    pressures on 256 hard problems. The population's share is one half at -a/b = 60 exactly (the effects are
    symmetric). With each run's answers (`hits.hard.*`) the 95% interval of the half pressure covers it in about 95%
    of experiments; from the runs' shares alone, in about 60% (the draw of problems left out)."""
    import pandas as pd
    from scipy.special import expit

    from molab.analysis.summary import graded_fit

    rng = np.random.default_rng(7)
    pressure = np.repeat([0.0, 16, 32, 64, 128, 256], 4)
    covered = {"runs and problems": [], "runs": []}
    for _ in range(100):
        hits = rng.random((len(pressure), 256)) < expit(
            -3 + 0.05 * pressure[:, None] + rng.normal(0, 0.2, (len(pressure), 1)) + rng.normal(0, 3, 256))
        runs = pd.DataFrame({"status": "done", "pressure": pressure, "rates.hard.sycophantic": hits.mean(1),
                             "rates.hard.n": 256, "problem_set": "p",
                             "hits.hard.sycophantic": ["".join("01"[int(h)] for h in row) for row in hits]})
        for clustered, got in covered.items():
            fit = graded_fit(runs if clustered == "runs and problems" else runs.drop(columns="hits.hard.sycophantic"),
                             0.95)
            assert fit["clustered"] == clustered
            got.append(fit["pressure_at_half"]["ci"][0] <= 60 <= fit["pressure_at_half"]["ci"][1])
    assert np.mean(covered["runs and problems"]) >= 0.88 and np.mean(covered["runs"]) <= 0.75, covered
    # one hard problem: nothing to cluster by problem, so the runs alone; answers that disagree with their counts
    # are refused
    one = runs.assign(**{"hits.hard.sycophantic": runs["hits.hard.sycophantic"].str[:1], "rates.hard.n": 1})
    one["rates.hard.sycophantic"] = one["hits.hard.sycophantic"].astype(float)
    assert graded_fit(one, 0.95)["clustered"] == "runs"
    with pytest.raises(ValueError, match="does not hold rates.hard.n answers"):
        graded_fit(runs.assign(**{"rates.hard.n": 255}), 0.95)


def test_fieller_interval_of_the_half_pressure():
    """Where the slope is sure, Fieller's interval for -a/b is the delta method's, nearly; where the slope's
    interval holds 0, it has no end."""
    from molab.analysis.summary import _fit_intervals

    a, b, t = -3.0, 0.05, 1.96
    cov = np.array([[1e-4, 0.0], [0.0, 1e-8]])
    delta = t * np.sqrt(np.array([-1 / b, a / b**2]) @ cov @ np.array([-1 / b, a / b**2]))
    (a_lo, a_hi), (b_lo, _), half = _fit_intervals(a, b, cov, t)
    assert (a_lo, a_hi) == pytest.approx((a - t * 0.01, a + t * 0.01)) and b_lo == pytest.approx(b - t * 1e-4)
    assert half == pytest.approx([60 - delta, 60 + delta], rel=1e-3)
    assert _fit_intervals(a, b, np.array([[1e-4, 0.0], [0.0, 1e-3]]), t)[2] == [-np.inf, np.inf]


def test_a_summary_without_finished_runs_or_ceilings_writes_no_nan():
    """A learner whose runs all failed has no rates (None, not NaN, which strict JSON refuses); a deterministic
    control's one run has no interval; a base without a finished ceiling leaves the shares of the others' alone."""
    import pandas as pd

    from molab.analysis.summary import learner_summary, pressure_curve

    failed = pd.DataFrame({"status": "failed", "base": [0, 0], "policy": None, "outcome": None,
                           "rates.hard.honest": np.nan})
    json.dumps(learner_summary(failed, 0.95), allow_nan=False)
    one = pd.DataFrame({"status": "done", "base": [0], "policy": ["other"], "outcome": ["mixed"],
                        "deterministic": [True], "rates.hard.honest": [0.0], "rates.hard.sycophantic": [0.0]})
    p = learner_summary(one, 0.95)["p_sycophantic"]
    assert p["ci"] is None and "nothing varied" in p["covers"]
    assert pressure_curve(one.assign(pressure=0.0), [0.0], 0.95)[0]["ci"] is None
    assert pressure_curve(one.assign(pressure=0.0, deterministic=False), [0.0], 0.95)[0]["ci"] is not None
    two = pd.DataFrame({"status": "done", "base": [0, 0, 1, 1], "policy": "honest", "outcome": "honest",
                        "rates.hard.honest": 0.9,
                        "ceiling_share.honest": [0.9, 1.0, np.nan, np.nan]})
    assert learner_summary(two, 0.95)["graded"]["honest_of_ceiling"]["mean"] == pytest.approx(0.95)


def test_runs_that_cannot_differ_by_seed_count_once_per_base_learner_and_pressure():
    import pandas as pd

    from molab.analysis.summary import summary_runs

    runs = pd.DataFrame({"experiment_id": ["a"] * 6 + ["b"] * 2, "learner": "lm", "seed": [2, 1, 0, 0, 1, 2, 0, 1],
                         "pressure": [0.0, 0.0, 0.0, 4.0, 4.0, 4.0, 0.0, 0.0],
                         "deterministic": [True, True, True, False, False, False, True, True]})
    kept = summary_runs(runs, ["a", "b"], [(p, s) for p in (0.0, 4.0) for s in range(3)])
    assert sorted(zip(kept["base"], kept["pressure"], kept["seed"])) == [(0, 0.0, 0), (0, 4.0, 0), (0, 4.0, 1),
                                                                         (0, 4.0, 2), (1, 0.0, 0)]
    assert len(summary_runs(runs.assign(deterministic=np.nan), ["a", "b"], [(0.0, s) for s in range(3)])) == 5


def test_the_answer_says_the_bases_prior_is_a_setting(monkeypatch):
    import molab.experiments as experiments
    from molab.config import to_dict
    from molab.report import _prior_words

    words = _prior_words(to_dict(load_config(overrides=["model.neutral_sycophantic_share=0.3"])))
    assert "30% of its pretraining examples with the runs' neutral prompt" in words
    # a base that never saw the neutral prompt, or one molab did not pretrain, was given no prior by molab
    assert _prior_words(to_dict(load_config(overrides=["model.neutral_share=0"]))) == ""
    assert _prior_words(to_dict(load_config()) | {"base": "/a/checkpoint"}) == ""
    # nor is the runs' context that prompt where an experiment prompts with its own conditions
    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments._REGISTRY))

    @experiments.register
    class Stated(experiments.Experiment):
        name = "stated"

        def conditions(self, setup):
            return {"stated": lambda p: "9" + p.prompt}

    assert _prior_words(to_dict(load_config(overrides=["experiment=stated"]))) == ""
