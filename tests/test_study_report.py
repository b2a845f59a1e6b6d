"""The study's decision rule and report (examples/study/study_report.py) on results built in code: the margin over the
seed spread, paired differences, rankings, compute to reach, and the sentences that link longer runs."""

from .fixtures import vision_study_results  # (fixtures puts examples/study on sys.path)
from study_report import (  # noqa: E402
    _baseline_losses,
    _longer_budget_sentence,
    _probe_table,
    _ranking,
    compute_to_reach,
    decide,
    difference_cell,
    measured_probes,
    paired_difference,
)
from study_utils import signed  # noqa: E402


def test_a_baseline_is_said_not_to_learn_only_while_its_loss_stays_at_chance():
    def results(*finals):
        seeds = {str(i): {"pretraining": {"final_loss": loss}} for i, loss in enumerate(finals)}
        return {
            "chance_losses": {"text": {"mlm": (7.0, "the entropy of the corpus's token frequencies")}},
            "modalities": {"text": {"arms": {"mlm": {"seeds": seeds}}}},
        }

    assert "has not started learning" in _baseline_losses(results(7.05, 6.9), "text")[0]  # at chance, or above
    assert _baseline_losses(results(7.05, 6.5), "text") == []  # one seed 7% below chance: it learns
    assert _baseline_losses(results(6.51, 6.5), "text") == []


def test_decision_needs_a_margin_larger_than_the_seed_spread():
    results = vision_study_results(
        {
            "data2vec": {5: [60.0, 61.0, 62.0], 10: [70.0, 71.0, 72.0]},  # +10 at the end, +0 halfway
            "mae": {5: [60.0, 64.0, 56.0], 10: [63.0, 66.0, 57.0]},  # +1 on average, spread 4.6
            "data2vec2": {4: [70.0, 71.0, 72.0], 8: [61.0, 62.0, 63.0], 12: [69.0, 70.0, 71.0]},  # ahead, not, ahead
            "random": {0: [60.0, 61.0, 62.0]},
        }
    )
    decisions = decide(results, "vision")
    assert decisions["data2vec"]["beats_random"] and decisions["data2vec"]["first_point"]["step"] == 10
    assert decisions["data2vec"]["difference"]["significant"]
    assert not decisions["mae"]["beats_random"] and decisions["mae"]["first_point"] is None
    assert decisions["data2vec2"]["first_point"]["step"] == 12  # from where it stays ahead, not where it first was
    assert paired_difference({"0": 1.0, "1": 2.0}, {"0": 0.0, "1": 0.0}) == {
        "mean": 1.5,
        "n": 2,
        "differences": [1.0, 2.0],
    }  # no interval from 2 seeds


def test_ranking_and_compute_to_reach_compare_only_arms_that_ran():
    both = vision_study_results(
        {
            "data2vec": {5: [62.0, 63.0, 64.0], 10: [70.0, 71.0, 72.0]},
            "mae": {5: [60.0, 61.0, 62.0], 10: [66.0, 67.0, 68.0]},
            "random": {0: [60.0, 61.0, 62.0]},
        }
    )
    assert compute_to_reach(both, "vision") == (67.0, {"data2vec": 1e12, "mae": 1e12})  # MAE's best, at step 10
    assert _ranking(both, "vision", "fashion_mnist") == [
        "Ranking on the fashion_mnist probe at equal training FLOPs: data2vec 1.0 71.0, MAE 67.0; the highest is "
        "data2vec 1.0."
    ]
    both["modalities"]["vision"]["arms"]["mae"]["seeds"]["0"]["probes"]["10"]["fashion_mnist"] = 90.0
    assert _ranking(both, "vision", "fashion_mnist")[0].endswith(
        "the highest is MAE, the modality's own objective, so at this scale data2vec does not win on vision."
    )
    # a longer run of the baseline alone: nothing to rank it against, and no word on data2vec, which did not run
    alone = vision_study_results(
        {"mae": {5: [60.0, 61.0, 62.0], 10: [66.0, 67.0, 68.0]}, "random": {0: [60.0, 61.0, 62.0]}}
    )
    assert _ranking(alone, "vision", "fashion_mnist") == [] and compute_to_reach(alone, "vision") == (None, {})
    del both["modalities"]["vision"]["arms"]["data2vec"]
    both["modalities"]["vision"]["arms"]["mlm"] = both["modalities"]["vision"]["arms"]["mae"]
    assert "data2vec" not in _ranking(both, "vision", "fashion_mnist")[0]


def test_report_names_the_smallest_longer_budget_at_which_an_arm_beats_random():
    here = vision_study_results({"mae": {10: [60.0, 61.0, 62.0]}, "random": {0: [60.0, 61.0, 62.0]}})
    not_yet = vision_study_results(
        {"mae": {20: [60.0, 62.0, 61.0], 40: [61.0, 60.0, 62.0]}, "random": {0: [60.0, 61.0, 62.0]}}, 4e12
    )
    later = vision_study_results(
        {"mae": {40: [61.0, 62.0, 60.0], 80: [70.0, 71.0, 72.0]}, "random": {0: [60.0, 61.0, 62.0]}}, 8e12
    )
    runs = {"4x": not_yet, "8x": later}
    for name, run in runs.items():
        run.update(report=f"docs/{name}/study.md", command=f"python run_study.py # {name}")
    assert "no longer run is linked" in _longer_budget_sentence(here, "vision", "mae")
    here["longer_budgets"] = [runs["8x"], runs["4x"]]  # read in order of budget, not of the command line
    assert _longer_budget_sentence(here, "vision", "mae") == (
        "It does not in the 4x-budget run (docs/4x/study.md, same seeds and settings); it does in the 8x-budget run "
        "(docs/8x/study.md, same seeds and settings) from 8 TFLOPs on (8.0x this budget, the first probed point from "
        "which it stays ahead: 71.0 ± 1.0)."
    )
    here["longer_budgets"] = [runs["4x"]]
    assert _longer_budget_sentence(here, "vision", "mae") == (
        "It does not in the 4x-budget run (docs/4x/study.md, same seeds and settings) either: the smallest budget at "
        "which it would is above 4x this one."
    )
    del not_yet["modalities"]["vision"]["arms"]["random"]  # a run without random init decides nothing
    assert "no longer run is linked" in _longer_budget_sentence(here, "vision", "mae")


def test_differences_keep_their_sign_and_a_small_one_its_size():
    """A difference that rounds to zero at one decimal gets two, so "-0.0 [-0.0, -0.0], significant" cannot print."""
    assert [signed(v) for v in (-0.0, -0.004, -0.03, 0.06, -1.26)] == ["+0.0", "+0.00", "-0.03", "+0.1", "-1.3"]
    assert difference_cell({"mean": -0.03, "low": -0.05, "high": -0.01, "significant": True, "n": 3}) == (
        "-0.03 [-0.05, -0.01], significant"
    )


def test_report_leaves_out_a_probe_that_an_older_run_did_not_measure():
    results = vision_study_results({"data2vec": {10: [70.0, 71.0, 72.0]}, "random": {0: [60.0, 61.0, 62.0]}})
    assert [probe for probe, _ in measured_probes(results, "vision")] == ["fashion_mnist", "fashion_mnist_knn"]
    for seed in results["modalities"]["vision"]["arms"]["random"]["seeds"].values():
        del seed["probes"]["0"]["fashion_mnist_knn"]  # as a run saved before the probe existed
    assert [probe for probe, _ in measured_probes(results, "vision")] == ["fashion_mnist"]
    assert "20-NN" not in "\n".join(_probe_table(results, "vision"))
