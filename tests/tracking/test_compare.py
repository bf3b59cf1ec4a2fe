"""peftsearch compare: planted effects on synthetic scores (200 seeded replications each), the
command end to end on a tracking database MLflow wrote, and the fairness audit with --strict."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from tracking.compare import CompareOptions, budget_comparison
from tracking.runs import PARENT_TAG, tag

REPS, N = 200, 50
OPTIONS = CompareOptions(resamples=300)  # the defaults otherwise: level 0.95, alpha 0.05


def _replicate(draw_a, draw_b, check) -> float:
    hits = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for r in range(REPS):
            rng = np.random.default_rng(r)
            curve, _ = budget_comparison(draw_a(rng).round(3), draw_b(rng).round(3), OPTIONS, seed=r)
            hits += bool(check(curve))
    return hits / REPS


def test_identical_distributions_are_not_called_at_any_budget():
    rate = _replicate(lambda g: g.normal(0.70, 0.02, N), lambda g: g.normal(0.70, 0.02, N),
                      lambda c: not (c["a_wins"].any() or c["b_wins"].any()))
    assert rate >= 0.95, rate


def test_a_shifted_method_is_called_better_where_the_data_can_tell():
    """A = B + 0.03 (1.5 sd): better at every budget. The top of an EVP curve (k near N) rests on
    a few order statistics, so the check is k <= 0.3 N; B is never called better anywhere."""
    rate = _replicate(lambda g: g.normal(0.73, 0.02, N), lambda g: g.normal(0.70, 0.02, N),
                      lambda c: c["a_wins"].to_numpy()[: int(0.3 * N)].all() and not c["b_wins"].any())
    assert rate >= 0.95, rate


def test_crossing_curves_a_wins_small_budgets_only():
    """A: higher mean, tiny variance; B: lower mean, large variance. A is ahead at k = 1, B from
    k ≈ 3 (E[max] of B grows with its spread). A must be called at k = 1 and never from k = 10."""
    rate = _replicate(lambda g: g.normal(0.75, 0.005, N), lambda g: g.normal(0.70, 0.08, N),
                      lambda c: c["a_wins"].iat[0] and not c["a_wins"].to_numpy()[9:].any()
                      and (c["evp_b"] > c["evp_a"]).to_numpy()[9:].all())
    assert rate >= 0.95, rate


TOP = 0.80  # the best score either method can reach


def _steady_with_rare_top(g, n: int) -> np.ndarray:
    """Mostly N(0.70, 0.005), and 5% of trials reach TOP: slow to gain at small k, best at large."""
    return np.where(g.random(n) < 0.05, TOP, g.normal(0.70, 0.005, n))


def _spread_capped(g, n: int) -> np.ndarray:
    return np.minimum(g.normal(0.705, 0.05, n), TOP)


def _true_evp(k: int, cdf) -> float:
    """E[best of k] of a distribution on [0.4, TOP], by quadrature: TOP - ∫ F(x)^k dx."""
    from scipy import integrate

    return TOP - integrate.quad(lambda x: cdf(x) ** k, 0.4, TOP, limit=200)[0]


def test_a_method_ahead_only_over_middle_budgets_is_named_there():
    """B (spread, capped at TOP) is truly ahead of A (steady, 5% at TOP) only over a middle range
    of budgets: level at k = 1, B ahead from k = 2, A slightly ahead again once it is sure to draw
    TOP. The sentence must name B's budgets as the compute-budget sentence does, not say "not
    separated". Measured: 10 of 12 replications called B over a middle range only."""
    from types import SimpleNamespace

    from scipy import stats

    from tracking.compare import sentence

    cdf_a = lambda x: 0.95 * stats.norm.cdf(x, 0.70, 0.005) + 0.05 * (x >= TOP)  # noqa: E731
    cdf_b = lambda x: stats.norm.cdf(x, 0.705, 0.05) if x < TOP else 1.0  # noqa: E731
    ahead = [k for k in range(1, 201) if _true_evp(k, cdf_b) > _true_evp(k, cdf_a)]
    assert ahead[0] == 2 and ahead == list(range(2, ahead[-1] + 1)) and 10 < ahead[-1] < 200  # one middle range
    middle = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for r in range(12):
            g = np.random.default_rng(r)
            curve, summary = budget_comparison(_steady_with_rare_top(g, 200).round(3), _spread_capped(g, 200).round(3),
                                               OPTIONS, seed=r)
            b = curve["b_wins"].to_numpy()
            called = curve["k"].to_numpy()[b]
            assert set(called) <= set(ahead)  # never called where B is truly behind
            if not (b.any() and not b[0] and not b[-1]):
                continue
            middle += 1
            row = SimpleNamespace(task="rte", a="steady", b="spread", seeds_a=5, seeds_b=5, aso_eps_a_over_b=0.4,
                                  diff=0.001, p_holm=0.5, significant=False, seeds_for_80_power=40,
                                  fairness_findings=0, **summary)
            text = sentence(row, OPTIONS)
            where = summary["b_wins_at"].replace(";", ", ")
            assert "–" in where and "not separated" not in text
            if summary["a_wins_from_k"] is None:
                assert text.startswith(f"spread beats steady on RTE only at budgets of {where} trials (ASO ε_min = 0.40")
            else:  # A, sure of TOP at the largest budgets, is called there: B's range is the other clause
                assert f"; spread beats steady at budgets of {where} trials." in text
    assert middle >= 9


def _db(tmp_path, epochs: dict[str, int], seconds: dict[str, int] | None = None, gpus: dict[str, int] | None = None) -> str:
    """Two experiments, one method each, 3 assignments × 3 seeds, logged with their training
    params the way search/runner.py logs them; ``epochs`` gives each method's max_epochs,
    ``seconds`` its trials' wall time (default 60 s each) and ``gpus`` their GPUs (default 0)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    rng = np.random.default_rng(0)
    for i, (method, max_epochs) in enumerate(epochs.items()):
        exp = c.create_experiment(f"exp-{method}", artifact_location=str(tmp_path / "art" / method))
        parent = c.create_run(exp, run_name="s", tags={tag("search_id"): f"s-{method}", tag("role"): "search",
                                                       tag("algorithm"): "grid"}).info.run_id
        for cfg in range(3):
            for seed in range(3):
                run = c.create_run(exp, start_time=1000, tags={
                    PARENT_TAG: parent, tag("method"): method, tag("task"): "rte", tag("backbone"): "tiny/bert",
                    tag("seed"): str(seed), tag("config_id"): f"{method}-c{cfg}", tag("metric"): "acc",
                    tag("gpus"): str((gpus or {}).get(method, 0)), tag("protocol"): "dev"}).info.run_id
                c.log_param(run, "training.max_epochs", str(max_epochs))
                c.log_param(run, "training.max_train_examples", "256")
                c.log_metric(run, "best_dev_score", round(0.6 + 0.05 * i + 0.01 * cfg + rng.normal(0, 0.005), 3))
                c.set_terminated(run, "FINISHED", end_time=1000 + 1000 * (seconds or {}).get(method, 60) + 37 * seed)
        c.set_terminated(parent, "FINISHED")
    return uri


def _compare(uri, out, *extra):
    from search.cli import main

    return CliRunner().invoke(main, ["compare", "--tracking-uri", uri, "--experiment", "exp-lora",
                                     "--experiment", "exp-bitfit", "--out", str(out), "--bootstrap", "200", *extra])


def test_compare_writes_every_output_with_its_sentences(tmp_path):
    uri = _db(tmp_path, {"bitfit": 3, "lora": 3})
    r = _compare(uri, tmp_path / "out")
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"compare.md", "compare.tex", "compare.csv", "compare_budgets.csv", "compare.json",
            "compare_p.png", "compare_p.svg"} <= names
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    (pair,) = data["pairs"]
    assert (pair["a"], pair["b"]) == ("lora", "bitfit")  # lora's scores are 0.05 higher
    assert pair["diff"] == pytest.approx(0.05, abs=0.02) and pair["seeds_a"] == 3
    assert pair["sentence"].startswith("lora beats bitfit on RTE") and pair["sentence"] in r.output
    assert data["fairness"] == []
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "## Fairness audit" in md and "no differences found" in md and pair["sentence"] in md
    assert r"\begin{tabular}" in (tmp_path / "out" / "compare.tex").read_text()


def test_fairness_audit_flags_different_epochs_and_strict_refuses(tmp_path):
    uri = _db(tmp_path, {"bitfit": 3, "lora": 10})
    r = _compare(uri, tmp_path / "out")
    assert r.exit_code == 0
    line = "fairness: rte: lora vs bitfit: max_epochs differ (10 vs 3)"
    assert line in r.output
    assert line in (tmp_path / "out" / "compare.md").read_text()
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["fairness"][0]["field"] == "max_epochs"
    strict = _compare(uri, tmp_path / "strict", "--strict")
    assert strict.exit_code == 2 and "--strict: 1 fairness finding; first: fairness: rte" in strict.output
    assert not (tmp_path / "strict").exists()  # refused before anything was written


def test_baseline_must_exist(tmp_path):
    uri = _db(tmp_path, {"bitfit": 3, "lora": 3})
    r = _compare(uri, tmp_path / "out", "--baseline", "prompt_tuning")
    assert r.exit_code == 2 and "baseline: no method 'prompt_tuning' on task rte" in r.output


def test_compare_over_seconds_writes_every_output_in_that_unit(tmp_path):
    """bitfit's trials take 20 s, lora's 60 s (wall time: each run's end - start, as evp
    --budget seconds uses). Over seconds each gets the draws its own mean cost buys."""
    uri = _db(tmp_path, {"bitfit": 3, "lora": 3}, seconds={"bitfit": 20, "lora": 60})
    r = _compare(uri, tmp_path / "out", "--budget", "seconds", "--max-k", "9")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    (pair,) = data["pairs"]
    assert data["options"]["budget"] == "seconds" and pair["budget_unit"] == "seconds"
    assert pair["cost_a"] == pytest.approx(60.037) and pair["cost_b"] == pytest.approx(20.037)  # + 0, 37, 74 ms
    k, n_a, n_b = (np.array(pair["budgets"][c]) for c in ("k", "n_a", "n_b"))
    assert k[0] == pytest.approx(pair["cost_a"]) and n_a[0] == pytest.approx(1)   # lora's one trial
    assert np.allclose(k, n_a * pair["cost_a"]) and np.allclose(k, n_b * pair["cost_b"])
    assert k[-1] == pytest.approx(9 * pair["cost_b"])                             # bitfit's 9 trials
    assert " seconds" in pair["sentence"] and "one trial costs 60 vs 20 seconds on average" in pair["sentence"]
    assert pair["sentence"] in r.output and "k =" not in pair["sentence"]
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "Over budgets in seconds" in md and "A wins from (seconds)" in md and "## Fairness audit" in md
    assert "seconds" in (tmp_path / "out" / "compare.tex").read_text()
    assert "budget_unit" in (tmp_path / "out" / "compare_budgets.csv").read_text().splitlines()[0]
    assert "compute budget (seconds of trial wall time)" in (tmp_path / "out" / "compare_p.svg").read_text()


def test_compare_over_gpu_hours_is_seconds_times_gpus(tmp_path):
    uri = _db(tmp_path, {"bitfit": 3, "lora": 3}, seconds={"bitfit": 20, "lora": 60}, gpus={"bitfit": 1, "lora": 2})
    r = _compare(uri, tmp_path / "out", "--budget", "gpu-hours", "--max-k", "9", "--format", "json", "--format", "svg")
    assert r.exit_code == 0, r.output
    (pair,) = json.loads((tmp_path / "out" / "compare.json").read_text())["pairs"]
    assert pair["cost_a"] == pytest.approx(60.037 * 2 / 3600) and pair["cost_b"] == pytest.approx(20.037 / 3600)
    assert pair["budgets"]["k"][-1] == pytest.approx(9 * 20.037 / 3600)  # bitfit's 9 trials, 0.05 GPU-hours
    assert "GPU-hours" in pair["sentence"] and "compute budget (GPU-hours)" in (tmp_path / "out" / "compare_p.svg").read_text()


def test_compare_over_gpu_hours_needs_gpu_trials(tmp_path):
    uri = _db(tmp_path, {"bitfit": 3, "lora": 3})  # tagged gpus 0
    r = _compare(uri, tmp_path / "out", "--budget", "gpu-hours")
    assert r.exit_code == 2 and "budget: 'gpu-hours' needs trials that ran on GPUs" in r.output
    assert not (tmp_path / "out").exists()


def _row(**kw):
    """A compare row (Comparison.pairs) as sentence() reads it: nothing won, one seed each."""
    from types import SimpleNamespace

    base = dict(task="rte", a="lora", b="bitfit", seeds_a=1, seeds_b=1, aso_eps_a_over_b=0.5, diff=0.0, p_holm=1.0,
                significant=False, seeds_for_80_power=1, fairness_findings=1, k_min=1.0, k_max=1, crossing_k="",
                a_wins_from_k=None, b_wins_from_k=None, a_wins_at="", b_wins_at="", p_min_a_wins=None,
                p_max_b_wins=None, p_at_k_max=0.5, cost_a=2.0, cost_b=1.0)
    return SimpleNamespace(**(base | kw))


ONE = r"\b1 (trials|assignments|seconds|GPU-hours|seeds|fairness warnings)\b"


@pytest.mark.parametrize("row, options, expected", [
    (_row(), CompareOptions(),
     "lora and bitfit are not separated on RTE at any budget up to 1 trial (P(A > B) = 0.50 at k = 1; ASO ε_min = "
     "0.50 over 1 seed); seed-median difference +0.0 points, p = 1 Holm-adjusted, 1 seed would give 80% power; "
     "1 fairness warning."),
    (_row(seeds_b=2, k_max=2, seeds_for_80_power=2, fairness_findings=2), CompareOptions(),
     "lora and bitfit are not separated on RTE at any budget up to 2 trials (P(A > B) = 0.50 at k = 2; ASO ε_min = "
     "0.50 over 1/2 seeds); seed-median difference +0.0 points, p = 1 Holm-adjusted, 2 seeds would give 80% power; "
     "2 fairness warnings."),
    (_row(k_max=9, a_wins_at="1", fairness_findings=0, significant=True), CompareOptions(unit="assignment"),
     "lora beats bitfit on RTE only at a budget of 1 assignment (ASO ε_min = 0.50 over 1 seed); seed-median "
     "difference +0.0 points, p = 1 Holm-adjusted."),
    (_row(k_max=9, a_wins_at="3–6", b_wins_at="1", fairness_findings=0, significant=True), CompareOptions(),
     "lora beats bitfit on RTE only at budgets of 3–6 trials (ASO ε_min = 0.50 over 1 seed); seed-median difference "
     "+0.0 points, p = 1 Holm-adjusted; bitfit beats lora at a budget of 1 trial."),
    (_row(k_min=0.5, k_max=4.0, a_wins_from_k=1.0, p_min_a_wins=0.97, crossing_k="1", fairness_findings=0,
          significant=True), CompareOptions(budget="seconds"),
     "lora beats bitfit on RTE at every budget ≥ 1 second (P ≥ 0.97; ASO ε_min = 0.50 over 1 seed); seed-median "
     "difference +0.0 points, p = 1 Holm-adjusted; the EVP curves cross at 1 second; one trial costs 2 vs 1 second "
     "on average."),
    (_row(k_min=1.0, k_max=1.0, fairness_findings=0, significant=True, cost_b=0.5), CompareOptions(budget="gpu-hours"),
     "lora and bitfit are not separated on RTE at any budget of 1 GPU-hour, the only one compared (P(A > B) = 0.50 "
     "at 1 GPU-hour; ASO ε_min = 0.50 over 1 seed); seed-median difference +0.0 points, p = 1 Holm-adjusted; "
     "one trial costs 2 vs 0.5 GPU-hours on average."),
    (_row(k_min=0.5, k_max=1.0, b_wins_from_k=0.5, p_max_b_wins=0.01, fairness_findings=0, significant=True,
          cost_a=1.0, cost_b=0.5), CompareOptions(budget="gpu-hours", unit="assignment"),
     "bitfit beats lora on RTE at every budget ≥ 0.5 GPU-hours (P ≥ 0.99), though lora has the higher seed-median "
     "(ASO ε_min = 0.50 over 1 seed); seed-median difference +0.0 points, p = 1 Holm-adjusted; one assignment costs "
     "1 vs 0.5 GPU-hours on average."),
])
def test_sentences_say_1_trial_1_seed_1_second_and_plurals_otherwise(row, options, expected):
    """Every unit (trials, assignments, seconds, GPU-hours, seeds, fairness warnings) in each
    sentence template: singular after a 1, plural after anything else."""
    import re

    from tracking.compare import sentence

    text = sentence(row, options)
    assert text == expected
    assert not re.search(ONE, text) and "(s)" not in text


def test_compare_of_one_budget_says_1_trial_everywhere(tmp_path):
    """--max-k 1 on the two-method database: one budget, one comparison; the sentence, the
    settings and the --strict refusal say "1 trial", "1 comparison", "1 fairness finding"."""
    import re

    uri = _db(tmp_path, {"bitfit": 3, "lora": 3})
    r = _compare(uri, tmp_path / "out", "--max-k", "1", "--format", "json", "--format", "md")
    assert r.exit_code == 0, r.output
    (pair,) = json.loads((tmp_path / "out" / "compare.json").read_text())["pairs"]
    assert pair["k_max"] == 1 and "at every budget up to 1 trial (" in pair["sentence"]
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "Holm-adjusted over 1 comparison at α" in md and "(max-statistic, 200 relabellings)" in md
    assert not re.search(ONE, md) and "(s)" not in md


def test_words_singular_only_after_a_printed_1():
    from tracking.words import count, noun

    assert [count(n, "trial") for n in (1, 2, 0, "1")] == ["1 trial", "2 trials", "0 trials", "1 trial"]
    assert [noun("GPU-hour", n) for n in ("0.5–1", "1–4", "1/2", "1, 3", "1,000", "1.0", "1e-05", "0.5")] == [
        "GPU-hour", "GPU-hours", "GPU-hours", "GPU-hours", "GPU-hours", "GPU-hours", "GPU-hours", "GPU-hours"]
    assert count(1, "analysis", "analyses") == "1 analysis" and count(3, "analysis", "analyses") == "3 analyses"
