"""Experiments: show each subscriber one of several choices, the same one every time.

A subscriber's variant depends only on the experiment's name and their
original transaction ID: ``sha256(name + ":" + original_transaction_id)``,
its first 8 bytes read as a big-endian integer and divided by 2**64, falls
into one of the variants' cumulative weight intervals (in the order the
variants were given). Python's ``hash`` is never used (it is salted per
process), so every worker and every host assigns the same variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from typing import Final

from flask_retention.realtime.choices import (
    Choice,
    Message,
    NoChoice,
    PromotionalOffer,
    RealtimeRequest,
    SwitchPlan,
)

_SCALE: Final = float(2**64)


def assignment_point(name: str, original_transaction_id: str) -> float:
    """The subscriber's point in ``[0, 1)`` for experiment ``name``."""
    digest = hashlib.sha256(f"{name}:{original_transaction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


class Experiment:
    """An experiment between choices; :meth:`choose` is usable as (or inside) a selector.

    Create it with :meth:`Retention.experiment
    <flask_retention.Retention.experiment>`. ``variants`` maps variant names to
    choices (``Message``, ``SwitchPlan``, ``PromotionalOffer``, or ``NoChoice`` for an
    arm that shows the default); the first is
    the baseline the report compares the others with. ``weights`` maps every
    variant to a positive number (equal weights when omitted).
    """

    def __init__(
        self,
        name: str,
        variants: Mapping[str, Choice],
        weights: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError("an experiment needs a name of 1 to 200 characters")
        if not isinstance(variants, Mapping) or len(variants) < 2:
            raise ValueError(f"experiment {name!r} needs a mapping of at least two variants")
        for variant, choice in variants.items():
            if not isinstance(variant, str) or not variant.strip() or len(variant) > 200:
                raise ValueError(
                    f"experiment {name!r}: variant names are strings of 1 to 200 characters, "
                    f"not {variant!r}"
                )
            if not isinstance(choice, Message | SwitchPlan | PromotionalOffer | NoChoice):
                raise TypeError(
                    f"experiment {name!r}, variant {variant!r}: give a Message, SwitchPlan, "
                    f"PromotionalOffer or NoChoice, not {type(choice).__name__}"
                )
        if weights is None:
            weights = dict.fromkeys(variants, 1.0)
        elif not isinstance(weights, Mapping) or set(weights) != set(variants):
            raise ValueError(
                f"experiment {name!r}: weights must name exactly the variants "
                f"({', '.join(variants)})"
            )
        for variant, weight in weights.items():
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight <= 0
            ):
                raise ValueError(
                    f"experiment {name!r}: the weight of {variant!r} must be a positive number, "
                    f"not {weight!r}"
                )
        self.name = name
        self.variants: dict[str, Choice] = {
            variant: dataclasses.replace(choice, experiment=name, variant=variant)
            for variant, choice in variants.items()
        }
        total = math.fsum(weights[v] for v in variants)
        self.weights: dict[str, float] = {v: weights[v] / total for v in variants}
        bounds = []
        running = 0.0
        for variant in variants:
            running += weights[variant]
            bounds.append((running / total, variant))
        self._bounds = bounds

    def __repr__(self) -> str:
        shares = ", ".join(f"{v}={w:.3g}" for v, w in self.weights.items())
        return f"Experiment({self.name!r}, {shares})"

    def variant_for(self, original_transaction_id: str) -> str:
        """The variant of a subscriber (deterministic; the same in every process)."""
        point = assignment_point(self.name, original_transaction_id)
        for bound, variant in self._bounds:
            if point < bound:
                return variant
        return self._bounds[-1][1]  # only a rounding error in the last bound gets here

    def choose(self, req: RealtimeRequest) -> Choice:
        """The subscriber's variant's choice, tagged with the experiment and variant."""
        return self.variants[self.variant_for(req.original_transaction_id)]
