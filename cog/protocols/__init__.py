"""Evaluation protocols on frozen features: linear probe, kNN, metrics."""

# the linear probe's protocols (protocol.md section 4), defined here so that reading
# results (cog.bench.leaderboard) needs no torch
PROTOCOLS = ("fast", "reference")
