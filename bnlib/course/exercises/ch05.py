"""Exercises of notebook 05 (running statistics and inference). The constants are the questions' data."""

from bnlib.course.exercises.checks import check_number

KERAS_DECAY = 0.997                  # a TensorFlow model's BatchNormalization(momentum=0.997)
WINDOW_MOMENTUM = 0.05               # momentum whose effective window is asked for
BIAS_MOMENTUM, BIAS_STEPS, BIAS_BATCH_MEAN = 0.1, 3, 5.0   # running mean after 3 batches of mean 5, from 0
VARIANCE_BATCH = (1.0, 2.0, 3.0, 6.0)  # one training batch of one channel, fresh layer, momentum 0.1
VARIANCE_MOMENTUM = 0.1


def _unbiased_variance(values):
    """sum (x - mean)^2 / (m - 1): the variance torch stores in running_var."""
    mean = sum(values) / len(values)
    return sum((x - mean) ** 2 for x in values) / (len(values) - 1)


def check_keras_conversion(answer):
    """The PyTorch momentum equal to Keras' ``momentum=KERAS_DECAY``."""
    return check_number(
        answer, 1 - KERAS_DECAY,
        "Keras keeps 99.7% of the old average, so PyTorch must give the new batch 0.3%: "
        "keras_to_torch_momentum(0.997) = 0.003.",
        [(KERAS_DECAY, "that is the Keras value itself. Passed to PyTorch it puts weight 0.997 on the NEWEST "
                       "batch, so the running statistics follow the last batch almost alone.")],
        "in PyTorch momentum is the weight of the new batch, in Keras it is the weight of the old average: "
        "the two weights add up to 1.")


def check_effective_window(answer):
    """The effective window, in batches, of momentum ``WINDOW_MOMENTUM``."""
    m = WINDOW_MOMENTUM
    return check_number(
        answer, 1 / m,
        f"1/m = 20 batches; the last 20 batches carry 1 - 0.95^20 = {1 - (1 - m) ** 20:.0%} of the weight.",
        [((1 - m) / m, "that is (1 - m)/m, the mean age of the batches (the lag); the window is one step longer.")],
        "the weights m (1 - m)^k shrink by a factor e over about how many steps? Think 1 over something.")


def check_running_mean_after_steps(answer):
    """running_mean after ``BIAS_STEPS`` batches of mean ``BIAS_BATCH_MEAN`` from 0, momentum ``BIAS_MOMENTUM``."""
    m, steps, mean = BIAS_MOMENTUM, BIAS_STEPS, BIAS_BATCH_MEAN
    expected = mean * (1 - (1 - m) ** steps)                   # r_k = mean (1 - (1 - m)^k) from r_0 = 0
    return check_number(
        answer, expected,
        f"5 (1 - 0.9^3) = {expected:.4g}: after 3 steps the start value 0 still weighs 0.9^3 = 73%.",
        [(mean, "running_mean does not jump to the first batch: it starts at 0 and moves 10% of the way per step."),
         (steps * m * mean, "each step adds 0.1 * 5 but also shrinks what is already there by 0.9; apply "
                            "r = 0.9 r + 0.1 * 5 three times, or use the unrolled sum.")],
        "apply r = (1 - m) r + m * 5 three times starting from r = 0.")


def check_running_var_after_one_step(answer):
    """running_var of a fresh layer after one training step on ``VARIANCE_BATCH``, momentum ``VARIANCE_MOMENTUM``."""
    m, count = VARIANCE_MOMENTUM, len(VARIANCE_BATCH)
    unbiased = _unbiased_variance(VARIANCE_BATCH)
    biased = unbiased * (count - 1) / count
    expected = (1 - m) * 1.0 + m * unbiased                    # running_var starts at 1
    variance_of_batch = "that is a variance of the batch; now apply one step r = (1 - m) r + m v from the start value."
    return check_number(
        answer, expected,
        f"0.9 * 1 + 0.1 * {unbiased:.4g} = {expected:.4g}: the unbiased variance 14/3, blended into the start value 1.",
        [((1 - m) + m * biased, "the layer normalizes with the biased variance, but running_var stores the unbiased "
                                "one, n/(n-1) times it."),
         (m * unbiased, "running_var does not start at 0: a fresh layer holds 1."),
         (unbiased, variance_of_batch), (biased, variance_of_batch)],
        "find the batch's unbiased variance (divide by n - 1), then one EMA step from running_var's start value.")
