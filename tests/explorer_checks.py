"""A check shared by the explorers' tests: every control shows in the readout and in the plot."""


def assert_control_changes_readout_and_plot(explorer, name, value):
    """Set control ``name`` to ``value`` (a value other than its current one): ``draw`` must succeed and
    both the readout text and the plot's PNG bytes must change, as the browser test demands."""
    assert explorer.controls[name].value != value, f"{name} is already {value!r}: pick another value"
    readout, image = explorer.text, explorer.image.value
    explorer.controls[name].value = value
    assert explorer.error is None, explorer.text
    assert explorer.text != readout, f"moving {name!r} to {value!r} left the readout as it was: {readout}"
    assert explorer.image.value != image, f"moving {name!r} to {value!r} left the plot as it was"
