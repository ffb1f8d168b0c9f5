"""Ensemble selection (recipe/squeeze/weighted.py, Caruana et al. 2004) and the weighted_first rule, at their edges.

Made-up probabilities on a handful of samples: a candidate confident and right on some samples and unsure on
others, a second the other way round, so their blend beats both; identical candidates (the tie goes to the
first); parameter limits counted over the union of networks (a network shared by two candidates counts once).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from recipe.champion import ChampionSpec, Member, predict_outputs
from recipe.checks.ablation import CandidateResult
from recipe.squeeze import selection
from recipe.squeeze.candidates import Squeezed, ensemble_outputs
from recipe.squeeze.weighted import blend_loss, ensemble_selection, net_weights, weighted_candidate
from recipe.tasks import CLASSIFICATION, REGRESSION

Y = np.array([0, 0, 1, 1])
SURE_AB = np.array([[0.95, 0.05], [0.95, 0.05], [0.5, 0.5], [0.5, 0.5]])  # sure and right on 0, 1; unsure on 2, 3
SURE_CD = np.array([[0.5, 0.5], [0.5, 0.5], [0.05, 0.95], [0.05, 0.95]])  # the other way round
WRONG = np.array([[0.2, 0.8], [0.2, 0.8], [0.8, 0.2], [0.8, 0.2]])
RIGHT = np.array([[0.8, 0.2], [0.8, 0.2], [0.2, 0.8], [0.2, 0.8]])


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ([RIGHT], [1.0]),  # one candidate: all the weight
        ([WRONG, RIGHT], [0.0, 1.0]),  # a candidate that only hurts the blend never enters it
        ([RIGHT, RIGHT], [1.0, 0.0]),  # identical candidates: the tie goes to the first, the second adds nothing
        ([SURE_AB, SURE_CD], [0.5, 0.5]),  # complementary: the even blend has the lowest log loss
        ([SURE_AB, SURE_CD, WRONG], [0.5, 0.5, 0.0]),
    ],
)
def test_greedy_selection_with_replacement_weights_the_candidates_that_lower_the_val_log_loss(outputs, expected):
    w = ensemble_selection(outputs, Y, CLASSIFICATION)
    assert w == pytest.approx(expected) and w.sum() == pytest.approx(1.0)
    blend = np.tensordot(w, np.stack(outputs), 1)
    assert all(blend_loss(blend, Y, CLASSIFICATION) <= blend_loss(o, Y, CLASSIFICATION) + 1e-12 for o in outputs)


def test_the_prefix_with_the_lowest_loss_is_kept_and_the_blend_never_loses_to_a_part_on_val():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    outs = [rng.dirichlet(np.ones(3), 200) * 0.5 + np.eye(3)[y] * 0.5 * rng.uniform() for _ in range(6)]
    outs = [o / o.sum(1, keepdims=True) for o in outs]
    for rounds in (1, 5, 25):
        w = ensemble_selection(outs, y, CLASSIFICATION, rounds=rounds)
        kept = [k for k in range(1, rounds + 1) if np.allclose(w * k, np.round(w * k))]
        assert kept, w  # counts over a prefix of at most `rounds` rounds
        loss = blend_loss(np.tensordot(w, np.stack(outs), 1), y, CLASSIFICATION)
        assert loss <= min(blend_loss(o, y, CLASSIFICATION) for o in outs) + 1e-12
    one = ensemble_selection(outs, y, CLASSIFICATION, rounds=1)  # one round: the best single candidate
    assert np.argmax(one) == int(np.argmin([blend_loss(o, y, CLASSIFICATION) for o in outs])) and one.max() == 1


def test_regression_blends_predictions_on_the_regression_loss():
    y = np.zeros(50)
    high, low = np.ones((50, 1)), -np.ones((50, 1))  # biased +1 and -1: their mean is exact
    assert ensemble_selection([high, low], y, REGRESSION) == pytest.approx([0.5, 0.5])


NETS = [{"a": 100, "b": 100}, {"a": 100}, {"c": 90}]  # an ensemble of a and b, its member a, another net c


@pytest.mark.parametrize(
    ("max_params", "expected"),
    [
        (None, [1.0, 0.0, 0.0]),  # the ensemble (listed first, sure and right) alone
        (200, [1.0, 0.0, 0.0]),  # the limit is inclusive
        (199, [0.0, 0.5, 0.5]),  # the ensemble's 200 are over; a (100) and c (90) fit together and blend best
        (189, [0.0, 1.0, 0.0]),  # a and c do not fit together: a, the first of two equal ones, alone
        (99, [0.0, 0.0, 1.0]),  # only c fits
    ],
)
def test_max_params_counts_the_union_of_networks_each_once(max_params, expected):
    outs = [RIGHT, SURE_AB, SURE_CD]
    assert ensemble_selection(outs, Y, CLASSIFICATION, nets=NETS, max_params=max_params) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outputs": []}, "at least one candidate"),
        ({"outputs": [RIGHT], "y": Y[:3]}, "outputs have 4 rows, the targets 3"),
        ({"outputs": [RIGHT], "rounds": 0}, "rounds >= 1"),
        ({"outputs": [RIGHT], "nets": NETS}, "3 network lists for 1 candidates"),
        ({"outputs": [RIGHT], "nets": NETS[:1], "max_params": 99}, "no candidate has at most max_params=99"),
    ],
)
def test_bad_inputs_are_errors_that_name_the_problem(kwargs, match):
    args = {"outputs": [RIGHT], "y": Y, **kwargs}
    with pytest.raises(ValueError, match=match):
        ensemble_selection(args.pop("outputs"), args.pop("y"), CLASSIFICATION, **args)


def test_net_weights_spread_a_candidate_over_its_networks_and_add_up_shared_ones():
    w = net_weights([0.5, 0.25, 0.25, 0.0], [["a", "b"], ["a"], ["c"], ["d"]])
    assert w == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25}) and sum(w.values()) == pytest.approx(1.0)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2).eval()


def test_weighted_ensemble_outputs_and_the_champion_spec_agree_and_bad_weights_are_refused():
    nets, x = [_net(0), _net(1)], torch.randn(7, 3)
    probs = [n(x).softmax(-1) for n in nets]
    got = ensemble_outputs(nets, x, CLASSIFICATION, weights=[3.0, 1.0]).exp()
    assert torch.allclose(got, 0.75 * probs[0] + 0.25 * probs[1], atol=1e-6)
    plain = ensemble_outputs(nets, x, CLASSIFICATION).exp()
    assert torch.allclose(plain, (probs[0] + probs[1]) / 2, atol=1e-6)
    spec = ChampionSpec(
        "classification", "table", [3], ["a", "b"], [Member({}, "m0.pt", 3.0), Member({}, "m1.pt", 1.0)], [], []
    )
    assert np.allclose(predict_outputs(spec, nets, x.numpy()), got.numpy(), atol=1e-6)
    written = json.loads(spec.to_json())
    for m in written["members"]:
        del m["weight"]  # a spec written before members had weights: a plain average
    old = ChampionSpec.from_json(json.dumps(written))
    assert np.allclose(predict_outputs(old, nets, x.numpy()), plain.numpy(), atol=1e-6)
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0]):
        with pytest.raises(ValueError, match="ensemble weights must be 2 non-negative numbers"):
            ensemble_outputs(nets, x, CLASSIFICATION, weights=bad)


def test_weighted_candidate_holds_each_network_once_with_its_config_and_fits_max_params():
    a, b, c = _net(0), _net(1), _net(2)
    cands = [
        Squeezed("ensemble", "e", [a, b], ["cfg-a", "cfg-b"]),
        Squeezed("reference", "r", [a], ["cfg-a"]),
        Squeezed("longer", "l", [c], ["cfg-c"]),
    ]
    x = torch.randn(40, 3)
    y = ensemble_outputs([a, b, c], x, CLASSIFICATION).argmax(1).numpy()  # the three-net blend labels the data
    outs = [ensemble_outputs(s.nets, x, CLASSIFICATION).numpy() for s in cands]
    blend = weighted_candidate(cands, outs, y, CLASSIFICATION)
    assert blend.name == "weighted" and len({id(n) for n in blend.nets}) == len(blend.nets)
    assert blend.cfgs == [{id(a): "cfg-a", id(b): "cfg-b", id(c): "cfg-c"}[id(n)] for n in blend.nets]
    assert sum(blend.weights) == pytest.approx(1.0) and "ensemble selection" in blend.what
    per = sum(p.numel() for p in a.parameters())
    small = weighted_candidate(cands, outs, y, CLASSIFICATION, max_params=per)
    assert small.params <= per and small.n_nets == 1
    assert weighted_candidate(cands, outs, y, CLASSIFICATION, max_params=per - 1) is None
    assert weighted_candidate([], [], y, CLASSIFICATION) is None


def _cand(name: str, ahead: int = 0, loss: float = 0.3) -> CandidateResult:
    s = np.r_[np.ones(80 + ahead), np.zeros(20 - ahead)]
    return CandidateResult(
        name, name, val_metric=float(s.mean()), val_loss=loss, scores=s, loss_scores=np.full(100, loss)
    )


# (candidates, noise_z, the weighted_first champion, words of its reason); z of 2 samples ahead in 100 is 1.42
RULE_CASES = [
    ([_cand("weighted"), _cand("ensemble"), _cand("longer")], 1.0, "weighted", "also the best on val"),
    ([_cand("weighted"), _cand("longer", ahead=2)], 1.0, "longer", "beats the weighted ensemble beyond 1 se"),
    ([_cand("weighted"), _cand("longer", ahead=2)], 1.5, "weighted", "does not beat it beyond 1.5 se"),
    ([_cand("ensemble"), _cand("longer")], 1.0, "ensemble", "no weighted ensemble; the ensemble"),
    ([_cand("ensemble"), _cand("longer", ahead=2)], 1.0, "longer", "no weighted ensemble; it beats the ensemble"),
]


@pytest.mark.parametrize(("cands", "noise_z", "champion", "words"), RULE_CASES)
def test_weighted_first_prefers_the_weighted_ensemble_unless_beaten_beyond_noise(cands, noise_z, champion, words):
    pairs = [(c, (1, 1000)) for c in cands]
    choice = selection.choose(pairs, task=CLASSIFICATION, rule="weighted_first", noise_z=noise_z)
    assert choice.champion.name == champion and words in choice.reason, choice.reason


@pytest.mark.parametrize(
    ("outputs", "init", "expected"),
    [
        ([SURE_AB, SURE_CD, WRONG], {}, [0.5, 0.5, 0.0]),  # plain selection: the complementary pair
        ([SURE_AB, SURE_CD, WRONG], {0: 0}, [0.5, 0.5, 0.0]),  # a zero count starts nothing
        ([SURE_AB, SURE_CD, WRONG], {2: 1}, [0.48, 0.48, 0.04]),  # started from WRONG once: 24 rounds dilute it
        ([SURE_AB, SURE_CD, WRONG], {2: 25}, [0.25, 0.25, 0.5]),  # 25 times: the rounds move at most half away
        ([RIGHT, WRONG], {0: 25}, [1.0, 0.0]),  # no round lowers the loss: the start alone is kept
    ],
)
def test_selection_started_from_a_prior_candidate_keeps_it_and_only_cuts_later_rounds(outputs, init, expected):
    w = ensemble_selection(outputs, Y, CLASSIFICATION, init=init)
    assert w == pytest.approx(expected, abs=0.03), w
    assert all(w[c] > 0 for c, k in init.items() if k)  # the start is never dropped


@pytest.mark.parametrize(("init", "match"), [({3: 1}, r"init \{3: 1\} names no candidate of 3"), ({0: -1}, "< 0")])
def test_a_bad_start_is_an_error(init, match):
    with pytest.raises(ValueError, match=match):
        ensemble_selection([SURE_AB, SURE_CD, RIGHT], Y, CLASSIFICATION, init=init)


def test_the_weighted_rule_hands_back_the_weighted_ensemble_even_when_another_leads_on_val():
    pairs = [(c, (1, 1000)) for c in (_cand("weighted"), _cand("ensemble"), _cand("longer", ahead=4))]
    choice = selection.choose(pairs, task=CLASSIFICATION, rule="weighted", noise_z=1.0)
    assert choice.champion.name == "weighted" and "the best on val is longer at 0.84" in choice.reason, choice.reason
    assert choice.reason.endswith("(stages.squeeze.rule=best_val_metric would take longer)")
    # the plain ensemble the best on val: named as another candidate, not as what the rule prefers to itself
    lead = [(c, (1, 1000)) for c in (_cand("weighted"), _cand("ensemble", ahead=4))]
    said = selection.choose(lead, task=CLASSIFICATION, rule="weighted", noise_z=1.0).reason
    assert "over the ensemble" not in said and said.endswith("would take ensemble)"), said
    # level with the best (the blend's weights all on the ensemble): no other candidate to name
    tie = [(c, (1, 1000)) for c in (_cand("weighted", ahead=4), _cand("ensemble", ahead=4))]
    said = selection.choose(tie, task=CLASSIFICATION, rule="weighted", noise_z=1.0).reason
    assert said.endswith("the best on val") and "would take" not in said, said
    alone = selection.choose(pairs[:1], task=CLASSIFICATION, rule="weighted")
    assert alone.champion.name == "weighted" and alone.reason.endswith("val accuracy 0.8, the best on val")
    fallback = selection.choose(pairs[1:], task=CLASSIFICATION, rule="weighted", noise_z=1.0)
    assert fallback.champion.name == "longer" and "no weighted ensemble; it beats the ensemble" in fallback.reason
    assert selection.DEFAULT_RULE == "weighted"
