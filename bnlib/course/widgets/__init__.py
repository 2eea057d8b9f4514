"""The course's explorers: a few controls, a plot and a readout, one per idea worth turning a knob on.

Each is built from ``bnlib.course.widgets.explorer.Explorer``; calling one returns the widget to display.
"""

from bnlib.course.widgets.batch_coupling import batch_coupling_explorer
from bnlib.course.widgets.batch_noise import batch_noise_explorer
from bnlib.course.widgets.batch_size import batch_size_explorer
from bnlib.course.widgets.devices import devices_explorer
from bnlib.course.widgets.ema import ema_explorer
from bnlib.course.widgets.explorer import Explorer
from bnlib.course.widgets.gamma_beta import gamma_beta_explorer
from bnlib.course.widgets.hidden_drift import drift_explorer
from bnlib.course.widgets.learning_rate import learning_rate_explorer
from bnlib.course.widgets.momentum import momentum_explorer
from bnlib.course.widgets.recalibration import recalibration_explorer

__all__ = ["Explorer", "batch_coupling_explorer", "batch_noise_explorer", "batch_size_explorer", "devices_explorer",
           "drift_explorer", "ema_explorer", "gamma_beta_explorer", "learning_rate_explorer", "momentum_explorer",
           "recalibration_explorer"]
