"""Notebook 08_conv_nets_and_deployment: batch norm in a conv net, and after training: folding, frozen
statistics, recalibration, and dropout's variance shift."""
