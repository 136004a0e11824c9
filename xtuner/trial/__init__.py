"""The shared train-eval function and its config. `from xtuner.trial import run_trial`."""

from xtuner.trial.config import Reporter, TrialConfig
from xtuner.trial.run import NonFiniteLossError, NullReporter, run_trial

__all__ = ["NonFiniteLossError", "NullReporter", "Reporter", "TrialConfig", "run_trial"]
