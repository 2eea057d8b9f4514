"""The checks of the notebooks' exercises, one module per chapter; ``checks`` holds what they share."""

from bnlib.course.exercises.ch01 import check_max_stable_lr, check_scaled_only_condition_number, check_standardized
from bnlib.course.exercises.ch02 import check_bias_after_steps, check_center_inside_gradient, check_median_shift
from bnlib.course.exercises.ch03 import check_batch_norm_backward, check_batch_variance, check_dgamma_dbeta
from bnlib.course.exercises.ch04 import check_gradient_ratio, check_identity_parameters, check_output_moments
from bnlib.course.exercises.ch05 import (check_effective_window, check_keras_conversion, check_running_mean_after_steps,
                                         check_running_var_after_one_step)
from bnlib.course.exercises.ch07 import check_batch_of_two, check_batch_size_for_noise, check_group_means
