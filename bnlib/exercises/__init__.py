"""Checks for the notebooks' exercises: each ``check_*`` prints a verdict and returns True or False.

A wrong answer gets a hint that points at the mistake rather than the solution.
"""


def report(correct, praise, hint):
    print(("Correct. " + praise) if correct else ("Not yet. " + hint))
    return bool(correct)

from .ch01 import check_max_stable_lr, check_scaled_only_condition_number, check_standardized
from .ch02 import check_bias_after_steps, check_center_inside_gradient, check_median_shift
from .ch03 import check_batch_norm_backward, check_batch_variance, check_dgamma_dbeta
from .ch04 import check_gradient_ratio, check_identity_parameters, check_output_moments
from .ch05 import check_effective_window, check_keras_conversion, check_running_mean_after_steps, check_running_var_after_one_step
from .ch07 import check_batch_of_two, check_batch_size_for_noise, check_group_means
