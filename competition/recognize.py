"""Read the digits in an image with the fold ensemble: what the page, `predict` and the API return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ensemble import Ensemble
from .preprocess import segment

# Below this mean probability for its top class a digit is shown as "unsure". Set for the default recipe's
# networks (label smoothing): few drawn digits fall below it, most misreadings, letters and scribbles do; networks
# trained without smoothing are near-certain of anything, so for them the mark says little (docs/benchmarks.md,
# "The unsure mark").
UNSURE_BELOW = 0.6


@dataclass
class DigitReading:
    label: int
    top: list[tuple[int, float]]  # the 3 most probable digits with their mean probability
    agree: int  # how many fold models have `label` as their own top class
    models: int
    unsure: bool
    image: np.ndarray  # (28, 28) uint8: what the models saw
    mass: float  # ink at working resolution (see preprocess.Digit)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "top": [{"label": d, "prob": round(p, 4)} for d, p in self.top],
                "agree": self.agree, "models": self.models, "unsure": self.unsure}


@dataclass
class Reading:
    digits: list[DigitReading] = field(default_factory=list)  # left to right

    @property
    def number(self) -> str:
        return "".join(str(d.label) for d in self.digits)

    @property
    def main(self) -> DigitReading | None:
        """The most prominent digit (most ink): the answer when one digit is expected."""
        return max(self.digits, key=lambda d: d.mass) if self.digits else None

    def to_json(self) -> dict[str, Any]:
        main = self.main
        return {"label": main.label if main else None, "top": main.to_json()["top"] if main else [],
                "number": self.number, "unsure": main.unsure if main else True,
                "digits": [d.to_json() for d in self.digits]}


def recognize(image: Any, ensemble: Ensemble) -> Reading:
    """Segment `image` (any form preprocess accepts) and classify each digit with every fold model."""
    digits = segment(image)
    if not digits:
        return Reading()
    batch = np.stack([d.image for d in digits])
    per_model = ensemble.member_probs(batch)  # (models, digits, 10)
    mean = ensemble.combine(per_model)
    readings = []
    for i, digit in enumerate(digits):
        order = np.argsort(-mean[i])[:3]
        label = int(order[0])
        readings.append(DigitReading(
            label=label, top=[(int(d), float(mean[i, d])) for d in order],
            agree=int((per_model[:, i].argmax(1) == label).sum()), models=len(per_model),
            unsure=bool(mean[i, label] < UNSURE_BELOW), image=digit.image, mass=digit.mass))
    return Reading(readings)
