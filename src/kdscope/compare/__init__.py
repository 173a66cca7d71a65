"""Comparing two models' representations."""

from kdscope.compare.cka import CKAAccumulator, CKAGrid, as_rows, cka_grid, gram_cka

__all__ = ["CKAAccumulator", "CKAGrid", "as_rows", "cka_grid", "gram_cka"]
