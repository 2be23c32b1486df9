"""Training: the Lightning system, losses and metrics, EMA, statistics, evaluation."""

from gdlphys.train.config import FitConfig
from gdlphys.train.run import TrainResult, train_potential

__all__ = ["FitConfig", "TrainResult", "train_potential"]
