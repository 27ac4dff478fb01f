"""Kunin et al. 2020, two routes to scalable credit assignment without weight symmetry (spec: shared/papers/two_routes.md)."""
