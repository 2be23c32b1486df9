"""Active learning: explore (committee MD) -> select (force spread) -> label (xTB or DFT) ->
fine-tune, round after round, into a potential that knows where it is uncertain.

    from gdlphys.learn import learn
    result = learn("CCO", "ethanol-xtb", "runs/ethanol-al", temperatures=[300, 600], budget_labels=200)

See docs/learn.md; ``gdlphys learn`` is the same from the command line.
"""

from gdlphys.learn.calibration import Calibration, calibrate
from gdlphys.learn.config import LABELS, SELECTIONS, LearnConfig
from gdlphys.learn.loop import LearnResult, learn
from gdlphys.learn.select import distance_descriptor, select_by_spread, select_random

__all__ = [
    "LABELS", "SELECTIONS", "Calibration", "LearnConfig", "LearnResult", "calibrate", "distance_descriptor", "learn",
    "select_by_spread", "select_random",
]
