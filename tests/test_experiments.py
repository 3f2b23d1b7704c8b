"""Experiments: deterministic, weighted assignment, and the decision records the variant."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_retention import (
    Decision,
    Message,
    NoChoice,
    PromotionalOffer,
    RealtimeRequest,
    Retention,
    SwitchPlan,
    retention_decided,
)
from flask_retention.insights.experiments import Experiment
from flask_retention.testing import AppStoreSigner

from .memory_lookup import MemoryLookup
from .support import state_of, vector

VARIANTS: dict[str, Message | PromotionalOffer | SwitchPlan] = {
    "control": Message("winback"),
    "offer": PromotionalOffer("offer-msg", offer_id="winback50"),
    "switch": SwitchPlan("yearly-msg", "com.example.yearly"),
}


def expected_variant(name: str, otid: str, weights: dict[str, float]) -> str:
    """The variant by the documented rule, computed independently of the package."""
    point = int(hashlib.sha256(f"{name}:{otid}".encode()).hexdigest()[:16], 16) / 16**16
    total = sum(weights.values())
    running = 0.0
    for variant, weight in weights.items():
        running += weight
        if point < running / total:
            return variant
    raise AssertionError("unreachable")


def request(otid: str) -> RealtimeRequest:
    return RealtimeRequest(
        original_transaction_id=otid,
        app_apple_id=1,
        product_id="com.example.monthly",
        locale="en-US",
        request_identifier=uuid.uuid4(),
        environment="Sandbox",
        signed_date=datetime.now(UTC),
        raw={},
    )


def test_assignment_follows_the_sha256_rule() -> None:
    weights = {"control": 1.0, "offer": 3.0, "switch": 1.0}
    experiment = Experiment("winback-2026", VARIANTS, weights)
    ids = [str(1000000000000000 + i) for i in range(500)]
    assert [experiment.variant_for(i) for i in ids] == [
        expected_variant("winback-2026", i, weights) for i in ids
    ]


#: sha256("copy:" + id), first 8 bytes, precomputed with hashlib: id -> (prefix, variant)
#: for weights a=1, b=2, c=1 (bounds 0.25, 0.75, 1).
KNOWN = {
    "1": ("2dbabc1871239a54", "a"),  # 0.1786
    "2": ("e70ffec6cc8bf3e8", "c"),  # 0.9026
    "1000000000000001": ("b2cac602bb0b2bfd", "b"),  # 0.6984
    "1000000000000002": ("bc08db1debe7651f", "b"),  # 0.7345
    "1000000000000003": ("2e531cbc8bbc45d8", "a"),  # 0.1810
    "1000000000000004": ("85ddfb35fbf7b2f0", "b"),  # 0.5229
}


def test_known_assignments() -> None:
    variants = {"a": Message("a"), "b": Message("b"), "c": Message("c")}
    experiment = Experiment("copy", variants, {"a": 1, "b": 2, "c": 1})
    for otid, (prefix, variant) in KNOWN.items():
        assert hashlib.sha256(f"copy:{otid}".encode()).hexdigest()[:16] == prefix
        assert experiment.variant_for(otid) == variant, otid


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    experiment = Experiment("winback-2026", VARIANTS)
    ids = [str(7000000000000000 + i) for i in range(200)]
    script = (
        "import json, sys\n"
        "from flask_retention import Message\n"
        "from flask_retention.insights.experiments import Experiment\n"
        "e = Experiment('winback-2026', {v: Message(v) for v in ('control', 'offer', 'switch')})\n"
        "print(json.dumps([e.variant_for(i) for i in json.loads(sys.argv[1])]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(ids)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(out.stdout) == [experiment.variant_for(i) for i in ids]


@pytest.mark.parametrize(
    "weights",
    [None, {"control": 1, "offer": 2, "switch": 1}, {"control": 0.7, "offer": 0.2, "switch": 0.1}],
)
def test_shares_are_close_to_the_weights_over_10000_ids(weights: dict[str, float] | None) -> None:
    experiment = Experiment("share-test", VARIANTS, weights)
    counts = Counter(experiment.variant_for(str(5000000000000000 + i)) for i in range(10_000))
    given = weights or dict.fromkeys(VARIANTS, 1)
    total = sum(given.values())
    for variant, weight in given.items():
        assert abs(counts[variant] / 10_000 - weight / total) < 0.02, (variant, counts)


def test_choose_returns_the_variants_choice_tagged() -> None:
    experiment = Experiment("winback-2026", VARIANTS)
    req = request("1000000000000001")
    choice = experiment.choose(req)
    variant = experiment.variant_for(req.original_transaction_id)
    assert isinstance(choice, type(VARIANTS[variant]))
    assert choice.message == VARIANTS[variant].message
    assert (choice.experiment, choice.variant) == ("winback-2026", variant)
    assert VARIANTS[variant].experiment is None  # the given choices are not changed


@pytest.mark.parametrize(
    ("variants", "weights", "error"),
    [
        ({"a": Message("a")}, None, "at least two"),
        ({"a": Message("a"), "b": "winback"}, None, "give a Message"),
        ({"a": Message("a"), "": Message("b")}, None, "variant names"),
        ({"a": Message("a"), "b": Message("b")}, {"a": 1}, "exactly the variants"),
        ({"a": Message("a"), "b": Message("b")}, {"a": 1, "b": 0}, "positive number"),
        ({"a": Message("a"), "b": Message("b")}, {"a": 1, "b": -2}, "positive number"),
        ({"a": Message("a"), "b": Message("b")}, {"a": 1, "b": True}, "positive number"),
        ({"a": Message("a"), "b": Message("b")}, {"a": 1, "b": float("nan")}, "positive number"),
        ({"a": Message("a"), "b": Message("b")}, {"a": 1, "b": "2"}, "positive number"),
    ],
)
def test_bad_experiments_are_refused(
    variants: dict[str, Any], weights: dict[str, Any] | None, error: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        Experiment("x", variants, weights)


def test_an_experiment_name_is_used_once(app: Flask) -> None:
    retention = Retention(app)
    experiment = retention.experiment("copy", {"a": Message("a"), "b": Message("b")})
    assert retention.experiments == {"copy": experiment}
    with pytest.raises(ValueError, match="already exists"):
        retention.experiment("copy", {"a": Message("a"), "b": Message("c")})
    retention.close()


def test_a_choice_needs_both_tags_or_neither() -> None:
    with pytest.raises(TypeError, match="go together"):
        Message("a", experiment="copy")


# -- through the real-time endpoint ------------------------------------------------------

APP_APPLE_ID = 1234567890


@pytest.fixture(scope="module")
def signer() -> AppStoreSigner:
    return AppStoreSigner()


@pytest.fixture
def config(signer: AppStoreSigner) -> dict[str, object]:
    return {
        "RETENTION_ROOT_CERTIFICATES": [signer.root_pem],
        "RETENTION_APP_APPLE_ID": APP_APPLE_ID,
        "RETENTION_SELECTOR_TIMEOUT": 10.0,
        "RETENTION_BUNDLE_ID": "com.example.app",
        "RETENTION_KEY_ID": "ABCDEFGHIJ",
        "RETENTION_ISSUER_ID": str(uuid.uuid4()),
        "RETENTION_PRIVATE_KEY_PATH": str(vector("apple-test-pki/testSigningKey.p8")),
    }


@pytest.fixture
def retention(app: Flask) -> Iterator[Retention]:
    retention = Retention(app)
    lookup = MemoryLookup()
    for name in ("winback", "offer-msg", "yearly-msg"):
        lookup.add(name)
    state_of(app).endpoint.lookup = lookup
    yield retention
    retention.close()


@pytest.fixture
def decisions(app: Flask, retention: Retention) -> Iterator[list[Decision]]:
    seen: list[Decision] = []

    def receive(sender: Flask, decision: Decision) -> None:
        seen.append(decision)

    with retention_decided.connected_to(receive, sender=app):
        yield seen


def test_the_decision_records_experiment_and_variant(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
) -> None:
    experiment = retention.experiment("winback-2026", VARIANTS)
    retention.selector(experiment.choose)
    kinds = {"control": "message", "offer": "promotional_offer", "switch": "alternate_product"}
    seen = set()
    for i in range(40):
        otid = str(3000000000000000 + i)
        response = client.post(
            "/retention/realtime",
            data=signer.realtime_body(original_transaction_id=otid, app_apple_id=APP_APPLE_ID),
            content_type="application/json",
        )
        assert response.status_code == 200
        decision = decisions[-1]
        variant = expected_variant("winback-2026", otid, dict.fromkeys(VARIANTS, 1.0))
        assert (decision.experiment, decision.variant) == ("winback-2026", variant)
        assert decision.kind == kinds[variant]
        assert decision.fallback_reason is None
        seen.add(variant)
    assert seen == set(VARIANTS)


def test_a_variant_that_takes_the_fallback_still_counts_for_it(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
) -> None:
    experiment = retention.experiment(
        "unknown", {"a": Message("no-such-message"), "b": Message("no-such-message-either")}
    )
    retention.selector(experiment.choose)
    response = client.post(
        "/retention/realtime",
        data=signer.realtime_body(app_apple_id=APP_APPLE_ID),
        content_type="application/json",
    )
    assert response.get_json() == {}
    (decision,) = decisions
    assert decision.fallback_reason == "unknown_name"
    assert decision.experiment == "unknown"
    assert decision.variant in ("a", "b")


def test_an_untagged_choice_records_no_experiment(
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
) -> None:
    retention.selector(lambda req: Message("winback"))
    client.post(
        "/retention/realtime",
        data=signer.realtime_body(app_apple_id=APP_APPLE_ID),
        content_type="application/json",
    )
    (decision,) = decisions
    assert decision.kind == "message"
    assert (decision.experiment, decision.variant) == (None, None)


def test_a_no_message_arm_answers_the_default_and_counts_for_its_variant(
    app: Flask,
    client: FlaskClient,
    retention: Retention,
    signer: AppStoreSigner,
    decisions: list[Decision],
) -> None:
    lookup = state_of(app).endpoint.lookup
    assert isinstance(lookup, MemoryLookup)
    default = lookup.add_default("default-copy")
    experiment = retention.experiment(
        "holdout", {"holdout": NoChoice(), "winback": Message("winback")}
    )
    retention.selector(experiment.choose)
    answers: dict[str, Any] = {}
    for i in range(30):
        otid = str(4000000000000000 + i)
        response = client.post(
            "/retention/realtime",
            data=signer.realtime_body(original_transaction_id=otid, app_apple_id=APP_APPLE_ID),
            content_type="application/json",
        )
        decision = decisions[-1]
        variant = expected_variant("holdout", otid, {"holdout": 1.0, "winback": 1.0})
        assert (decision.experiment, decision.variant) == ("holdout", variant)
        answers[variant] = response.get_json()
        if variant == "holdout":
            assert decision.fallback_reason == "no_choice"
            assert decision.message_id == default.uuid
    assert answers["holdout"] == {"message": {"messageIdentifier": str(default.uuid)}}
    assert answers["winback"]["message"]["messageIdentifier"] != str(default.uuid)


def test_no_choice_needs_both_tags_or_neither() -> None:
    with pytest.raises(TypeError, match="go together"):
        NoChoice(variant="b")
