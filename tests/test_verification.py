"""EER, TAR@FAR, ROC/DET and subject-bootstrap intervals against hand-computed cases."""
import numpy as np
import pytest

from ocular_utils.verification.metrics import (
    ErrorCurve,
    auc,
    bootstrap_over_subjects,
    det,
    eer,
    eer_threshold,
    roc,
    tar_at_far,
    verification_report,
)


def test_perfect_separation():
    assert eer([0.9, 0.8, 0.7], [0.1, 0.2, 0.3]) == 0.0
    assert eer_threshold([0.9, 0.8, 0.7], [0.1, 0.2, 0.3]) == 0.7
    assert tar_at_far([0.9, 0.8, 0.7], [0.1, 0.2, 0.3], 0.001) == 1.0


def test_full_overlap_is_one_half():
    scores = np.linspace(0, 1, 101)
    assert eer(scores, scores) == pytest.approx(0.5, abs=0.01)
    assert eer([0.5, 0.5], [0.5, 0.5]) == 0.5


def test_hand_worked_example():
    # genuine 0.9 0.7 0.5 0.3 ; impostor 0.6 0.4 0.2 0.1
    # t = 0.5: FAR = #{imp >= .5}/4 = 1/4 ; FRR = #{gen < .5}/4 = 1/4  -> EER 0.25 at 0.5
    genuine, impostor = [0.9, 0.7, 0.5, 0.3], [0.6, 0.4, 0.2, 0.1]
    assert eer(genuine, impostor) == 0.25
    assert eer_threshold(genuine, impostor) == 0.5
    # unequal crossing: genuine 0.9 0.8 0.4, impostor 0.5 0.3 0.2 0.1
    # t=0.8: FAR 0, FRR 1/3 (diff .333); t=0.5: FAR 1/4, FRR 1/3 (diff .083); t=0.4: FAR 1/4, FRR 0 (diff .25)
    assert eer([0.9, 0.8, 0.4], [0.5, 0.3, 0.2, 0.1]) == pytest.approx((0.25 + 1 / 3) / 2)


def test_tar_at_far_hand_cases():
    genuine = [0.95, 0.9, 0.6, 0.4, 0.2]
    impostor = [0.8, 0.5, 0.3, 0.1, 0.05, 0.0, -0.1, -0.2, -0.3, -0.4]
    # lowest candidate t with FAR(t) <= 0.1 is 0.6 (only 0.8 >= t): TAR = #{gen >= 0.6}/5 = 3/5
    assert tar_at_far(genuine, impostor, 0.1) == pytest.approx(0.6)
    # FAR <= 0.2: t = 0.4 (0.8 and 0.5 >= t): TAR = 4/5
    assert tar_at_far(genuine, impostor, 0.2) == pytest.approx(0.8)
    # FAR <= 0.05 needs t above every impostor score: t = 0.9, TAR = 2/5
    assert tar_at_far(genuine, impostor, 0.05) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        tar_at_far(genuine, impostor, 0)


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="empty"):
        eer([], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, np.nan], [0.2])


def test_curves_and_auc():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(1, 1, 500), rng.normal(-1, 1, 2000)
    r, d = roc(genuine, impostor), det(genuine, impostor)
    assert r["far"].is_monotonic_increasing and r["tar"].is_monotonic_increasing
    assert set(d.columns) == {"far", "frr", "threshold"}
    assert 0.9 < auc(genuine, impostor) < 0.95  # Phi(2 / sqrt 2) = 0.921
    assert eer(genuine, impostor) == pytest.approx(0.159, abs=0.03)  # Phi(-1)


def test_weights_equal_repetition():
    rng = np.random.default_rng(1)
    g, i = rng.normal(1, 1, 50), rng.normal(0, 1, 80)
    gw, iw = rng.integers(0, 3, 50), rng.integers(0, 3, 80)
    weighted = ErrorCurve(g, i).eer(gw, iw)[0]
    assert weighted == pytest.approx(eer(np.repeat(g, gw), np.repeat(i, iw)))


def _trials_of(subjects, genuine, seed=0):
    """Reference subjects for hand-made trials: the probe's own for genuine trials, another for impostors."""
    rng = np.random.default_rng(seed)
    n = subjects.max() + 1
    other = (subjects + rng.integers(1, n, len(subjects))) % n
    return {"genuine": genuine, "probe_subject": subjects, "reference_subject": np.where(genuine, subjects, other)}


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(40), 30)
    genuine = rng.random(len(subjects)) < 0.2
    scores = np.where(genuine, rng.normal(1.5, 1, len(subjects)), rng.normal(0, 1, len(subjects)))
    trials = _trials_of(subjects, genuine)
    report = verification_report(scores, genuine, subjects, trials["reference_subject"], replicates=200, seed=0)
    assert report["eer ci_low"] <= report["eer"] <= report["eer ci_high"]
    assert report["eer ci_high"] - report["eer ci_low"] < 0.2
    again = bootstrap_over_subjects(scores, genuine, subjects, trials["reference_subject"], replicates=200, seed=0)
    assert again["eer"] == (report["eer ci_low"], report["eer ci_high"])
    assert report["far=0.001 resolvable"] is False or report["impostor_trials"] >= 1000
    with pytest.raises(ValueError, match="reference_subjects"):
        verification_report(scores, genuine, subjects, replicates=10)


def test_ties_take_the_lowest_threshold_despite_rounding():
    # thresholds 6 and 8 both give |FAR - FRR| = 1/6; the lowest (6) wins: FAR 4/6, FRR 1/2
    genuine, impostor = [9, 0], [6, 4, 8, 8, 4, 6]
    assert eer_threshold(genuine, impostor) == 6
    assert eer(genuine, impostor) == pytest.approx((4 / 6 + 1 / 2) / 2)


def test_bootstrap_needs_both_subjects_of_every_trial():
    with pytest.raises(ValueError, match="no subject"):
        bootstrap_over_subjects([0.1, 0.9], [False, True], [None, "a"], ["b", "a"], replicates=5)
    with pytest.raises(ValueError, match="probe and 1 reference"):
        bootstrap_over_subjects([0.1, 0.9], [False, True], ["b", "a"], ["a"], replicates=5)
    with pytest.raises(ValueError, match="genuine trials have different"):
        bootstrap_over_subjects([0.1, 0.9], [False, True], ["b", "a"], ["a", "b"], replicates=5)


def test_impostor_trials_weigh_both_subjects_draws():
    from ocular_utils.verification.resampling import SubjectResampler

    # subjects a, b, c: genuine (a, a); impostor (a, b), (b, c)
    resampler = SubjectResampler([True, False, False], ["a", "a", "b"], ["a", "b", "c"], replicates=1)
    draw = np.array([0, 0, 1])  # a twice, b once, c never
    assert list(resampler.weights(draw)) == [2, 2 * 1, 1 * 0], "genuine n_i, impostor n_i * n_j"
    probe_only = SubjectResampler([True, False, False], ["a", "a", "b"], ["a", "b", "c"], replicates=1, sides="probe")
    assert list(probe_only.weights(draw)) == [2, 2, 1], "the old scheme ignores the reference side"


def _paired_case(seed=0, subjects=30, per_subject=20):
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(subjects), per_subject)
    genuine = np.tile(np.arange(per_subject) < 4, subjects)
    a = rng.normal(0, 1, len(subject)) + 2.0 * genuine
    b = a + rng.normal(0, 0.6, len(subject))  # a noisier copy: correlated with a, as two models on one trial list
    return a, b, _trials_of(subject, genuine, seed)


def test_paired_difference_of_identical_scores_is_exactly_zero():
    from ocular_utils.verification.paired import paired_difference

    a, _, trials = _paired_case()
    result = paired_difference(a, a.copy(), trials, replicates=100, seed=1)
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_of_a_shifted_copy_is_the_shift():
    from ocular_utils.verification.paired import paired_difference

    a, _, trials = _paired_case()
    genuine = trials["genuine"]

    def mean_genuine_score(scores, genuine, weights):
        return np.average(scores[genuine], weights=weights[genuine])

    result = paired_difference(a + 0.25, a, trials, metric=mean_genuine_score, replicates=200, seed=2)
    assert result.difference == pytest.approx(0.25)
    assert result.ci_low == pytest.approx(0.25) and result.ci_high == pytest.approx(0.25)
    assert result.p_value == pytest.approx(2 / (result.replicates + 1)), "never zero: below 1/(n+1)"
    lower_eer = paired_difference(a + 0.8 * genuine, a, trials, replicates=200, seed=2)
    assert lower_eer.difference < 0 and lower_eer.ci_high < 0 and lower_eer.p_value < 0.05
    with pytest.raises(ValueError, match="same trials"):
        paired_difference(a, a[:-1], trials)
    with pytest.raises(ValueError, match="unknown metric"):
        paired_difference(a, a, trials, metric="frr")


def test_paired_difference_matches_scipy_paired_bootstrap():
    from scipy import stats

    from ocular_utils.verification.metrics import ErrorCurve
    from ocular_utils.verification.paired import paired_difference

    a, b, trials = _paired_case(seed=3)
    genuine, probe, reference = trials["genuine"], trials["probe_subject"], trials["reference_subject"]
    curves = [ErrorCurve(s[genuine], s[~genuine]) for s in (a, b)]
    n = probe.max() + 1

    def weights(index):
        counts = np.bincount(index, minlength=n).astype(float)
        return np.where(genuine, counts[probe], counts[probe] * counts[reference])

    def statistic(index_a, index_b):
        assert np.array_equal(index_a, index_b), "paired resampling draws the same subjects for both models"
        wa, wb = weights(index_a), weights(index_b)
        return curves[0].eer(wa[genuine], wa[~genuine])[0] - curves[1].eer(wb[genuine], wb[~genuine])[0]

    reference_result = stats.bootstrap((np.arange(n), np.arange(n)), statistic, paired=True, vectorized=False,
                                       n_resamples=300, method="percentile", confidence_level=0.95,
                                       random_state=np.random.default_rng(7))
    ours = paired_difference(a, b, trials, replicates=300, seed=7)
    # the same draws as scipy's, with the spread widened by sqrt(n / (n - 1)) for n subjects
    distribution = reference_result.bootstrap_distribution
    widened = distribution.mean() + (distribution - distribution.mean()) * np.sqrt(n / (n - 1))
    assert ours.ci_low == pytest.approx(np.quantile(widened, 0.025), abs=1e-12)
    assert ours.ci_high == pytest.approx(np.quantile(widened, 0.975), abs=1e-12)
    assert ours.ci_high - ours.ci_low > reference_result.confidence_interval.high - \
        reference_result.confidence_interval.low
    assert ours.difference == pytest.approx(curves[0].eer()[0] - curves[1].eer()[0])


def test_holm_on_a_hand_worked_example():
    from ocular_utils.verification.paired import holm

    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        holm([1.5])
    with pytest.raises(ValueError, match="no NaN"):
        holm([0.01, float("nan")])


def test_max_t_holds_its_family_wise_level_and_has_no_holm_floor():
    from ocular_utils.verification.multiplicity import max_t
    from ocular_utils.verification.paired import holm, summarize

    rng = np.random.default_rng(0)
    m, draws = 290, 1000
    mixing = rng.normal(size=(m, 8))  # correlated statistics, as changes read from one set of draws are
    scale = np.sqrt((mixing ** 2).sum(axis=1) + 1)

    def sample(size):
        return (rng.normal(size=(size, 8)) @ mixing.T + rng.normal(size=(size, m))) / scale

    rejected = 0
    for _ in range(200):  # global null: the observed statistics are one more draw of the null
        observed = sample(1)[0]
        rejected += bool((max_t(observed, observed + sample(500)).p_values < 0.05).any())
    assert 0.01 <= rejected / 200 <= 0.10, f"max-T family-wise rate {rejected / 200} (nominal 0.05)"
    observed = np.zeros(m)
    observed[0] = 8.0  # one change 8 standard deviations from zero among 289 null ones
    samples = observed + sample(draws)
    family = max_t(observed, samples)
    bootstrap_p = np.array([summarize("eer", o, samples[:, i], 0.95).p_value for i, o in enumerate(observed)])
    assert holm(bootstrap_p)[0] >= 290 * 2 / (draws + 1) > 0.5, "Holm on bootstrap p cannot go below its floor"
    assert family.p_values[0] == pytest.approx(1 / (draws + 1)) and family.ci_low[0] > 0
    assert (family.p_values >= 1 / (draws + 1)).all() and family.critical > 2.5  # wider than one 95% interval
    samples[:, 5] = 0.0  # a statistic the same in every draw (identical models) is read, never deviates
    observed[5] = 0.0
    assert max_t(observed, samples).p_values[5] == 1.0
    with pytest.raises(ValueError, match="draws x statistics"):
        max_t(observed, samples[:, :3])
    samples[:, 7] = np.nan
    with pytest.raises(ValueError, match="finite draw"):
        max_t(observed, samples)


def test_claims_have_their_own_tests():
    from ocular_utils.verification.paired import PairedDifference, beats_all, non_inferior, still_improving

    def d(difference, low, high, p):
        return PairedDifference("eer", difference, low, high, p, 1000, 0.95)

    four = [d(-0.01, -0.02, -0.001, 0.03)] * 4
    assert beats_all(four, 0.05), "intersection-union: every raw p = 0.03 < 0.05 (Holm would give 0.12)"
    assert not beats_all(four[:3] + [d(-0.01, -0.02, 0.001, 0.06)], 0.05) and not beats_all([], 0.05)
    assert non_inferior(d(0.0015, -0.0054, 0.0099, 0.67), margin=0.01)
    assert not non_inferior(d(0.0015, -0.0054, 0.0101, 0.67), margin=0.01), "absence of evidence is not enough"
    assert still_improving(d(-0.02, -0.03, -0.01, 0.001)) and not still_improving(d(-0.004, -0.01, 0.002, 0.2))


def test_looks_share_one_subject_draw():
    from ocular_utils.verification.paired import paired_difference, paired_looks

    a, b, trials = _paired_case(seed=5)
    files = {name: trials | {"scores": s, "trial_list": "same"} for name, s in (("a", a), ("b", b))}
    looks = paired_looks({"B": (files["a"], files["b"]), "2B": (files["a"], files["b"])}, replicates=100, seed=3)
    assert looks.differences["B"] == looks.differences["2B"] == paired_difference(a, b, trials, replicates=100, seed=3)
    assert looks.change.difference == 0 and looks.change.ci_low == looks.change.ci_high == 0, "same draws: no noise"
    with pytest.raises(ValueError, match="different trial lists"):
        paired_looks({"B": (files["a"], files["b"] | {"trial_list": "other"})}, replicates=10)


def test_saved_runs_pair_only_on_the_same_trials(tmp_path):
    import pandas as pd

    from ocular_utils.verification.scoring import Evaluation, compare_runs, save_scores, trial_fingerprint

    a, b, trials_dict = _paired_case(seed=4)
    frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(40)]})
    trials = pd.DataFrame({"probe": np.arange(len(a)) % 40, "reference": (np.arange(len(a)) + 1) % 40}
                          | trials_dict)
    fingerprint = trial_fingerprint(frame, trials)
    for name, scores in (("a", a), ("b", b)):
        save_scores(Evaluation({}, pd.DataFrame(), scores, trials, fingerprint), tmp_path / name)
    paired = compare_runs(tmp_path / "a", tmp_path / "b", replicates=50, seed=1)
    from ocular_utils.verification.paired import paired_difference

    as_text = {k: np.asarray(v).astype(str) if "subject" in k else v for k, v in trials_dict.items()}
    assert paired == paired_difference(a, b, as_text, replicates=50, seed=1)
    other = trials.assign(reference=(trials["reference"] + 1) % 40)
    save_scores(Evaluation({}, pd.DataFrame(), b, other, trial_fingerprint(frame, other)), tmp_path / "c")
    with pytest.raises(ValueError, match="different trial lists"):
        compare_runs(tmp_path / "a", tmp_path / "c")
    moved = frame.assign(path=[f"/elsewhere/clone/data/s{i % 4}/img{i}.png" for i in range(40)])
    here = frame.assign(path=[f"/work/study/data/s{i % 4}/img{i}.png" for i in range(40)])
    assert trial_fingerprint(moved, trials) == trial_fingerprint(here, trials), "a moved study pairs with itself"
    renamed = here.assign(path=here["path"].str.replace("img3.png", "img3b.png"))
    assert trial_fingerprint(renamed, trials) != trial_fingerprint(here, trials), "other images, other list"


def test_old_score_files_without_reference_subjects_are_refused(tmp_path):
    from ocular_utils.verification.scoring import load_trial_scores

    np.savez(tmp_path / "scores.npz", scores=np.zeros(2), genuine=np.array([True, False]),
             subjects=np.array(["a", "a"]), trial_list=np.array("x"))
    with pytest.raises(ValueError, match="reference_subject.*rerun"):
        load_trial_scores(tmp_path)


def test_paired_test_holds_its_level_when_identity_effects_sit_on_the_reference_side():
    """A small, seeded version of benchmarks/paired_calibration.py: the null of equal true EER."""
    from ocular_utils.verification.calibration import Design, rejection_rate

    result = rejection_rate(Design(subjects=30, effect_side="reference"), datasets=60, replicates=100, seed=11)
    assert result["rate"]["both"] <= 0.10, "both subjects resampled: near the nominal 0.05"
    assert result["rate"]["probe"] >= 0.15, "probe subjects only: the reference-side null is rejected far too often"
    assert abs(result["bootstrap_se"]["both"] - result["true_sd"]) < 0.3 * result["true_sd"]


@pytest.mark.parametrize("metric", ["eer", "tar@far=0.01", "tar@far=0.2"])
def test_paired_values_read_from_pair_counts_equal_weighting_every_trial(metric):
    """Every paired test reads its draws from pair counts; the values are those of weighting every trial under
    each draw, ties in the scores and draws that leave out whole subjects included."""
    from ocular_utils.verification.paired import resampled_values
    from ocular_utils.verification.resampling import SubjectResampler

    rng = np.random.default_rng(5)
    subject = np.repeat(np.arange(10), 4)
    a, b = np.triu_indices(len(subject), 1)
    probe, reference = subject[a], subject[b]
    genuine = probe == reference
    sets = [np.round(np.where(genuine, 1.0, 0.0) + rng.normal(0, 0.8, len(a)), digits) for digits in (1, 3, 8)]
    resampler = SubjectResampler(genuine, probe, reference, replicates=300, seed=2)
    by_pairs = resampled_values(sets, resampler, metric)
    by_trials = resampled_values(sets, resampler, metric, by_pairs=False)
    assert by_pairs[1].shape == by_trials[1].shape == (300, 3)
    np.testing.assert_array_equal(by_pairs[0], by_trials[0])
    np.testing.assert_allclose(by_pairs[1], by_trials[1], rtol=0, atol=1e-12)
    assert by_pairs[1].std(axis=0).min() > 0  # the draws move the metric: the comparison is not of constants


def test_each_score_set_is_read_once_per_draw_set(monkeypatch):
    """A chapter pairs one model with many: a score set already read under the same draws is not read again, and
    a changed score or another draw set is read afresh."""
    from ocular_utils.verification import paired
    from ocular_utils.verification.resampling import SubjectResampler

    reads = []
    original = paired.PairCurve.read
    monkeypatch.setattr(paired.PairCurve, "read", lambda self, *a: reads.append(1) or original(self, *a))
    monkeypatch.setattr(paired, "_READ_CACHE", paired.OrderedDict())
    a, b, trials = _paired_case(seed=8)

    def resampler(seed):
        return SubjectResampler(trials["genuine"], trials["probe_subject"], trials["reference_subject"],
                                replicates=50, seed=seed)

    first = paired.resampled_values([a, b], resampler(1))
    assert len(reads) == 2
    again = paired.resampled_values([b, a, a], resampler(1))  # a new resampler object with the same draws
    assert len(reads) == 2
    np.testing.assert_array_equal(again[1][:, [1, 0]], first[1])
    changed = a.copy()
    changed[0] += 1e-9
    paired.resampled_values([changed, b], resampler(1))
    paired.resampled_values([a], resampler(2))
    assert len(reads) == 4
