"""Benchmarks: multiple-choice scoring, HumanEval in a sandbox, speed and memory, and the leaderboard."""
