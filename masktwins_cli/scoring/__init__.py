"""Scores of a prediction against the truth (segmentation metrics), below the verbs that use
them: evaluation and validation during training."""
