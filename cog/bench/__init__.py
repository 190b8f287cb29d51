"""The benchmark: evaluation runs, the leaderboard, studies and the report."""
