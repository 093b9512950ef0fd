"""Rendering for people: Markdown reports, PNG plots, the terminal summary and progress bars."""
