"""Data validation: the dataset's Great Expectations suite plus mpops' data-quality checks, in one run."""
