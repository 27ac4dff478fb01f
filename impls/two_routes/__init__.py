"""Kunin et al. 2020, two routes to scalable credit assignment without weight symmetry
(papers/two_routes/README.md)."""

#: Implementation version: part of every run id of this paper (see impls.common.specs). Bump it
#: ("1" -> "2") in the commit that changes what the code computes, so stale runs are trained again.
IMPL_VERSION = "1"
