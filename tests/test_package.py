"""The package's face: the public names, and an import that stays light."""

import subprocess
import sys

import bnlib

PUBLIC = ["BatchNorm1d", "BatchNorm2d", "batch_norm_train", "batch_norm_forward", "batch_norm_backward",
          "ema_update", "keras_to_torch_momentum", "population_statistics", "replay_ema",
          "SyncBatchNorm", "convert_sync_batchnorm", "BatchRenorm1d", "BatchRenorm2d"]


def test_public_names_are_exported():
    assert sorted(bnlib.__all__) == sorted(PUBLIC)
    assert all(callable(getattr(bnlib, name)) for name in PUBLIC)


def test_import_does_not_load_plotting_datasets_or_scipy_signal():
    code = ("import sys, bnlib; print(sorted(m for m in ('torchvision', 'matplotlib', 'scipy.signal') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_notebooks_imports_do_not_load_torchvision():
    """Every notebook's first cell imports its chapter's explorers and exercises (the app imports them all);
    torchvision would add a second or two to each kernel's start, and only chapter 8's frozen batch norm needs it."""
    code = "import sys, bnlib.course.app; print('torchvision' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
