"""The request-path kernel every layer shares."""
