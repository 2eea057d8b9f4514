"""The chapters' printed tables: aligned columns, one format per column, clear errors for a ragged table."""

import pytest

from bnlib.course.tables import table


def test_columns_line_up_on_their_last_digit_and_names_on_their_first_letter():
    text = table(["run", "accuracy", "steps"], [["per device", 0.8123, 1000], ["synchronized", 0.9, 25]],
                 ["", ".1%", ","])
    assert text.splitlines() == ["run           accuracy  steps",
                                 "per device       81.2%  1,000",
                                 "synchronized     90.0%     25"]


def test_numbers_first_are_right_aligned_and_a_function_or_none_formats_a_cell():
    text = table(["k", "ms"], [[2, 1.25], [10, None]], ["d", lambda v: f"{1000 * v:.0f} us"])
    assert text.splitlines() == [" k       ms", " 2  1250 us", "10"]


def test_a_row_or_the_formats_of_another_width_are_refused():
    with pytest.raises(ValueError, match="one entry per column"):
        table(["a", "b"], [[1, 2, 3]])
    with pytest.raises(ValueError, match="one entry per column"):
        table(["a", "b"], [[1, 2]], [".1f"])
