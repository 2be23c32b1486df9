"""Reusable physics checks: every layer and every model runs the same ones.

They raise AssertionError with the size of the violation, so they serve in pytest
and in a user's own validation of a new model alike.
"""

from gdlphys.testing.equivariance import (
    O3Element,
    assert_layer_equivariant,
    assert_potential_equivariant,
    random_orthogonal_matrix,
)
from gdlphys.testing.finite_difference import assert_forces_match_finite_differences, assert_stress_matches_finite_differences

__all__ = [
    "O3Element",
    "assert_forces_match_finite_differences",
    "assert_layer_equivariant",
    "assert_potential_equivariant",
    "assert_stress_matches_finite_differences",
    "random_orthogonal_matrix",
]
