"""The row contract's sizes agree with the fitting library's (each package keeps its own)."""

from fitting.models import model
from schemas import rows


def test_row_sizes_match_the_fitting_library():
    assert rows.NUM_LANDMARKS == model.NUM_LANDMARKS == 68
    assert rows.EXPRESSION_DIM == model.EXPRESSION_DIM == 29
