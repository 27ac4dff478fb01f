"""Kunin et al. 2020, two routes to scalable credit assignment without weight symmetry
(papers/two_routes/README.md)."""
